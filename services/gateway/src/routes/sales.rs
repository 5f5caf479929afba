//! `GET /api/v1/sales/{id}`: served from Redis alone.

use crate::error::ApiError;
use crate::reserve::missing_sale_state;
use crate::routes::sale_id;
use crate::state::AppState;
use crate::warm::snapshot_of;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, SecondsFormat, Utc};
use flashsale_domain::{Money, SaleId, SaleStatus};
use flashsale_stock::SaleSnapshot;
use serde::Serialize;

#[derive(Serialize)]
pub struct SaleView {
    pub id: SaleId,
    pub product_name: String,
    pub price: Money,
    pub total_stock: i64,
    pub remaining: i64,
    pub reserved: i64,
    pub sold: i64,
    pub status: SaleStatus,
    pub starts_at: String,
    pub ends_at: String,
    pub per_user_limit: u32,
    pub payment_window_secs: u32,
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl SaleView {
    pub fn of(s: &SaleSnapshot, now: DateTime<Utc>) -> Self {
        Self {
            id: s.sale,
            product_name: s.product_name.clone(),
            price: s.price,
            total_stock: s.total_stock,
            remaining: s.remaining,
            reserved: (s.total_stock - s.remaining - s.sold).max(0),
            sold: s.sold,
            status: SaleStatus::at(now, s.starts_at, s.ends_at, s.remaining),
            starts_at: rfc3339(s.starts_at),
            ends_at: rfc3339(s.ends_at),
            per_user_limit: s.per_user_limit,
            payment_window_secs: s.payment_window_secs,
        }
    }
}

pub async fn get_sale(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sale = sale_id(&path)?;
    if let Some(snapshot) = state.stock.snapshot(sale).await? {
        return Ok(HttpResponse::Ok().json(SaleView::of(&snapshot, Utc::now())));
    }
    // A sale whose last reservations can no longer be held is never warmed again: PostgreSQL answers for it.
    let row = {
        let mut conn = state.pool.get().await?;
        flashsale_store::sales::find(&mut conn, sale).await?
    };
    match row {
        Some(row)
            if row.ends_at + chrono::Duration::seconds(row.payment_window_secs.into())
                <= Utc::now() =>
        {
            let snapshot =
                snapshot_of(&row, row.total_stock - row.held, 0).map_err(ApiError::internal)?;
            Ok(HttpResponse::Ok().json(SaleView::of(&snapshot, Utc::now())))
        }
        _ => Err(missing_sale_state(&state, sale).await),
    }
}
