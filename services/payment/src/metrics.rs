//! The payment service's own figures, beside the shared consumer and HTTP metrics.

use flashsale_platform::metrics::counter_vec;
use prometheus::{IntCounterVec, Registry};

#[derive(Clone)]
pub struct PaymentMetrics {
    /// `flashsale_webhooks_total{result}`: paid, refund_required, failed, replayed, invalid_signature,
    /// invalid_request, not_found, unavailable.
    pub webhooks: IntCounterVec,
    /// `flashsale_payments_recorded_total{source}`: pending payments recorded by the consumer or a checkout.
    pub recorded: IntCounterVec,
    /// `flashsale_payment_dead_letters_total{reason}`.
    pub dead_letters: IntCounterVec,
}

impl PaymentMetrics {
    pub fn new(registry: &Registry) -> Self {
        Self {
            webhooks: counter_vec(
                registry,
                "flashsale_webhooks_total",
                "Payment-provider webhooks answered, by result",
                &["result"],
            ),
            recorded: counter_vec(
                registry,
                "flashsale_payments_recorded_total",
                "Pending payments recorded, by source (consumer or checkout)",
                &["source"],
            ),
            dead_letters: counter_vec(
                registry,
                "flashsale_payment_dead_letters_total",
                "reservation.created deliveries the payment consumer dead-lettered, by reason",
                &["reason"],
            ),
        }
    }

    pub fn webhook(&self, result: &str) {
        self.webhooks.with_label_values(&[result]).inc();
    }
}
