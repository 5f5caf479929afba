//! HTTP routes, one file per resource. Handlers parse, call, map.

pub mod checkout;
pub mod ops;
pub mod psp;
pub mod webhook;

use crate::error::ApiError;
use actix_web::web;
use chrono::{DateTime, SecondsFormat, Utc};
use flashsale_domain::ErrorCode;
use futures_util::StreamExt;

/// Largest body the payment API reads (webhooks and simulator requests are small).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig, simulator: bool) {
    cfg.route("/webhooks/psp", web::post().to(webhook::receive))
        .route(
            "/api/v1/orders/{id}/checkout",
            web::post().to(checkout::checkout),
        )
        .route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/metrics", web::get().to(ops::metrics));
    // Off in production: nothing of the simulator is served at all.
    if simulator {
        cfg.route("/psp/checkout/{payment_id}", web::get().to(psp::page))
            .route(
                "/psp/checkout/{payment_id}/complete",
                web::post().to(psp::complete),
            );
    }
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
