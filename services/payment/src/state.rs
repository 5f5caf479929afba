//! What every handler shares: clients and pools (cheap to clone), built once at start-up.

use crate::metrics::PaymentMetrics;
use flashsale_auth::Auth;
use flashsale_broker::Publisher;
use flashsale_stock::Stock;
use flashsale_store::PgPool;
use prometheus::Registry;
use secrecy::SecretString;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// Applies webhook events in batches, one commit each (`applier.rs`).
    pub applier: crate::applier::Applier,
    pub stock: Stock,
    pub publisher: Publisher,
    pub auth: Arc<Auth>,
    /// The current webhook key first, then the previous ones still accepted.
    pub webhook_secrets: Arc<Vec<SecretString>>,
    pub webhook_tolerance_secs: u64,
    pub checkout_base_url: String,
    /// Where the simulator sends its webhooks.
    pub simulator_webhook_url: String,
    pub http: reqwest::Client,
    pub metrics: PaymentMetrics,
    pub registry: Registry,
    /// Whether the `reservation.created` consumer is attached (readiness).
    pub consuming: Arc<AtomicBool>,
    /// Cancelled when shutdown begins: readiness turns 503 while in-flight requests drain.
    pub stopping: CancellationToken,
}
