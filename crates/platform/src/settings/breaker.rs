//! The `[breaker]` section: the gateway's circuit breakers around Redis and RabbitMQ.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// Consecutive dependency failures (timeouts, connection errors) that open a breaker.
    pub failure_threshold: u32,
    /// How long an open breaker refuses every call before letting probes through (ms).
    pub cool_down_ms: u64,
    /// Calls at a time let through while half-open; the first success closes the breaker.
    pub half_open_probes: u16,
}

impl BreakerSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=10_000).contains(&self.failure_threshold),
            "breaker.failure_threshold must be 1..=10000"
        );
        anyhow::ensure!(
            (100..=600_000).contains(&self.cool_down_ms),
            "breaker.cool_down_ms must be 100..=600000"
        );
        anyhow::ensure!(
            (1..=1000).contains(&self.half_open_probes),
            "breaker.half_open_probes must be 1..=1000"
        );
        Ok(())
    }
}
