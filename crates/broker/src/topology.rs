//! The whole RabbitMQ topology, declared idempotently by every service at start-up and after each reconnect,
//! so nothing published before a consumer first runs is lost.
//!
//! ```text
//! events (topic) ─ reservation.created.# ─▶ order-writer, payment           (quorum, DLX → dead)
//!                ─ reservation.created.w<W> ─▶ expiry.wait.<W>s  (TTL W s, at-least-once DLX)
//!                                                 └─▶ expiry (direct) ─ expiry.due ─▶ expiry.due
//! dead (fanout) ─▶ dead
//! ```
//!
//! Declare what is missing, keep what exists: a queue or exchange whose arguments differ from the settings
//! (a changed `amqp.delivery_limit`, `amqp.queue_type` or `amqp.queue_expires_ms`) is refused by the broker with
//! PRECONDITION_FAILED. That is logged at error level and the existing one is kept and used (checked with a
//! passive declare), so a configuration change never stops a service; docs/operations.md says how to migrate.

use crate::names::{EXPIRY_DUE_KEY, Names};
use flashsale_domain::messages::{
    RESERVATION_CREATED, RESERVATION_REJECTED, routing_key_for_window,
};
use flashsale_platform::settings::{AmqpSettings, QueueType};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ErrorKind, ExchangeKind};

/// Every consumer of new reservations binds this pattern (all payment windows).
pub fn reservation_created_pattern() -> String {
    format!("{RESERVATION_CREATED}.#")
}

fn text(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

fn int(v: u64) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Arguments every work queue carries.
fn work_queue_args(names: &Names, s: &AmqpSettings) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        text(&names.dead_exchange()),
    );
    if s.queue_type == QueueType::Quorum {
        args.insert("x-queue-type".into(), text("quorum"));
        // RabbitMQ 3.10 has no default limit (4.x defaults to 20): set it so a poison message cannot loop.
        args.insert("x-delivery-limit".into(), int(s.delivery_limit.into()));
    }
    if s.queue_expires_ms > 0 {
        args.insert("x-expires".into(), int(s.queue_expires_ms));
    }
    args
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

fn exchange_options(s: &AmqpSettings) -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        // Ephemeral (test) topologies remove their exchanges once their expiring queues are gone.
        auto_delete: s.queue_expires_ms > 0,
        ..Default::default()
    }
}

/// Declares on a channel of its own, replaced when the broker closes it for a mismatch.
struct Declarer<'a> {
    conn: &'a Connection,
    ch: Channel,
}

/// The broker's answer to a declare whose arguments differ from the existing queue's or exchange's.
fn differs(e: &lapin::Error) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(amqp) if amqp.get_id() == 406)
}

const MIGRATE: &str = "keeping the existing one; the new settings apply to it only after a migration \
    (docs/operations.md, \"Changing queue arguments\")";

impl<'a> Declarer<'a> {
    async fn open(conn: &'a Connection) -> lapin::Result<Self> {
        Ok(Self {
            conn,
            ch: conn.create_channel().await?,
        })
    }

    async fn exchange(
        &mut self,
        name: &str,
        kind: ExchangeKind,
        s: &AmqpSettings,
    ) -> lapin::Result<()> {
        let declared = self
            .ch
            .exchange_declare(
                name.into(),
                kind.clone(),
                exchange_options(s),
                FieldTable::default(),
            )
            .await;
        match declared {
            Err(e) if differs(&e) => {
                tracing::error!(exchange = name, error = %e, "exchange exists with other properties than the settings; {MIGRATE}");
                self.ch = self.conn.create_channel().await?;
                let passive = ExchangeDeclareOptions {
                    passive: true,
                    ..Default::default()
                };
                self.ch
                    .exchange_declare(name.into(), kind, passive, FieldTable::default())
                    .await
            }
            other => other,
        }
    }

    async fn queue(&mut self, name: &str, args: FieldTable) -> lapin::Result<()> {
        match self.ch.queue_declare(name.into(), durable(), args).await {
            Ok(_) => Ok(()),
            Err(e) if differs(&e) => {
                tracing::error!(queue = name, error = %e, "queue exists with arguments that differ from the settings; {MIGRATE}");
                self.ch = self.conn.create_channel().await?;
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                };
                self.ch
                    .queue_declare(name.into(), passive, FieldTable::default())
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    async fn bind(&self, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
        self.ch
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    }

    async fn close(self) {
        let _ = self.ch.close(200, "topology declared".into()).await;
    }
}

/// Declares exchanges, the dead-letter queue, the work queues and one expiry wait queue per payment window, on
/// short-lived channels of `conn` (a declare error closes its channel, never one the caller uses).
pub async fn declare(
    conn: &Connection,
    names: &Names,
    s: &AmqpSettings,
    payment_windows: impl IntoIterator<Item = u32>,
) -> lapin::Result<()> {
    let mut d = Declarer::open(conn).await?;
    d.exchange(&names.events_exchange(), ExchangeKind::Topic, s)
        .await?;
    d.exchange(&names.dead_exchange(), ExchangeKind::Fanout, s)
        .await?;
    d.exchange(&names.expiry_exchange(), ExchangeKind::Direct, s)
        .await?;

    let mut dead_args = FieldTable::default();
    if s.queue_type == QueueType::Quorum {
        dead_args.insert("x-queue-type".into(), text("quorum"));
    }
    if s.queue_expires_ms > 0 {
        dead_args.insert("x-expires".into(), int(s.queue_expires_ms));
    }
    d.queue(&names.dead_queue(), dead_args).await?;
    d.bind(&names.dead_queue(), &names.dead_exchange(), "")
        .await?;

    let created = reservation_created_pattern();
    for queue in [names.order_writer_queue(), names.payment_queue()] {
        d.queue(&queue, work_queue_args(names, s)).await?;
        d.bind(&queue, &names.events_exchange(), &created).await?;
    }

    // Each rejection is cleared from Redis by one gateway (competing consumers on one queue).
    let rejected = names.gateway_rejected_queue();
    d.queue(&rejected, work_queue_args(names, s)).await?;
    d.bind(&rejected, &names.events_exchange(), RESERVATION_REJECTED)
        .await?;

    let due = names.expiry_due_queue();
    d.queue(&due, work_queue_args(names, s)).await?;
    d.bind(&due, &names.expiry_exchange(), EXPIRY_DUE_KEY)
        .await?;

    for window in payment_windows {
        expiry_wait(&mut d, names, s, window).await?;
    }
    d.close().await;
    Ok(())
}

/// The wait queue of one payment window: a per-queue TTL, so sales with different windows never wait behind
/// each other (a per-message TTL would). Dead-lettering from a quorum queue with `at-least-once` and
/// `reject-publish` is the only way RabbitMQ does not drop an expiry on the floor.
pub async fn declare_expiry_wait(
    conn: &Connection,
    names: &Names,
    s: &AmqpSettings,
    payment_window_secs: u32,
) -> lapin::Result<()> {
    let mut d = Declarer::open(conn).await?;
    let declared = expiry_wait(&mut d, names, s, payment_window_secs).await;
    d.close().await;
    declared
}

async fn expiry_wait(
    d: &mut Declarer<'_>,
    names: &Names,
    s: &AmqpSettings,
    payment_window_secs: u32,
) -> lapin::Result<()> {
    let queue = names.expiry_wait_queue(payment_window_secs);
    let mut args = FieldTable::default();
    args.insert(
        "x-message-ttl".into(),
        int(u64::from(payment_window_secs) * 1000),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        text(&names.expiry_exchange()),
    );
    args.insert("x-dead-letter-routing-key".into(), text(EXPIRY_DUE_KEY));
    if s.queue_type == QueueType::Quorum {
        args.insert("x-queue-type".into(), text("quorum"));
        args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        args.insert("x-overflow".into(), text("reject-publish"));
    }
    if s.queue_expires_ms > 0 {
        args.insert("x-expires".into(), int(s.queue_expires_ms));
    }
    d.queue(&queue, args).await?;
    d.bind(
        &queue,
        &names.events_exchange(),
        &routing_key_for_window(payment_window_secs),
    )
    .await
}

/// Deletes every queue and exchange of `names` (tests and the load tool clean up after themselves; the broker
/// keeps file descriptors for each quorum queue). Best effort: what cannot be deleted expires by `x-expires`.
pub async fn delete(ch: &Channel, names: &Names, payment_windows: impl IntoIterator<Item = u32>) {
    let mut queues = vec![
        names.order_writer_queue(),
        names.payment_queue(),
        names.gateway_rejected_queue(),
        names.expiry_due_queue(),
        names.dead_queue(),
    ];
    queues.extend(
        payment_windows
            .into_iter()
            .map(|w| names.expiry_wait_queue(w)),
    );
    for q in queues {
        let _ = ch
            .queue_delete(
                q.as_str().into(),
                lapin::options::QueueDeleteOptions::default(),
            )
            .await;
    }
    for ex in [
        names.events_exchange(),
        names.dead_exchange(),
        names.expiry_exchange(),
    ] {
        let _ = ch
            .exchange_delete(
                ex.as_str().into(),
                lapin::options::ExchangeDeleteOptions::default(),
            )
            .await;
    }
}
