//! What every handler shares: clients and pools (cheap to clone), built once at start-up.

use crate::address_limit::AddressLimit;
use crate::auth::Auth;
use crate::breakers::Breakers;
use crate::catalog::SaleCatalog;
use crate::metrics::GatewayMetrics;
use crate::warm::{RestoreRule, Restores};
use flashsale_broker::Publisher;
use flashsale_domain::OrderId;
use flashsale_stock::{RateLimits, Stock, Tag};
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
    /// Reservations' publishes, grouped into shared messages (`gateway.group_commit_*`); the relay and
    /// notifications use `publisher` directly.
    pub group: flashsale_broker::GroupCommit,
    pub pool: PgPool,
    /// Sale records in memory: unknown and lost sales cost no query per request.
    pub catalog: Arc<SaleCatalog>,
    /// Sold-out and ended sales answered without Redis (`sold_out.rs`).
    pub sold_out: Arc<crate::sold_out::SoldOutMemory>,
    /// The live stock feed: one hub per sale with listeners here (`live`).
    pub live: Arc<crate::live::LiveFeed>,
    /// Sales found missing in Redis, waiting until nothing of them can be in flight.
    pub restores: Arc<Restores>,
    pub restore_rule: RestoreRule,
    /// The queue whose backlog says whether reservations are still on their way to PostgreSQL.
    pub order_writer_queue: String,
    pub auth: Arc<Auth>,
    pub limits: RateLimits,
    /// The per-client-address limit on reservations, in process (off unless configured).
    pub address_limit: Arc<AddressLimit>,
    pub metrics: GatewayMetrics,
    /// Circuit breakers around Redis and RabbitMQ on the reservation path.
    pub breakers: Arc<Breakers>,
    pub registry: Registry,
    /// Confirmed reservations whose outbox entry can go; removed in batches off the hot path.
    pub confirmed: UnboundedSender<(Tag, OrderId)>,
    pub max_body_bytes: usize,
    pub relay_age: Duration,
    pub relay_batch: usize,
    /// Cancelled when shutdown begins: readiness turns 503 while in-flight requests drain.
    pub stopping: CancellationToken,
}
