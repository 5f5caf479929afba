//! Plumbing every flashsale binary shares: settings and secrets, telemetry, metrics, health answers and shutdown.

pub mod headers;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod secrets;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use secrets::Secret;
pub use settings::Settings;
pub use shutdown::Shutdown;
