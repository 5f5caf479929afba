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
        anyhow::ensure!(self.sweep_batch > 0, "expiry.sweep_batch must be positive");
        anyhow::ensure!(
            self.shutdown_grace_ms > 0,
            "expiry.shutdown_grace_ms must be positive"
        );
        Ok(())
    }
}
