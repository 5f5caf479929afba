//! HTTP routes, one file per resource. Handlers parse, call, map.

pub mod admin;
pub mod events;
pub mod list;
pub mod ops;
pub mod orders;
pub mod reservations;
pub mod sales;

use crate::error::ApiError;
use actix_web::web;
use flashsale_domain::{ErrorCode, OrderId, SaleId};

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Routes are tried in order: the hot one first.
    cfg.route(
        "/api/v1/sales/{id}/reservations",
        web::post().to(reservations::reserve),
    )
    .route("/healthz", web::get().to(ops::healthz))
    .route("/readyz", web::get().to(ops::readyz))
    .route("/metrics", web::get().to(ops::metrics))
    .route("/api/v1/admin/sales", web::post().to(admin::create_sale))
    .route("/api/v1/sales", web::get().to(list::list_sales))
    .route("/api/v1/sales/{id}", web::get().to(sales::get_sale))
    .route("/api/v1/sales/{id}/events", web::get().to(events::events))
    .route("/api/v1/orders/{id}", web::get().to(orders::get_order))
    .route("/api/v1/me/orders", web::get().to(orders::my_orders));
}

pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NotFound, "no such route"))
}

pub fn sale_id(raw: &str) -> Result<SaleId, ApiError> {
    raw.parse().map_err(|e| ApiError::invalid(format!("{e}")))
}

pub fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    raw.parse().map_err(|e| ApiError::invalid(format!("{e}")))
}
