//! `GET /api/v1/sales/{id}/events`: the sale's counters as Server-Sent Events (`live`). Everything that can
//! fail is decided before the stream starts, so errors are the usual JSON answers: 400 for a malformed id, 404
//! for an unknown sale, 409 SALE_ENDED once its state has expired, 503 at `sse.max_streams` or while Redis
//! cannot say.

use crate::error::ApiError;
use crate::live::frame::Mark;
use crate::live::{Attached, stream};
use crate::reserve::missing_sale_state;
use crate::routes::sale_id;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use flashsale_api_error::openapi::{
    InvalidRequestError, SaleEndedError, SaleNotFoundError, UnavailableError,
};
use flashsale_domain::{ErrorCode, SaleId};

/// One event of the feed as an `EventSource` parses it: `data` is the JSON of the sale's counters.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"id": "1796022558000113-1", "event": "message",
    "data": "{\"sale_id\":1,\"remaining\":99,\"reserved\":1,\"sold\":0,\"status\":\"active\"}"}))]
#[allow(dead_code)] // a schema only: the stream writes its frames itself (`live::frame`)
pub struct SaleEvent {
    /// `<counters version>-<phase>`; send it back as `Last-Event-ID`.
    id: Option<String>,
    event: Option<String>,
    data: String,
}

#[utoipa::path(
    get,
    path = "/api/v1/sales/{id}/events",
    tag = "sales",
    operation_id = "sale_events",
    params(
        ("id" = SaleId, Path, description = "The sale."),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event seen; the stream \
            then sends the counters only if they are newer (EventSource sends it by itself on reconnect)."),
    ),
    responses(
        (status = 200, description = "A Server-Sent Events stream: the counters at once and on every change (at \
            most every 200 ms), each as `id: <version>` and `data: {\"remaining\", \"reserved\", \"sold\", \
            \"status\"}`, plus a `: ping` comment every 15 s.", content_type = "text/event-stream", body = SaleEvent),
        (status = 400, description = "The id is not a positive integer.", body = InvalidRequestError),
        (status = 404, description = "No such sale.", body = SaleNotFoundError),
        (status = 409, description = "The sale is over and its state is gone.", body = SaleEndedError),
        (status = 503, description = "At `sse.max_streams`, or Redis unreachable.", body = UnavailableError,
         headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn events(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let sale = sale_id(&path)?;
    // An id this gateway could not have sent (or none) means "send the current state".
    let last_event = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(Mark::parse);
    let slot = state.live.slot().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "the gateway serves as many live streams as it may; retry shortly",
        )
        .with_retry_after(1)
    })?;
    let attached = match state.live.attach(sale) {
        Some(attached) => attached,
        None => first_listener(&state, sale).await?,
    };
    let body = stream::open(state.live.clone(), slot, attached, last_event);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        // nginx and similar proxies would otherwise buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// Nobody here listens to the sale yet: check it exists (from the catalog: no query per request) and read its
/// counters once, which starts its hub.
async fn first_listener(
    state: &AppState,
    sale: flashsale_domain::SaleId,
) -> Result<Attached, ApiError> {
    let Some(entry) = state.catalog.get(sale).await? else {
        return Err(ApiError::new(ErrorCode::SaleNotFound, "no such sale"));
    };
    let Some(counters) = state.stock.counters(sale).await? else {
        return Err(missing_sale_state(state, sale).await);
    };
    state
        .live
        .attach_with(entry.sale.clone(), counters)
        .ok_or_else(|| ApiError::internal("the live feed's lock is poisoned"))
}
