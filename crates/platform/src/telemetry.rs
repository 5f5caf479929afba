//! Logging through `tracing-subscriber`. Reads `RUST_LOG` first, then `telemetry.log_level`;
//! `telemetry.log_format` chooses `text` (development) or `json` (log shippers).

use crate::settings::TelemetrySettings;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls (tests building several services) are no-ops.
pub fn init(service: &str, settings: &TelemetrySettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let installed = if settings.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_current_span(false)
            .try_init()
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .try_init()
    };
    if installed.is_ok() {
        tracing::info!(service, "telemetry initialised");
    }
}
