//! order-writer's own figures, beside the shared consumer and HTTP metrics.

use flashsale_platform::metrics::{counter_vec, histogram_vec};
use prometheus::{HistogramVec, IntCounterVec, IntGauge, Registry};

#[derive(Clone)]
pub struct WriterMetrics {
    /// `flashsale_orders_written_total{status}`: rows inserted, by status (pending_payment, rejected).
    pub written: IntCounterVec,
    /// `flashsale_order_writer_duplicates_total`: redeliveries and relay re-publishes that found their row.
    pub duplicates: IntCounterVec,
    /// `flashsale_order_writer_dead_letters_total{reason}`.
    pub dead_letters: IntCounterVec,
    /// `flashsale_order_writer_locked_retries_total`: batches the optimistic attempt could not decide alone,
    /// written again under their sales' row locks.
    pub locked_retries: IntCounterVec,
    /// `flashsale_order_writer_commit_seconds`: one batch's transaction.
    pub commit_seconds: HistogramVec,
    /// `flashsale_dead_letter_messages`: messages waiting in the dead-letter queue for an operator.
    pub dead_letter_depth: IntGauge,
}

impl WriterMetrics {
    pub fn new(registry: &Registry) -> Self {
        Self {
            written: counter_vec(
                registry,
                "flashsale_orders_written_total",
                "Order rows inserted, by status; rejected means the database's stock guard refused it",
                &["status"],
            ),
            duplicates: counter_vec(
                registry,
                "flashsale_order_writer_duplicates_total",
                "Deliveries whose order row already existed (redelivery or relay re-publish)",
                &[],
            ),
            dead_letters: counter_vec(
                registry,
                "flashsale_order_writer_dead_letters_total",
                "Deliveries sent to the dead-letter queue, by reason",
                &["reason"],
            ),
            locked_retries: counter_vec(
                registry,
                "flashsale_order_writer_locked_retries_total",
                "Batches rolled back by the optimistic attempt (a refusal, stock read stale, a concurrent batch \
                 with a shared buyer) and written again under their sales' row locks",
                &[],
            ),
            commit_seconds: histogram_vec(
                registry,
                "flashsale_order_writer_commit_seconds",
                "Time of one batch transaction, from first query to commit",
                &[],
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            ),
            dead_letter_depth: gauge(
                registry,
                "flashsale_dead_letter_messages",
                "Messages in the dead-letter queue (read periodically; `flashsale-admin dlq list` shows them)",
            ),
        }
    }
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry
        .register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("registering {name}: {e}"));
    g
}
