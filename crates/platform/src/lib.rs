//! Plumbing every flashsale binary shares: settings, telemetry, metrics, health answers and shutdown.

pub mod http;
pub mod metrics;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use settings::Settings;
pub use shutdown::shutdown_on_signal;
