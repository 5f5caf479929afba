//! What every handler shares: clients and pools (cheap to clone), built once at start-up.

use crate::auth::Auth;
use crate::metrics::GatewayMetrics;
use flashsale_broker::Publisher;
use flashsale_domain::{OrderId, SaleId};
use flashsale_stock::{RateLimits, Stock};
use flashsale_store::PgPool;
use prometheus::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct AppState {
    pub stock: Stock,
    pub publisher: Publisher,
    pub pool: PgPool,
    pub auth: Arc<Auth>,
    pub limits: RateLimits,
    pub metrics: GatewayMetrics,
    pub registry: Registry,
    /// Confirmed reservations whose outbox entry can go; removed in batches off the hot path.
    pub confirmed: UnboundedSender<(SaleId, OrderId)>,
    pub max_body_bytes: usize,
    pub relay_age: Duration,
    pub relay_batch: usize,
    /// Cancelled when shutdown begins: readiness turns 503 while in-flight requests drain.
    pub stopping: CancellationToken,
}
