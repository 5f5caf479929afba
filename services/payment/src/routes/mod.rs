//! HTTP routes, one file per resource. Handlers parse, call, map.

pub mod checkout;
pub mod ops;
pub mod psp;
pub mod webhook;

use crate::error::ApiError;
use actix_web::http::Method;
use actix_web::web;
use chrono::{DateTime, SecondsFormat, Utc};
use flashsale_domain::ErrorCode;
use flashsale_platform::openapi::{Document, Endpoint, Routes};
use futures_util::StreamExt;
use std::collections::BTreeSet;

/// Largest body the payment API reads (webhooks and simulator requests are small).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Registers every route and yields the table of them (held against the OpenAPI document by a test).
pub fn configure(
    cfg: &mut web::ServiceConfig,
    simulator: bool,
    doc: web::Data<Document>,
) -> BTreeSet<Endpoint> {
    let mut routes = Routes::new(cfg);
    routes
        .add(Method::POST, "/webhooks/psp", webhook::receive)
        .add(
            Method::POST,
            "/api/v1/orders/{id}/checkout",
            checkout::checkout,
        )
        .add(Method::GET, "/healthz", ops::healthz)
        .add(Method::GET, "/readyz", ops::readyz)
        .add(Method::GET, "/metrics", ops::metrics);
    // Off in production: nothing of the simulator is served at all.
    if simulator {
        routes
            .add(Method::GET, "/psp/checkout/{payment_id}", psp::page)
            .add(
                Method::POST,
                "/psp/checkout/{payment_id}/complete",
                psp::complete,
            );
    }
    flashsale_platform::openapi::serve(&mut routes, doc);
    routes.table()
}

pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::new(ErrorCode::NotFound, "no such route"))
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn uuid_in_path(raw: &str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::invalid(format!("{what} is not a UUID")))
}

/// Reads the whole body, refusing it past [`MAX_BODY_BYTES`] without buffering the rest.
pub async fn read_body(mut payload: web::Payload) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body exceeds {MAX_BODY_BYTES} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
