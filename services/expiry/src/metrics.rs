//! expiry's own figures, beside the shared consumer (`flashsale_messages_total{queue,result}`) and HTTP
//! metrics.

use flashsale_platform::metrics::{counter_vec, histogram_vec};
use prometheus::{HistogramVec, IntCounterVec, Registry};

/// Who found an expiration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A due message from `<prefix>expiry.due`.
    Message,
    /// The sweeper, from PostgreSQL or Redis.
    Sweeper,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::Sweeper => "sweeper",
        }
    }
}

#[derive(Clone)]
pub struct ExpiryMetrics {
    /// `flashsale_expirations_total{source}`: orders this service moved `pending_payment → expired`.
    pub expirations: IntCounterVec,
    /// `flashsale_expiry_release_lag_seconds{source}`: units back in Redis − the order's deadline.
    pub release_lag: HistogramVec,
    /// `flashsale_sweeper_found_total{store}`: overdue reservations a sweeper pass found.
    pub sweeper_found: IntCounterVec,
    /// `flashsale_expiry_left_to_sweeper_total`: due messages still not due by PostgreSQL's clock after
    /// `expiry.early_wait_max_ms`.
    pub left_to_sweeper: IntCounterVec,
}

impl ExpiryMetrics {
    pub fn new(registry: &Registry) -> Self {
        Self {
            expirations: counter_vec(
                registry,
                "flashsale_expirations_total",
                "Orders moved pending_payment → expired (units returned), by who found them",
                &["source"],
            ),
            release_lag: histogram_vec(
                registry,
                "flashsale_expiry_release_lag_seconds",
                "Time from an order's deadline until its units were back in Redis",
                &["source"],
                &[
                    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                ],
            ),
            sweeper_found: counter_vec(
                registry,
                "flashsale_sweeper_found_total",
                "Overdue reservations found by the sweeper, by the store that showed them",
                &["store"],
            ),
            left_to_sweeper: counter_vec(
                registry,
                "flashsale_expiry_left_to_sweeper_total",
                "Due messages acknowledged before PostgreSQL's clock reached their deadline (clock skew \
                 beyond expiry.early_wait_max_ms); the sweeper expires them",
                &[],
            ),
        }
    }
}
