//! RabbitMQ: names, topology, the confirmed publisher and the batch consumer, each owning its reconnect loop
//! (lapin's automatic recovery is not trusted alone).
//!
//! Reads the `[amqp]` settings.

pub mod backoff;
pub mod consumer;
pub mod names;
pub mod publisher;
pub mod topology;

pub use consumer::{BatchHandler, ConsumeOptions, ConsumerMetrics, Settle, consume_batches};
pub use names::Names;
pub use publisher::{PublishError, Publisher};

use anyhow::Context;
use flashsale_platform::settings::AmqpSettings;
use lapin::{Connection, ConnectionProperties};
use secrecy::ExposeSecret;

/// Opens a connection named after its role, so the RabbitMQ UI shows who holds it.
pub async fn connect(settings: &AmqpSettings, role: &str) -> anyhow::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(role.into());
    Connection::connect(settings.url.expose_secret(), props)
        .await
        .with_context(|| format!("connecting to RabbitMQ as {role}"))
}
