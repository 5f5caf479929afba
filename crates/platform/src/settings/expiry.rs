//! The `[expiry]` section: the service that ends unpaid reservations at their deadline.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpirySettings {
    pub listen: String,
    pub batch_size: usize,
    pub batch_linger_ms: u64,
    /// How often the sweeper looks for overdue reservations a message missed (ms).
    pub sweep_interval_ms: u64,
    /// How long past its deadline a reservation must be before the sweeper takes it (ms): the message path
    /// handles the punctual ones.
    pub sweep_grace_ms: u64,
    /// Most reservations one sweeper pass takes per source.
    pub sweep_batch: usize,
    /// Longest a due message that arrived before its deadline (clocks of gateway and broker apart) is held
    /// before it is acknowledged and left to the sweeper (ms).
    pub early_wait_max_ms: u64,
    /// Attempts at a batch failing with an error other than an outage before it is split to find the message
    /// at fault.
    pub failed_batch_attempts: u32,
    /// After SIGTERM, how long `/readyz` answers 503 before the ops server closes (ms).
    pub shutdown_delay_ms: u64,
    pub shutdown_grace_ms: u64,
}

impl ExpirySettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.batch_size > 0 && self.batch_size <= 5000,
            "expiry.batch_size must be 1..=5000"
        );
        anyhow::ensure!(
            self.sweep_interval_ms >= 100,
            "expiry.sweep_interval_ms must be at least 100"
        );
        anyhow::ensure!(
            self.sweep_batch > 0 && self.sweep_batch <= 10_000,
            "expiry.sweep_batch must be 1..=10000"
        );
        anyhow::ensure!(
            self.early_wait_max_ms <= 60_000,
            "expiry.early_wait_max_ms must be at most 60000"
        );
        anyhow::ensure!(
            self.failed_batch_attempts > 0,
            "expiry.failed_batch_attempts must be positive"
        );
        anyhow::ensure!(
            self.shutdown_grace_ms > 0,
            "expiry.shutdown_grace_ms must be positive"
        );
        Ok(())
    }
}
