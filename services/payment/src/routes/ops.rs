//! `/healthz` (the process is alive), `/readyz` (Redis with the script cache, RabbitMQ, PostgreSQL) and
//! `/metrics`.

use crate::state::AppState;
use actix_web::{HttpResponse, web};
use flashsale_platform::http::{Health, Readiness, healthz as alive, readiness_response};
use flashsale_platform::metrics::render;
use std::sync::atomic::Ordering;

/// The process is alive and serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "ops", operation_id = "healthz",
    responses((status = 200, description = "Alive.", body = Health)))]
pub async fn healthz() -> HttpResponse {
    alive()
}

/// Readiness: `redis` (the reservation script runs), `amqp` (consumer attached and publisher connected) and
/// `postgres` (`SELECT 1`).
#[utoipa::path(get, path = "/readyz", tag = "ops", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready: every check is `ok`.", body = Readiness),
        (status = 503, description = "Not ready: a check failed, or the service is stopping.", body = Readiness,
         headers(("Retry-After" = u64, description = "Always 1."))),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let redis = state.stock.probe().await.map_err(|e| e.to_string());
    let amqp = if state.consuming.load(Ordering::Relaxed) && state.publisher.is_connected() {
        Ok(())
    } else {
        Err("not connected".to_owned())
    };
    let postgres = flashsale_store::ping(&state.pool)
        .await
        .map_err(|e| e.to_string());
    readiness_response(
        vec![("redis", redis), ("amqp", amqp), ("postgres", postgres)],
        state.stopping.is_cancelled(),
    )
}

/// Prometheus text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "ops", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format.", content_type = "text/plain", body = String)))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    render(&state.registry)
}
