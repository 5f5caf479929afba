//! `GET /api/v1/orders/{id}` and `GET /api/v1/me/orders`. PostgreSQL is the record; a reservation whose row
//! is not yet written is answered from Redis, so a fresh order is never 404. Another buyer's order is 404.

use crate::auth::Buyer;
use crate::error::ApiError;
use crate::routes::order_id;
use crate::routes::sales::rfc3339;
use crate::state::AppState;
use actix_web::{HttpResponse, web};
use flashsale_api_error::openapi::{
    InvalidRequestError, OrderNotFoundError, UnauthorizedError, UnavailableError,
};
use flashsale_domain::{ErrorCode, Money, OrderId, OrderStatus, SaleId, UserId};
use flashsale_stock::{HeldReservation, ReservationState};
use flashsale_store::models::OrderRow;
use flashsale_store::{Conn, StoreError, orders, payments};
use serde::Serialize;
use std::collections::HashSet;
use utoipa::ToSchema;

/// Most orders `me/orders` lists.
const MY_ORDERS_LIMIT: i64 = 100;

/// An order. `paid_at` and `shipping_priority` (1..N within the sale, in payment order) are set when `paid`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "order_id": "019a9c3e-6f1d-7c44-9b1e-2f0c5a7d8e90", "sale_id": 1, "user_id": "alice", "quantity": 1,
    "amount": "2990.00", "status": "pending_payment", "created_at": "2026-11-23T10:05:00.123Z",
    "expires_at": "2026-11-23T10:15:00.123Z", "paid_at": null, "shipping_priority": null,
    "refund_required": false
}))]
pub(crate) struct OrderView {
    #[schema(format = Uuid)]
    order_id: String,
    #[schema(minimum = 1)]
    sale_id: i64,
    #[schema(min_length = 1, max_length = 64)]
    user_id: String,
    #[schema(minimum = 1)]
    quantity: i64,
    amount: Money,
    status: OrderStatus,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    expires_at: String,
    /// Always present: `null` until paid.
    #[schema(format = DateTime, required = true)]
    paid_at: Option<String>,
    /// Always present: `null` until paid.
    #[schema(minimum = 1, required = true)]
    shipping_priority: Option<i64>,
    /// True when a payment for this order arrived too late (after the order expired, or after another
    /// payment paid it) and is owed back to the buyer; the order keeps its status.
    refund_required: bool,
    #[serde(skip)]
    #[schema(ignore)]
    sort_key: (chrono::DateTime<chrono::Utc>, String),
}

impl From<OrderRow> for OrderView {
    fn from(o: OrderRow) -> Self {
        Self {
            order_id: o.id.hyphenated().to_string(),
            sale_id: o.sale_id,
            user_id: o.user_id,
            quantity: o.quantity.into(),
            amount: Money::from_minor(o.amount_minor),
            status: o.status,
            created_at: rfc3339(o.created_at),
            expires_at: rfc3339(o.expires_at),
            paid_at: o.paid_at.map(rfc3339),
            shipping_priority: o.shipping_priority,
            refund_required: false,
            sort_key: (o.created_at, o.id.to_string()),
        }
    }
}

impl From<HeldReservation> for OrderView {
    fn from(r: HeldReservation) -> Self {
        Self {
            order_id: r.order_id.to_string(),
            sale_id: r.sale.get(),
            user_id: r.user.to_string(),
            quantity: r.quantity.into(),
            amount: r.amount,
            status: match r.state {
                ReservationState::Held => OrderStatus::PendingPayment,
                ReservationState::Rejected => OrderStatus::Rejected,
                // PostgreSQL records these before Redis does; seen here only while it is unreachable.
                ReservationState::Paid => OrderStatus::Paid,
                ReservationState::Expired => OrderStatus::Expired,
            },
            created_at: rfc3339(r.created_at),
            expires_at: rfc3339(r.expires_at),
            paid_at: None,
            shipping_priority: None,
            refund_required: false,
            sort_key: (r.created_at, r.order_id.to_string()),
        }
    }
}

/// Only a settled order can be owed a refund: a payment that arrives while it waits for payment pays it.
fn may_owe_refund(status: OrderStatus) -> bool {
    matches!(status, OrderStatus::Expired | OrderStatus::Paid)
}

/// Marks the rows whose order is owed a refund, in one query for all of them.
async fn mark_refunds(
    conn: &mut Conn<'_>,
    rows: Vec<OrderRow>,
) -> Result<Vec<OrderView>, ApiError> {
    let settled: Vec<_> = rows
        .iter()
        .filter(|o| may_owe_refund(o.status))
        .map(|o| o.id)
        .collect();
    let owed = payments::refunds_owed(conn, &settled)
        .await
        .map_err(StoreError::from)?;
    Ok(rows
        .into_iter()
        .map(|o| {
            let refund_required = owed.contains(&o.id);
            OrderView {
                refund_required,
                ..o.into()
            }
        })
        .collect())
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::OrderNotFound, "no such order")
}

async fn live_sales(state: &AppState) -> Result<Vec<SaleId>, ApiError> {
    Ok(state.stock.live_sale_ids().await?)
}

/// Clock skew allowed between the gateway that minted an order id and Redis, which checked the sale window.
const SKEW: chrono::Duration = chrono::Duration::seconds(60);

/// The live sales whose window contains the moment this order id was minted (a UUIDv7 carries it): the only
/// sales a reservation with this id can belong to. Usually one; never every sale ever created.
async fn sales_of_order(state: &AppState, id: OrderId) -> Result<Vec<SaleId>, ApiError> {
    let Some(minted) =
        id.as_uuid()
            .get_timestamp()
            .map(|t| t.to_unix())
            .and_then(|(secs, nanos)| {
                chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
            })
    else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for sale in live_sales(state).await? {
        if let Some(entry) = state.catalog.get(sale).await?
            && entry.sale.starts_at - SKEW <= minted
            && minted < entry.sale.ends_at + SKEW
        {
            found.push(sale);
        }
    }
    Ok(found)
}

/// One of the buyer's orders
///
/// From PostgreSQL; a reservation whose row is not written yet is answered from Redis, so a fresh order is
/// never 404. Another buyer's order is 404.
#[utoipa::path(
    get,
    path = "/api/v1/orders/{id}",
    tag = "orders",
    operation_id = "get_order",
    params(("id" = OrderId, Path, description = "The order.")),
    responses(
        (status = 200, description = "The order.", body = OrderView),
        (status = 400, description = "The id is not a UUID.", body = InvalidRequestError),
        (status = 401, description = "Token missing or invalid.", body = UnauthorizedError),
        (status = 404, description = "Unknown, or another buyer's.", body = OrderNotFoundError),
        (status = 503, description = "PostgreSQL unreachable and Redis does not know the order, or Redis unreachable.", body = UnavailableError,
         headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("buyer_jwt" = [])),
)]
pub async fn get_order(
    state: web::Data<AppState>,
    buyer: Buyer,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = order_id(&path)?;
    let stored = async {
        let mut conn = state.pool.get().await.map_err(StoreError::from)?;
        match orders::find(&mut conn, id).await? {
            Some(row) if row.user_id == buyer.0.as_str() => {
                Ok::<_, ApiError>(Some(mark_refunds(&mut conn, vec![row]).await?.remove(0)))
            }
            Some(_) => Err(not_found()),
            None => Ok(None),
        }
    }
    .await;
    let view: OrderView = match stored {
        Ok(Some(view)) => view,
        Err(e) if e.code == ErrorCode::OrderNotFound => return Err(e), // another buyer's order
        // Not written yet, or the database is down: Redis knows every reservation still held.
        Ok(None) | Err(_) => {
            let found = held_reservation(&state, id, &buyer.0).await?;
            match (found, stored) {
                (Some(r), _) if r.user == buyer.0 => r.into(),
                (_, Err(e)) => return Err(e),
                _ => return Err(not_found()),
            }
        }
    };
    Ok(HttpResponse::Ok().json(view))
}

async fn held_reservation(
    state: &AppState,
    id: OrderId,
    buyer: &UserId,
) -> Result<Option<HeldReservation>, ApiError> {
    let sales = sales_of_order(state, id).await?;
    Ok(state.stock.find_reservation(id, buyer, &sales).await?)
}

/// The buyer's orders, newest first (at most 100).
#[derive(Serialize, ToSchema)]
pub(crate) struct OrderList {
    #[schema(max_items = 100)]
    orders: Vec<OrderView>,
}

/// The buyer's orders
///
/// Rows from PostgreSQL plus reservations still held in Redis whose row is not written yet; newest first
/// (by `created_at`, then id), at most 100.
#[utoipa::path(
    get,
    path = "/api/v1/me/orders",
    tag = "orders",
    operation_id = "my_orders",
    responses(
        (status = 200, description = "The orders.", body = OrderList),
        (status = 401, description = "Token missing or invalid.", body = UnauthorizedError),
        (status = 503, description = "PostgreSQL or Redis unreachable.", body = UnavailableError,
         headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
    security(("buyer_jwt" = [])),
)]
pub async fn my_orders(state: web::Data<AppState>, buyer: Buyer) -> Result<HttpResponse, ApiError> {
    let mut views = {
        let mut conn = state.pool.get().await.map_err(StoreError::from)?;
        let stored = orders::of_buyer(&mut conn, &buyer.0, MY_ORDERS_LIMIT).await?;
        mark_refunds(&mut conn, stored).await?
    };
    let written: HashSet<String> = views.iter().map(|o| o.order_id.clone()).collect();
    let sales = live_sales(&state).await?;
    let pending = state.stock.reservations_of_buyer(&buyer.0, &sales).await?;
    views.extend(
        pending
            .into_iter()
            .filter(|r| {
                r.state == ReservationState::Held && !written.contains(&r.order_id.to_string())
            })
            .map(OrderView::from),
    );
    views.sort_by(|a, b| b.sort_key.cmp(&a.sort_key));
    views.truncate(usize::try_from(MY_ORDERS_LIMIT).unwrap_or(100));
    Ok(HttpResponse::Ok().json(OrderList { orders: views }))
}
