//! RabbitMQ: names, topology, the confirmed publisher and the batch consumer, each owning its reconnect loop
//! (lapin's automatic recovery is not trusted alone).
//!
//! Reads the `[amqp]` settings.

pub mod backoff;
mod confirms;
pub mod consumer;
pub mod depth;
pub mod group_commit;
pub mod message;
pub mod names;
pub mod poison;
pub mod publisher;
mod settle;
pub mod topology;
mod unpack;

pub use consumer::{BatchHandler, ConsumeOptions, ConsumerMetrics, Settle, consume_batches};
pub use group_commit::GroupCommit;
pub use message::Message;
pub use names::Names;
pub use poison::{HandleError, RetryPolicy};
pub use publisher::{PublishError, Publisher};

use anyhow::Context;
use flashsale_platform::settings::{AmqpSettings, addresses};
use lapin::{Connection, ConnectionProperties};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The node of `amqp.url` the last connection of this process reached: the next one tries it first, and
/// moves on to the next node only when it refuses.
static LAST_GOOD: AtomicUsize = AtomicUsize::new(0);

/// Opens a connection named after its role, so the RabbitMQ UI shows who holds it. `amqp.url` may list the
/// nodes of a cluster, comma-separated: the node that answered last is tried first, then each other in turn,
/// so every connection of a process sits on one live node (list the nodes in another order per replica, or
/// put a load balancer in front, to spread replicas over the nodes).
pub async fn connect(settings: &AmqpSettings, role: &str) -> anyhow::Result<Connection> {
    let urls = addresses(&settings.url);
    let first = LAST_GOOD.load(Ordering::Relaxed);
    let mut failures = Vec::new();
    for i in 0..urls.len() {
        let at = (first + i) % urls.len();
        match connect_one(urls[at], settings, role).await {
            Ok(conn) => {
                LAST_GOOD.store(at, Ordering::Relaxed);
                return Ok(conn);
            }
            Err(e) => failures.push(format!("node {} of amqp.url: {e:#}", at + 1)),
        }
    }
    anyhow::bail!("connecting to RabbitMQ as {role}: {}", failures.join("; "))
}

async fn connect_one(url: &str, settings: &AmqpSettings, role: &str) -> anyhow::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(role.into());
    // A broker that accepts TCP but never finishes the handshake (out of file descriptors, blocked) must not
    // hang start-up or a reconnect loop (`amqp.connect_timeout_ms`).
    let limit = std::time::Duration::from_millis(settings.connect_timeout_ms);
    let mut uri: lapin::uri::AMQPUri = url
        .parse()
        .map_err(|e: String| anyhow::anyhow!("amqp.url is not an AMQP URI: {e}"))?;
    uri.query.frame_max.get_or_insert(settings.frame_max);
    tokio::time::timeout(limit, Connection::connect_uri(uri, props))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "RabbitMQ handshake took longer than amqp.connect_timeout_ms ({limit:?})"
            )
        })?
        .context("connecting")
}
