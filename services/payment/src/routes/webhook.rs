//! `POST /webhooks/psp`: the payment provider's signed events. The signature is checked on the raw bytes
//! before anything else (401 INVALID_SIGNATURE, nothing changes); then the event is applied (`apply`) and
//! followed up (`follow_up`); a replayed `event_id` answers its first answer again and re-drives the follow-up.

use crate::applier::ApplyError;
use crate::apply::{Answer, Applied, Refusal};
use crate::error::ApiError;
use crate::event::Event;
use crate::follow_up;
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use flashsale_api_error::openapi::{
    InvalidRequestError, InvalidSignatureError, PayloadTooLargeError, PaymentNotFoundError,
    UnavailableError,
};
use flashsale_domain::ErrorCode;
use secrecy::ExposeSecret;
use utoipa::ToSchema;

/// The webhook's answer, stored with the event and sent again on a replay: the shape `apply` writes.
/// `shipping_priority` and `paid_at` come with `paid` only.
#[derive(ToSchema)]
#[schema(example = json!({
    "order_id": "019a9c3e-6f1d-7c44-9b1e-2f0c5a7d8e90", "status": "paid", "shipping_priority": 1,
    "paid_at": "2026-11-23T10:07:00.456Z"
}))]
#[allow(dead_code)] // a schema only: the answers are JSON written by `apply` and stored as text
pub(crate) struct WebhookAnswer {
    #[schema(format = Uuid)]
    order_id: String,
    status: WebhookStatus,
    #[schema(minimum = 1)]
    shipping_priority: Option<i64>,
    #[schema(format = DateTime)]
    paid_at: Option<String>,
}

/// `paid` or `refund_required` for `payment.succeeded`; for `payment.failed`, the order's own status.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub(crate) enum WebhookStatus {
    PendingPayment,
    Paid,
    Expired,
    Rejected,
    RefundRequired,
}

/// Receive a provider event
///
/// The `Psp-Signature` is checked on the raw body before anything else; then the event is applied once. A
/// replayed `event_id` answers its first answer again.
#[utoipa::path(
    post,
    path = "/webhooks/psp",
    tag = "payments",
    operation_id = "psp_webhook",
    request_body(content = inline(crate::event::Raw), content_type = "application/json"),
    responses(
        (status = 200, description = "Applied (or replayed).", body = WebhookAnswer),
        (status = 400, description = "Bad JSON, a wrong amount, or a payment and order that do not belong together.", body = InvalidRequestError),
        (status = 401, description = "Missing or invalid `Psp-Signature`: nothing changes.", body = InvalidSignatureError),
        (status = 404, description = "No such payment.", body = PaymentNotFoundError),
        (status = 413, description = "Body over 16 KiB.", body = PayloadTooLargeError),
        (status = 503, description = "The payment store is unavailable or busy.", body = UnavailableError,
         headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("psp_signature" = [])),
)]
pub async fn receive(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let result = handle(&state, &req, payload).await;
    if let Err(e) = &result {
        state.metrics.webhook(match e.code {
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::PaymentNotFound => "not_found",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::InvalidRequest | ErrorCode::PayloadTooLarge => "invalid_request",
            _ => "error",
        });
    }
    result
}

async fn handle(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = crate::routes::read_body(payload).await?;
    verify(state, req, &body)?;
    let event = Event::parse(&body)?;

    let applied = state.applier.apply(&event).await;
    match applied {
        Ok(Applied::Answered {
            answer,
            follow_up,
            result,
        }) => {
            follow_up::run(state, &follow_up).await?;
            state.metrics.webhook(result);
            Ok(respond(&answer))
        }
        Ok(Applied::Replayed(answer)) => {
            replay(
                state,
                i32::from(answer.status),
                answer.body,
                event.payment_id,
            )
            .await
        }
        Err(ApplyError::Refused(refusal)) => Err(refused(refusal)),
        Err(ApplyError::Db(e)) => Err(e.into()),
        Err(ApplyError::Unavailable(cause)) => {
            tracing::warn!(%cause, "webhook not applied");
            Err(ApiError::unavailable(
                "the payment store is unavailable; retry shortly",
            ))
        }
        Err(ApplyError::Conflict) => Err(ApiError::unavailable(
            "the payment store is busy; retry shortly",
        )),
    }
}

fn verify(state: &AppState, req: &HttpRequest, body: &[u8]) -> Result<(), ApiError> {
    let header = match req.headers().get(flashsale_webhook::HEADER) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| invalid_signature("malformed"))?),
    };
    let secrets: Vec<&[u8]> = state
        .webhook_secrets
        .iter()
        .map(|s| s.expose_secret().as_bytes())
        .collect();
    let now = chrono::Utc::now().timestamp();
    flashsale_webhook::verify(header, body, &secrets, now, state.webhook_tolerance_secs).map_err(
        |e| {
            tracing::info!(reason = e.label(), "webhook refused: {e}");
            invalid_signature(e.label())
        },
    )
}

fn invalid_signature(reason: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidSignature,
        format!("missing or invalid Psp-Signature ({reason})"),
    )
}

async fn replay(
    state: &AppState,
    status: i32,
    body: String,
    payment: uuid::Uuid,
) -> Result<HttpResponse, ApiError> {
    let follow_up = follow_up::of_payment(state, payment).await?;
    follow_up::run(state, &follow_up).await?;
    state.metrics.webhook("replayed");
    Ok(respond(&Answer {
        status: u16::try_from(status).unwrap_or(200),
        body,
    }))
}

fn respond(answer: &Answer) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK))
        .content_type("application/json")
        .body(answer.body.clone())
}

fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::PaymentNotFound => ApiError::new(ErrorCode::PaymentNotFound, "no such payment"),
        Refusal::OrderMismatch => {
            ApiError::invalid("the payment and the order do not belong together")
        }
        Refusal::AmountMismatch => ApiError::invalid("the amount is not the payment's amount"),
        Refusal::UnknownSale => ApiError::invalid("the payment's sale does not exist"),
    }
}
