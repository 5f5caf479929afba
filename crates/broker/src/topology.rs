//! The whole RabbitMQ topology, declared idempotently by every service at start-up and after each reconnect,
//! so nothing published before a consumer first runs is lost.
//!
//! ```text
//! events (topic) ─ reservation.created.# ─▶ order-writer, payment           (quorum, DLX → dead)
//!                ─ reservation.created.w<W> ─▶ expiry.wait.<W>s  (TTL W s, at-least-once DLX)
//!                                                 └─▶ expiry (direct) ─ expiry.due ─▶ expiry.due
//! dead (fanout) ─▶ dead
//! ```

use crate::names::{EXPIRY_DUE_KEY, Names};
use flashsale_domain::messages::{RESERVATION_CREATED, routing_key_for_window};
use flashsale_platform::settings::{AmqpSettings, QueueType};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

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

async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
}

/// Declares exchanges, the dead-letter queue, the work queues and one expiry wait queue per payment window.
pub async fn declare(
    ch: &Channel,
    names: &Names,
    s: &AmqpSettings,
    payment_windows: impl IntoIterator<Item = u32>,
) -> lapin::Result<()> {
    let ex = exchange_options(s);
    ch.exchange_declare(
        names.events_exchange().into(),
        ExchangeKind::Topic,
        ex,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        names.dead_exchange().into(),
        ExchangeKind::Fanout,
        ex,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        names.expiry_exchange().into(),
        ExchangeKind::Direct,
        ex,
        FieldTable::default(),
    )
    .await?;

    let mut dead_args = FieldTable::default();
    if s.queue_type == QueueType::Quorum {
        dead_args.insert("x-queue-type".into(), text("quorum"));
    }
    if s.queue_expires_ms > 0 {
        dead_args.insert("x-expires".into(), int(s.queue_expires_ms));
    }
    ch.queue_declare(names.dead_queue().into(), durable(), dead_args)
        .await?;
    bind(ch, &names.dead_queue(), &names.dead_exchange(), "").await?;

    let created = reservation_created_pattern();
    for queue in [names.order_writer_queue(), names.payment_queue()] {
        ch.queue_declare(queue.as_str().into(), durable(), work_queue_args(names, s))
            .await?;
        bind(ch, &queue, &names.events_exchange(), &created).await?;
    }

    let due = names.expiry_due_queue();
    ch.queue_declare(due.as_str().into(), durable(), work_queue_args(names, s))
        .await?;
    bind(ch, &due, &names.expiry_exchange(), EXPIRY_DUE_KEY).await?;

    for window in payment_windows {
        declare_expiry_wait(ch, names, s, window).await?;
    }
    Ok(())
}

/// The wait queue of one payment window: a per-queue TTL, so sales with different windows never wait behind
/// each other (a per-message TTL would). Dead-lettering from a quorum queue with `at-least-once` and
/// `reject-publish` is the only way RabbitMQ does not drop an expiry on the floor.
pub async fn declare_expiry_wait(
    ch: &Channel,
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
    ch.queue_declare(queue.as_str().into(), durable(), args)
        .await?;
    bind(
        ch,
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
