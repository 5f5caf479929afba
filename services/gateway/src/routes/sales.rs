//! `GET /api/v1/sales/{id}`: served from Redis; a sale whose last reservation can no longer be held is
//! answered from its settled record in the catalog (its Redis keys expire by design).

use crate::error::ApiError;
use crate::reserve::missing_sale_state;
use crate::routes::sale_id;
use crate::state::AppState;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use flashsale_api_error::openapi::{InvalidRequestError, SaleNotFoundError, UnavailableError};
use flashsale_domain::{Money, SaleId, SaleStatus};
use flashsale_stock::SaleSnapshot;
use serde::Serialize;
use utoipa::ToSchema;

/// A sale and its counters, in units: `reserved = total_stock − remaining − sold`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "id": 1, "product_name": "Phone X", "price": "2990.00", "total_stock": 100, "remaining": 37, "reserved": 63,
    "sold": 0, "status": "active", "starts_at": "2026-11-23T10:00:00.000Z", "ends_at": "2026-11-23T11:00:00.000Z",
    "per_user_limit": 1, "payment_window_secs": 600
}))]
pub struct SaleView {
    pub id: SaleId,
    pub product_name: String,
    pub price: Money,
    pub total_stock: i64,
    pub remaining: i64,
    #[schema(minimum = 0)]
    pub reserved: i64,
    pub sold: i64,
    pub status: SaleStatus,
    #[schema(format = DateTime)]
    pub starts_at: String,
    #[schema(format = DateTime)]
    pub ends_at: String,
    pub per_user_limit: u32,
    pub payment_window_secs: u32,
    /// Redis key groups the stock is split over (1 unless the sale was created with more).
    #[schema(minimum = 1, maximum = 16)]
    pub stock_shards: u16,
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl SaleView {
    pub fn of(s: &SaleSnapshot, now: DateTime<Utc>) -> Self {
        let sale = &s.sale;
        Self {
            id: sale.id,
            product_name: sale.product_name.clone(),
            price: sale.price,
            total_stock: sale.total_stock,
            remaining: s.remaining,
            reserved: (sale.total_stock - s.remaining - s.sold).max(0),
            sold: s.sold,
            status: sale.status(now, s.remaining),
            starts_at: rfc3339(sale.starts_at),
            ends_at: rfc3339(sale.ends_at),
            per_user_limit: sale.per_user_limit,
            payment_window_secs: sale.payment_window_secs,
            stock_shards: sale.stock_shards,
        }
    }
}

/// A sale's state
///
/// Served from Redis; a sale whose last reservation can no longer be held is answered from PostgreSQL.
#[utoipa::path(
    get,
    path = "/api/v1/sales/{id}",
    tag = "sales",
    operation_id = "get_sale",
    params(("id" = SaleId, Path, description = "The sale.")),
    responses(
        (status = 200, description = "The sale; `status` from the current time and `remaining`.", body = SaleView),
        (status = 400, description = "The id is not a positive integer.", body = InvalidRequestError),
        (status = 404, description = "No such sale.", body = SaleNotFoundError),
        (status = 503, description = "Redis unreachable, or the sale's Redis state is being restored.", body = UnavailableError,
         headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn get_sale(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sale = sale_id(&path)?;
    if let Some(snapshot) = state.stock.snapshot(sale).await? {
        return Ok(HttpResponse::Ok().json(SaleView::of(&snapshot, Utc::now())));
    }
    let now = Utc::now();
    match state.catalog.settled(sale).await? {
        Some(entry) if !entry.sale.is_live(now) => {
            let snapshot = SaleSnapshot {
                sale: entry.sale.clone(),
                remaining: entry.sale.total_stock - entry.held,
                sold: 0,
            };
            Ok(HttpResponse::Ok().json(SaleView::of(&snapshot, now)))
        }
        _ => Err(missing_sale_state(&state, sale).await),
    }
}
