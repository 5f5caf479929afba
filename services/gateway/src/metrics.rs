//! The gateway's own figures, beside the shared HTTP and publisher metrics.

use flashsale_platform::metrics::counter_vec;
use prometheus::{IntCounterVec, Registry};

#[derive(Clone)]
pub struct GatewayMetrics {
    /// `flashsale_reservations_total{outcome}`: RESERVED, REPLAYED (an Idempotency-Key retry), or the error code.
    pub reservations: IntCounterVec,
    /// `flashsale_outbox_relayed_total{result}`: re-published reservations (confirmed, failed, orphan).
    pub relayed: IntCounterVec,
    /// `flashsale_sales_warmed_total`: sales made live in Redis from PostgreSQL after their state was missing.
    pub warmed: IntCounterVec,
    /// `flashsale_requests_shed_total{reason}`: API requests refused before any Redis or RabbitMQ work
    /// (`in_flight`: past `gateway.max_in_flight`; `address`: past the per-address limit, answered 429).
    pub shed: IntCounterVec,
}

impl GatewayMetrics {
    pub fn new(registry: &Registry) -> Self {
        Self {
            reservations: counter_vec(
                registry,
                "flashsale_reservations_total",
                "Reservation attempts by outcome: RESERVED, REPLAYED or the error code",
                &["outcome"],
            ),
            relayed: counter_vec(
                registry,
                "flashsale_outbox_relayed_total",
                "Outbox entries the relay re-published, by result",
                &["result"],
            ),
            warmed: counter_vec(
                registry,
                "flashsale_sales_warmed_total",
                "Sales warmed into Redis from PostgreSQL",
                &[],
            ),
            shed: counter_vec(
                registry,
                "flashsale_requests_shed_total",
                "API requests refused by admission before any Redis or RabbitMQ work, by reason",
                &["reason"],
            ),
        }
    }
}
