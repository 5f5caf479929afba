//! `POST /api/v1/sales/{id}/reservations`: the hot path.

use crate::auth::Buyer;
use crate::body::{optional_json, read_limited};
use crate::error::ApiError;
use crate::reserve::{ReserveCommand, reserve as reserve_units};
use crate::routes::sale_id;
use crate::routes::sales::rfc3339;
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use flashsale_domain::reservation::Reservation;
use flashsale_domain::{Money, OrderId, OrderStatus, SaleId, UserId};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReserveBody {
    #[serde(default = "one")]
    quantity: u32,
}

fn one() -> u32 {
    1
}

#[derive(Serialize)]
struct ReservationView<'a> {
    order_id: OrderId,
    sale_id: SaleId,
    user_id: &'a UserId,
    quantity: u32,
    amount: Money,
    status: OrderStatus,
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
