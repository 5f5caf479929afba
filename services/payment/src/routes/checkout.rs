//! `POST /api/v1/orders/{id}/checkout` (the order's buyer): the order's pending payment, recorded now if
//! neither the consumer nor an earlier checkout did. Works before the order row exists (the Redis reservation
//! answers, as the gateway's order look-up does). Another buyer's order is 404; a paid or expired one, or one
//! whose deadline has passed, is 409 ORDER_NOT_PAYABLE.

use crate::error::ApiError;
use crate::routes::{rfc3339, uuid_in_path};
use crate::state::AppState;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use flashsale_api_error::openapi::{
    InvalidRequestError, OrderNotFoundError, OrderNotPayableError, UnauthorizedError,
    UnavailableError,
};
use flashsale_domain::{ErrorCode, Money, OrderId, OrderStatus, SaleId, UserId};
use flashsale_stock::ReservationState;
use flashsale_store::payments::{self, NewPayment, PaymentRow, PaymentStatus};
use flashsale_store::{StoreError, orders};
use serde::Serialize;
use utoipa::ToSchema;

/// What a payment is recorded from: the order row, or the reservation while the row is not written.
struct Payable {
    order_id: OrderId,
    sale_id: SaleId,
    quantity: i32,
    amount: Money,
    reserved_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

/// The order's pending payment and where to pay it.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "payment_id": "019a9c40-1b2c-7d3e-8f40-5a6b7c8d9e0f", "order_id": "019a9c3e-6f1d-7c44-9b1e-2f0c5a7d8e90",
    "amount": "2990.00", "checkout_url": "http://127.0.0.1:8081/psp/checkout/019a9c40-1b2c-7d3e-8f40-5a6b7c8d9e0f",
    "expires_at": "2026-11-23T10:15:00.123Z"
}))]
pub(crate) struct CheckoutView {
    payment_id: uuid::Uuid,
    order_id: uuid::Uuid,
    amount: Money,
    /// `payment.checkout_base_url` + the payment id: the provider's page.
    checkout_url: String,
    /// The order's payment deadline.
    #[schema(format = DateTime)]
    expires_at: String,
}

/// Check out an order
///
/// The order's pending payment, recorded now if none is; the same payment on a repeat. Works before the order
/// row is written (the Redis reservation answers).
#[utoipa::path(
    post,
    path = "/api/v1/orders/{id}/checkout",
    tag = "payments",
    operation_id = "checkout",
    params(("id" = OrderId, Path, description = "The order.")),
    responses(
        (status = 200, description = "The pending payment.", body = CheckoutView),
        (status = 400, description = "The id is not a UUID.", body = InvalidRequestError),
        (status = 401, description = "Token missing or invalid.", body = UnauthorizedError),
        (status = 404, description = "Unknown, or another buyer's.", body = OrderNotFoundError),
        (status = 409, description = "Paid, expired, rejected or past its deadline.", body = OrderNotPayableError),
        (status = 503, description = "PostgreSQL or Redis unreachable, or the payment changed while checking out.", body = UnavailableError,
         headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("buyer_jwt" = [])),
)]
pub async fn checkout(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let buyer = state.auth.buyer_of(&req)?;
    let order_id = OrderId::from_uuid(uuid_in_path(&path, "the order id")?);
    let order = payable(&state, order_id, &buyer).await?;
    let payment = pending_payment(&state, &order, &buyer).await?;
    Ok(HttpResponse::Ok().json(CheckoutView {
        payment_id: payment.id,
        order_id: payment.order_id,
        amount: Money::from_minor(payment.amount_minor),
        checkout_url: format!("{}{}", state.checkout_base_url, payment.id),
        expires_at: rfc3339(order.expires_at),
    }))
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::OrderNotFound, "no such order")
}

fn not_payable(why: &str) -> ApiError {
    ApiError::new(ErrorCode::OrderNotPayable, format!("the order is {why}"))
}

async fn payable(state: &AppState, id: OrderId, buyer: &UserId) -> Result<Payable, ApiError> {
    let row = {
        let mut conn = state.pool.get().await.map_err(StoreError::from)?;
        orders::find(&mut conn, id).await?
    };
    let now = Utc::now();
    if let Some(o) = row {
        if o.user_id != buyer.as_str() {
            return Err(not_found());
        }
        if o.status != OrderStatus::PendingPayment {
            return Err(not_payable(o.status.as_str()));
        }
        if o.expires_at <= now {
            return Err(not_payable("past its payment deadline"));
        }
        return Ok(Payable {
            order_id: id,
            sale_id: SaleId::new(o.sale_id).map_err(|e| ApiError::internal(e.to_string()))?,
            quantity: o.quantity,
            amount: Money::from_minor(o.amount_minor),
            reserved_at: o.created_at,
            expires_at: o.expires_at,
        });
    }
    // Not written yet: Redis holds every reservation of the live sales.
    let sales = state.stock.live_sale_ids().await?;
    let Some(r) = state.stock.find_reservation(id, buyer, &sales).await? else {
        return Err(not_found());
    };
    if &r.user != buyer {
        return Err(not_found());
    }
    match r.state {
        ReservationState::Held if r.expires_at > now => {}
        ReservationState::Held => return Err(not_payable("past its payment deadline")),
        other => return Err(not_payable(other.as_str())),
    }
    Ok(Payable {
        order_id: id,
        sale_id: r.sale,
        quantity: i32::try_from(r.quantity).unwrap_or(i32::MAX),
        amount: r.amount,
        reserved_at: r.created_at,
        expires_at: r.expires_at,
    })
}

/// The order's pending payment; a new one if it has none (first checkout, or after a failed payment).
async fn pending_payment(
    state: &AppState,
    order: &Payable,
    buyer: &UserId,
) -> Result<PaymentRow, ApiError> {
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let order_uuid = order.order_id.as_uuid();
    for _ in 0..2 {
        let known = payments::of_order(&mut conn, order_uuid).await?;
        if known
            .iter()
            .any(|p| p.status() == Some(PaymentStatus::Succeeded))
        {
            return Err(not_payable("paid"));
        }
        if let Some(p) = known
            .into_iter()
            .find(|p| p.status() == Some(PaymentStatus::Pending))
        {
            return Ok(p);
        }
        // The partial unique index keeps this to one pending payment, whoever inserts concurrently.
        let recorded = payments::insert_pending(
            &mut conn,
            &NewPayment {
                id: uuid::Uuid::now_v7(),
                order_id: order_uuid,
                sale_id: order.sale_id.get(),
                user_id: buyer.as_str().to_owned(),
                quantity: order.quantity,
                amount_minor: order.amount.minor(),
                status: PaymentStatus::Pending.as_str(),
                reserved_at: order.reserved_at,
                expires_at: order.expires_at,
            },
        )
        .await?;
        state
            .metrics
            .recorded
            .with_label_values(&["checkout"])
            .inc_by(recorded as u64);
    }
    // Inserted and then settled by a webhook in between: ask again.
    Err(ApiError::unavailable(
        "the payment changed while checking out; retry",
    ))
}
