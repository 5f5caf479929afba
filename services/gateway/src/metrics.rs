//! The gateway's own figures, beside the shared HTTP and publisher metrics.

use flashsale_platform::metrics::counter_vec;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct GatewayMetrics {
    /// `flashsale_reservations_total{outcome}`: RESERVED, REPLAYED (an Idempotency-Key retry), or the error code.
    pub reservations: IntCounterVec,
    /// `flashsale_outbox_relayed_total{result}`: re-published reservations (confirmed, failed, orphan).
    pub relayed: IntCounterVec,
    /// `flashsale_sales_warmed_total`: sales made live in Redis from PostgreSQL after their state was missing.
    pub warmed: IntCounterVec,
    /// `flashsale_requests_shed_total{reason}`: API requests refused before any Redis or RabbitMQ work
    /// (`in_flight`: past `gateway.max_in_flight`; `rate`: past `gateway.max_requests_per_sec`;
    /// `breaker_redis`, `breaker_amqp`: a reservation refused by an open circuit breaker; `address`: past the
    /// per-address limit, answered 429).
    pub shed: IntCounterVec,
    /// `flashsale_reservations_from_memory_total{outcome}`: SOLD_OUT or SALE_ENDED answered without Redis (also
    /// counted in `flashsale_reservations_total`).
    pub from_memory: IntCounterVec,
    /// `flashsale_sold_out_forgotten_total{by}`: sold-out sales put back on sale in memory, by what told the
    /// gateway: `announcement` (Redis Pub/Sub), `check` (the periodic safety net) or `resubscribed`.
    pub sold_out_forgotten: IntCounterVec,
    /// `flashsale_breaker_state{dependency}`: 0 closed, 1 half-open, 2 open.
    pub breaker_state: IntGaugeVec,
    /// `flashsale_breaker_transitions_total{dependency,to}`.
    pub breaker_transitions: IntCounterVec,
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
            from_memory: counter_vec(
                registry,
                "flashsale_reservations_from_memory_total",
                "Reservations answered SOLD_OUT or SALE_ENDED from process memory, without Redis",
                &["outcome"],
            ),
            sold_out_forgotten: counter_vec(
                registry,
                "flashsale_sold_out_forgotten_total",
                "Sold-out sales a gateway stopped answering from memory, by what told it units came back",
                &["by"],
            ),
            shed: counter_vec(
                registry,
                "flashsale_requests_shed_total",
                "API requests refused by admission before any Redis or RabbitMQ work, by reason",
                &["reason"],
            ),
            breaker_state: {
                let gauge = IntGaugeVec::new(
                    Opts::new(
                        "flashsale_breaker_state",
                        "Circuit breaker state by dependency: 0 closed, 1 half-open, 2 open",
                    ),
                    &["dependency"],
                )
                .unwrap_or_else(|e| panic!("flashsale_breaker_state is malformed: {e}"));
                registry
                    .register(Box::new(gauge.clone()))
                    .unwrap_or_else(|e| panic!("flashsale_breaker_state registered twice: {e}"));
                gauge
            },
            breaker_transitions: counter_vec(
                registry,
                "flashsale_breaker_transitions_total",
                "Circuit breaker transitions by dependency and the state entered",
                &["dependency", "to"],
            ),
        }
    }
}
