//! The `[sse]` section: the gateway's live stock feed (`GET /api/v1/sales/{id}/events`).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseSettings {
    /// Shortest time between two reads of one sale's counters, so between two events of one sale (ms).
    pub coalesce_ms: u64,
    /// While a sale has listeners, its counters are re-read at least this often, covering a lost announcement (ms).
    pub recheck_ms: u64,
    /// A `: ping` comment is sent on an idle stream this often (ms).
    pub heartbeat_ms: u64,
    /// Events a client may fall behind before its stream is closed.
    pub client_buffer: usize,
    /// Streams one gateway serves at once; past it, 503 with Retry-After.
    pub max_streams: usize,
    /// SO_SNDBUF of every connection the gateway accepts (bytes); 0 = the kernel's autotuning.
    pub send_buffer_bytes: usize,
}

impl SseSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=1000).contains(&self.coalesce_ms),
            "sse.coalesce_ms must be 1..=1000: every change must reach the streams within a second"
        );
        anyhow::ensure!(
            (100..=60_000).contains(&self.recheck_ms) && self.recheck_ms >= self.coalesce_ms,
            "sse.recheck_ms must be 100..=60000 and at least sse.coalesce_ms"
        );
        anyhow::ensure!(
            (10..=300_000).contains(&self.heartbeat_ms),
            "sse.heartbeat_ms must be 10..=300000"
        );
        anyhow::ensure!(
            (1..=10_000).contains(&self.client_buffer),
            "sse.client_buffer must be 1..=10000"
        );
        anyhow::ensure!(
            (1..=1_000_000).contains(&self.max_streams),
            "sse.max_streams must be 1..=1000000"
        );
        anyhow::ensure!(
            self.send_buffer_bytes == 0 || (4096..=16 << 20).contains(&self.send_buffer_bytes),
            "sse.send_buffer_bytes must be 0 (the kernel decides) or 4096..=16777216"
        );
        Ok(())
    }
}
