//! `POST /api/v1/sales/{id}/reservations`: the hot path.

use crate::auth::Buyer;
use crate::body::{optional_json, read_limited};
use crate::error::ApiError;
use crate::reserve::{ReserveCommand, reserve as reserve_units};
use crate::routes::sale_id;
use crate::routes::sales::rfc3339;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use flashsale_api_error::openapi::{
    InternalError, InvalidRequestError, PayloadTooLargeError, RateLimitedError,
    ReservationRefusedError, SaleNotFoundError, UnauthorizedError, UnavailableError,
};
use flashsale_domain::reservation::Reservation;
use flashsale_domain::{Money, OrderId, OrderStatus, SaleId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The units asked for. Absent, empty or `{}` asks for one; above the sale's `per_user_limit` is a 400, and so
/// is a number written with a fraction (`2.0`), which JSON Schema would count as an integer.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"quantity": 1}))]
pub(crate) struct ReserveBody {
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 100, default = 1)]
    quantity: u32,
}

fn one() -> u32 {
    1
}

/// A unit held for the buyer until `expires_at`: the order is `pending_payment`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "order_id": "019a9c3e-6f1d-7c44-9b1e-2f0c5a7d8e90", "sale_id": 1, "user_id": "alice", "quantity": 1,
    "amount": "2990.00", "status": "pending_payment", "expires_at": "2026-11-23T10:15:00.123Z"
}))]
pub(crate) struct ReservationView<'a> {
    order_id: OrderId,
    sale_id: SaleId,
    user_id: &'a UserId,
    #[schema(minimum = 1, maximum = 100)]
    quantity: u32,
    /// price × quantity.
    amount: Money,
    status: OrderStatus,
    /// Reservation time + the sale's `payment_window_secs` (RFC 3339, milliseconds, UTC).
    #[schema(format = DateTime)]
    expires_at: String,
}

/// The quantity a reservation body asks for; an empty body asks for one.
pub(crate) fn quantity(req: &HttpRequest, body: &[u8]) -> Result<u32, ApiError> {
    let quantity = optional_json::<ReserveBody>(req, body)?.map_or(1, |b| b.quantity);
    if quantity == 0 {
        return Err(ApiError::invalid("quantity must be at least 1"));
    }
    Ok(quantity)
}

const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

pub(crate) fn idempotency_key(req: &HttpRequest) -> Result<Option<&str>, ApiError> {
    let Some(value) = req.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    let valid = (1..=64).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(Some(key))
    } else {
        Err(ApiError::invalid(
            "Idempotency-Key must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
        ))
    }
}

/// Reserve units of a sale
///
/// Idempotency, rate limit, sale window, per-buyer limit and stock in one Redis round trip; 202 only after
/// RabbitMQ confirmed the reservation. A repeat with the same `Idempotency-Key` answers the first 202 again.
#[utoipa::path(
    post,
    path = "/api/v1/sales/{id}/reservations",
    tag = "reservations",
    operation_id = "reserve",
    params(
        ("id" = SaleId, Path, description = "The sale."),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$",
         description = "Scoped to (buyer, sale) for 24 h: a repeat with the same quantity answers the first 202."),
    ),
    request_body(content = Option<ReserveBody>, content_type = "application/json",
        description = "Optional: no body, an empty one or `{}` is quantity 1."),
    responses(
        (status = 202, description = "Reserved (or an idempotent replay).", body = ReservationView),
        (status = 400, description = "Malformed sale id, body or `Idempotency-Key`; quantity above `per_user_limit`; a key reused with another quantity.", body = InvalidRequestError),
        (status = 401, description = "Token missing or invalid.", body = UnauthorizedError),
        (status = 404, description = "No such sale.", body = SaleNotFoundError),
        (status = 409, description = "Sold out, already holding an order here (`order_id` names it), not started or ended.", body = ReservationRefusedError),
        (status = 413, description = "Body over `gateway.max_body_bytes`.", body = PayloadTooLargeError),
        (status = 429, description = "The buyer's (or the address's) token bucket is empty.", body = RateLimitedError,
         headers(("Retry-After" = u64, description = "Seconds until a token is back."))),
        (status = 500, description = "A bug (unexpected reply from Redis).", body = InternalError),
        (status = 503, description = "Redis or RabbitMQ down, a circuit breaker open, the sale being restored, or the gateway at capacity.", body = UnavailableError,
         headers(("Retry-After" = u64, description = "Seconds to wait; retry with the same Idempotency-Key."))),
    ),
    security(("buyer_jwt" = [])),
)]
pub async fn reserve(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    buyer: Buyer,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let refused = |e: ApiError| {
        state
            .metrics
            .reservations
            .with_label_values(&[e.code.as_str()])
            .inc();
        Err(e)
    };
    let parsed = async {
        let sale = sale_id(&path)?;
        let body = read_limited(payload, state.max_body_bytes).await?;
        Ok::<_, ApiError>((sale, quantity(&req, &body)?, idempotency_key(&req)?))
    }
    .await;
    let (sale, quantity, key) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return refused(e),
    };
    // After the body is read (an unread body would close the keep-alive connection), before any Redis work.
    if let Err(e) = state.address_limit.check(&req) {
        return refused(e);
    }
    // A sold-out or ended sale answers buyers who hold nothing from memory; an Idempotency-Key may replay a 202.
    if key.is_none()
        && let Some(gone) = state.sold_out.answer(sale, &buyer.0)
    {
        let error = crate::reserve::gone_error(gone);
        state
            .metrics
            .from_memory
            .with_label_values(&[error.code.as_str()])
            .inc();
        return refused(error);
    }
    let cmd = ReserveCommand {
        sale,
        user: &buyer.0,
        quantity,
        idempotency_key: key,
    };
    let (answer, label) = reserve_units(&state, &cmd).await;
    state.metrics.reservations.with_label_values(&[label]).inc();
    answer.map(|r| accepted(sale, &buyer.0, &r))
}

fn accepted(sale: SaleId, user: &UserId, r: &Reservation) -> HttpResponse {
    HttpResponse::Accepted().json(ReservationView {
        order_id: r.order_id,
        sale_id: sale,
        user_id: user,
        quantity: r.quantity,
        amount: r.amount,
        status: OrderStatus::PendingPayment,
        expires_at: rfc3339(r.expires_at),
    })
}
