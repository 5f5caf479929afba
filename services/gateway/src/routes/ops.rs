//! `/healthz` (the process is alive), `/readyz` (every dependency answers, the script cache included, and no
//! circuit breaker is open) and `/metrics`.

use crate::breakers::OPEN_CHECK;
use crate::state::AppState;
use actix_web::{HttpResponse, web};
use flashsale_platform::http::{Health, Readiness, healthz as alive, readiness_response};
use flashsale_platform::metrics::render;

/// The process is alive and serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "ops", operation_id = "healthz",
    responses((status = 200, description = "Alive.", body = Health)))]
pub async fn healthz() -> HttpResponse {
    alive()
}

/// Readiness: `redis` (the reservation script runs), `amqp` (the publisher is up) and `postgres`
/// (`SELECT 1`); an open circuit breaker reads `circuit open`.
#[utoipa::path(get, path = "/readyz", tag = "ops", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready: every check is `ok`.", body = Readiness),
        (status = 503, description = "Not ready: a check failed, or the gateway is stopping.", body = Readiness,
         headers(("Retry-After" = u64, description = "Always 1."))),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // An open breaker is named as such, and its dependency is not called: the breaker already knows.
    let redis = if state.breakers.redis.open_for().is_some() {
        Err(OPEN_CHECK.to_owned())
    } else {
        state.stock.probe().await.map_err(|e| e.to_string())
    };
    let amqp = if state.breakers.amqp.open_for().is_some() {
        Err(OPEN_CHECK.to_owned())
    } else if state.publisher.is_connected() {
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
    state.breakers.refresh_gauges();
    render(&state.registry)
}
