//! HTTP routes, one file per resource. Handlers parse, call, map.

pub mod admin;
pub mod dev;
pub mod events;
pub mod list;
pub mod ops;
pub mod orders;
pub mod reservations;
pub mod sales;
pub mod storefront;

use crate::error::ApiError;
use actix_web::http::Method;
use actix_web::web;
use flashsale_domain::{ErrorCode, OrderId, SaleId};
use flashsale_platform::openapi::{Document, Endpoint, Routes};
use std::collections::BTreeSet;

/// What the page routes need: the storefront, and the development sign-in's settings in development mode only.
#[derive(Clone)]
pub struct Site {
    pub storefront: web::Data<storefront::Storefront>,
    pub dev: Option<web::Data<dev::Minter>>,
}

/// Registers every route and yields the table of them (held against the OpenAPI document by a test).
pub fn configure(
    cfg: &mut web::ServiceConfig,
    doc: web::Data<Document>,
    site: &Site,
) -> BTreeSet<Endpoint> {
    cfg.app_data(site.storefront.clone());
    if let Some(minter) = &site.dev {
        cfg.app_data(minter.clone());
    }
    let mut routes = Routes::new(cfg);
    // Routes are tried in order: the hot one first.
    routes
        .add(
            Method::POST,
            "/api/v1/sales/{id}/reservations",
            reservations::reserve,
        )
        .add(Method::GET, "/healthz", ops::healthz)
        .add(Method::GET, "/readyz", ops::readyz)
        .add(Method::GET, "/metrics", ops::metrics)
        .add(Method::POST, "/api/v1/admin/sales", admin::create_sale)
        .add(Method::GET, "/api/v1/sales", list::list_sales)
        .add(Method::GET, "/api/v1/sales/{id}", sales::get_sale)
        .add(Method::GET, "/api/v1/sales/{id}/events", events::events)
        .add(Method::GET, "/api/v1/orders/{id}", orders::get_order)
        .add(Method::GET, "/api/v1/me/orders", orders::my_orders)
        .add(Method::GET, "/", storefront::page)
        .add(Method::GET, "/storefront/{file}", storefront::file);
    // Production has no such route at all: whoever may call it can sign in as anyone.
    if site.dev.is_some() {
        routes.add(Method::POST, "/api/v1/dev/token", dev::token);
    }
    flashsale_platform::openapi::serve(&mut routes, doc);
    routes.table()
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
