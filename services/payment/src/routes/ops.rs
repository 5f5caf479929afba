//! `/healthz` (the process is alive), `/readyz` (Redis with the script cache, RabbitMQ, PostgreSQL) and
//! `/metrics`.

use crate::state::AppState;
use actix_web::{HttpResponse, web};
use flashsale_platform::http::{healthz as alive, readiness_response};
use flashsale_platform::metrics::render;
use std::sync::atomic::Ordering;

pub async fn healthz() -> HttpResponse {
    alive()
}

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

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    render(&state.registry)
}
