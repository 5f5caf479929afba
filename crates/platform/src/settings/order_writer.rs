//! The `[order_writer]` section: the service that turns reservations into order rows.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderWriterSettings {
    pub listen: String,
    pub batch_size: usize,
    pub batch_linger_ms: u64,
    /// Batches one process writes at once: the next is collected and written while earlier ones commit.
    pub batches_in_flight: usize,
    /// After SIGTERM, how long `/readyz` answers 503 before the ops server closes (ms).
    pub shutdown_delay_ms: u64,
    pub shutdown_grace_ms: u64,
    pub failed_batch_attempts: u32,
    pub dead_letter_poll_ms: u64,
}

impl OrderWriterSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.batch_size > 0 && self.batch_size <= 5000,
            "order_writer.batch_size must be 1..=5000"
        );
        anyhow::ensure!(
            (1..=16).contains(&self.batches_in_flight),
            "order_writer.batches_in_flight must be 1..=16"
        );
        anyhow::ensure!(
            (1..=100).contains(&self.failed_batch_attempts),
            "order_writer.failed_batch_attempts must be 1..=100"
        );
        anyhow::ensure!(
            self.dead_letter_poll_ms >= 100,
            "order_writer.dead_letter_poll_ms must be at least 100"
        );
        Ok(())
    }
}
