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
pub mod topology;
mod unpack;

pub use consumer::{BatchHandler, ConsumeOptions, ConsumerMetrics, Settle, consume_batches};
pub use group_commit::GroupCommit;
pub use message::Message;
pub use names::Names;
pub use poison::{HandleError, RetryPolicy};
pub use publisher::{PublishError, Publisher};

use anyhow::Context;
use flashsale_platform::settings::AmqpSettings;
use lapin::{Connection, ConnectionProperties};
use secrecy::ExposeSecret;

/// Opens a connection named after its role, so the RabbitMQ UI shows who holds it.
pub async fn connect(settings: &AmqpSettings, role: &str) -> anyhow::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(role.into());
    // A broker that accepts TCP but never finishes the handshake (out of file descriptors, blocked) must not
    // hang start-up or a reconnect loop (`amqp.connect_timeout_ms`).
    let limit = std::time::Duration::from_millis(settings.connect_timeout_ms);
    tokio::time::timeout(
        limit,
        Connection::connect(settings.url.expose_secret(), props),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!("RabbitMQ handshake took longer than amqp.connect_timeout_ms ({limit:?})")
    })?
    .with_context(|| format!("connecting to RabbitMQ as {role}"))
}
