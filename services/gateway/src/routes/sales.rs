//! `GET /api/v1/sales/{id}`: served from Redis; a sale whose last reservation can no longer be held is
//! answered from its settled record in the catalog (its Redis keys expire by design).

use crate::error::ApiError;
use crate::reserve::missing_sale_state;
use crate::routes::sale_id;
use crate::state::AppState;
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
