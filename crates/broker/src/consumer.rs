//! The batch consumer: a bounded prefetch, batches of up to N messages (or whatever arrived within the
//! linger), settled only after the handler committed, and its own reconnect loop.
//!
//! The handler sees [`Message`]s (no lapin types; a group-committed batch message as its members, see
//! `unpack`) and decides per message: `Ack`, or `DeadLetter`
//! (undecodable, violates a rule: nack without requeue, so the queue's dead-letter exchange takes it). A
//! handler error is settled by [`crate::poison`]: an outage is retried forever, any other failure is retried
//! and then split until the one message at fault is dead-lettered. Nothing is acknowledged before the handler
//! committed, so a crash at any point redelivers the batch.

use crate::backoff::Backoff;
use crate::message::Message;
use crate::names::Names;
use crate::poison::{self, HandleError, RetryPolicy};
use crate::topology;
use crate::unpack::{Delivered, MemberDeadLetters, unpack};
use flashsale_platform::metrics::{counter_vec, histogram_vec};
use flashsale_platform::settings::AmqpSettings;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use prometheus::{HistogramVec, IntCounterVec, Registry};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Ack,
    DeadLetter,
}

pub trait BatchHandler: Send + Sync + 'static {
    /// One settlement per message, in order, once the batch's effects are committed. An error commits
    /// nothing; it says whether a dependency is down ([`HandleError::Outage`]) or the batch failed.
    fn handle(
        &self,
        batch: &[Message],
    ) -> impl Future<Output = Result<Vec<Settle>, HandleError>> + Send;

    /// Whether the handler's dependencies work right now. Asked before a failing batch is split or a
    /// message dead-lettered, so a failure that was really an outage never costs a message.
    fn healthy(&self) -> impl Future<Output = bool> + Send {
        async { true }
    }
}

/// `flashsale_messages_total{queue,result}`, `flashsale_consumer_batch_failures_total{queue,cause}` and
/// `flashsale_consumer_batch_size{queue}`.
#[derive(Clone)]
pub struct ConsumerMetrics {
    messages: IntCounterVec,
    failures: IntCounterVec,
    batch_size: HistogramVec,
}

impl ConsumerMetrics {
    pub fn new(registry: &Registry) -> Self {
        Self {
            messages: counter_vec(
                registry,
                "flashsale_messages_total",
                "Messages settled by consumers, by queue and result (ack, dead_letter, retry)",
                &["queue", "result"],
            ),
            failures: counter_vec(
                registry,
                "flashsale_consumer_batch_failures_total",
                "Failed attempts at a batch (or a part of one), by cause: outage (a dependency is down, \
                 retried forever) or failed (retried, then split to isolate the message at fault)",
                &["queue", "cause"],
            ),
            batch_size: histogram_vec(
                registry,
                "flashsale_consumer_batch_size",
                "Deliveries handled together in one batch",
                &["queue"],
                &[
                    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
                ],
            ),
        }
    }
}

impl ConsumerMetrics {
    pub(crate) fn retried(&self, queue: &str, messages: usize, error: &HandleError) {
        let cause = match error {
            HandleError::Outage(_) => "outage",
            HandleError::Failed(_) => "failed",
        };
        self.failures.with_label_values(&[queue, cause]).inc();
        self.messages
            .with_label_values(&[queue, "retry"])
            .inc_by(messages as u64);
    }
}

#[derive(Clone)]
pub struct ConsumeOptions {
    pub role: String,
    pub queue: String,
    pub batch_size: usize,
    pub linger: Duration,
    pub retry: RetryPolicy,
}

/// Consumes until `shutdown`, reconnecting as often as needed. `connected` mirrors whether a consumer is
/// currently attached (for readiness).
pub async fn consume_batches<H: BatchHandler>(
    settings: AmqpSettings,
    names: Names,
    opts: ConsumeOptions,
    handler: Arc<H>,
    metrics: ConsumerMetrics,
    connected: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(
        Duration::from_millis(settings.reconnect_min_ms),
        Duration::from_millis(settings.reconnect_max_ms),
    );
    while !shutdown.is_cancelled() {
        match session(
            &settings,
            &names,
            &opts,
            &*handler,
            &metrics,
            &connected,
            &mut backoff,
            &shutdown,
        )
        .await
        {
            Ok(()) => {}
            Err(error) => {
                tracing::warn!(queue = %opts.queue, error = format!("{error:#}"), "consumer session ended");
            }
        }
        connected.store(false, Ordering::Relaxed);
        let delay = backoff.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    tracing::info!(queue = %opts.queue, "consumer stopped");
}

#[allow(clippy::too_many_arguments)]
async fn session<H: BatchHandler>(
    settings: &AmqpSettings,
    names: &Names,
    opts: &ConsumeOptions,
    handler: &H,
    metrics: &ConsumerMetrics,
    connected: &AtomicBool,
    backoff: &mut Backoff,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let conn = crate::connect(settings, &opts.role).await?;
    let channel = conn.create_channel().await?;
    topology::declare(&conn, names, settings, std::iter::empty()).await?;
    channel
        .basic_qos(settings.prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            opts.queue.as_str().into(),
            opts.role.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    connected.store(true, Ordering::Relaxed);
    backoff.reset();
    tracing::info!(queue = %opts.queue, "consuming");

    let confirm_timeout = Duration::from_millis(settings.confirm_timeout_ms);
    let mut dead = MemberDeadLetters::new(
        &conn,
        names.dead_exchange(),
        opts.queue.clone(),
        confirm_timeout,
    );
    let result = loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            next = consumer.next() => next,
            // The stream does not always end when the broker resets the connection: look at it ourselves.
            () = lost(&conn, &channel) => break Err(anyhow::anyhow!("the connection to the broker was lost")),
        };
        // Members, not deliveries, fill a batch: a group-committed delivery brings many.
        let (mut batch, mut deliveries) = (Vec::new(), Vec::new());
        match first {
            Some(Ok(d)) => deliveries.push(unpack(d, &mut batch)),
            Some(Err(e)) => break Err(e.into()),
            None => break Err(anyhow::anyhow!("the broker cancelled the consumer")),
        }
        let deadline = Instant::now() + opts.linger;
        let mut broken = None;
        while batch.len() < opts.batch_size {
            match tokio::time::timeout_at(deadline, consumer.next()).await {
                Ok(Some(Ok(d))) => deliveries.push(unpack(d, &mut batch)),
                Ok(Some(Err(e))) => {
                    broken = Some(anyhow::Error::from(e));
                    break;
                }
                Ok(None) => {
                    broken = Some(anyhow::anyhow!("the broker cancelled the consumer"));
                    break;
                }
                Err(_) => break,
            }
        }
        metrics
            .batch_size
            .with_label_values(&[opts.queue.as_str()])
            .observe(batch.len() as f64);
        let Some(settles) =
            poison::resolve(handler, &batch, &opts.retry, &opts.queue, metrics, shutdown).await
        else {
            // Shutting down with an uncommitted batch: leave it unacknowledged, the broker redelivers it.
            break Ok(());
        };
        // Bounded: lapin may never resolve an ack on a connection the broker reset (its node stopped), and a
        // consumer waiting on it would hold its deliveries and never reconnect. Giving up unacknowledged is
        // safe: the broker redelivers the batch and the handler is idempotent. Each dead-lettered member waits
        // for its own confirm (at most `amqp.confirm_timeout_ms`); acks are instant on a live connection.
        let refused = settles.iter().filter(|s| **s == Settle::DeadLetter).count();
        let settle_within = confirm_timeout
            .saturating_mul(u32::try_from(refused + 2).unwrap_or(u32::MAX))
            .saturating_add(Duration::from_secs(1));
        let settled = tokio::time::timeout(
            settle_within,
            settle(
                &deliveries,
                &batch,
                &settles,
                &mut dead,
                &opts.queue,
                metrics,
            ),
        )
        .await;
        match settled {
            Ok(result) => result?,
            Err(_) => {
                break Err(anyhow::anyhow!(
                    "settling a batch took longer than {settle_within:?}; reconnecting (the broker \
                     redelivers it)"
                ));
            }
        }
        if let Some(e) = broken {
            break Err(e);
        }
    };
    connected.store(false, Ordering::Relaxed);
    // Bounded: a broker that does not answer the close handshake must not hold up a shutdown. Dropping the
    // connection closes the socket, which returns the unacknowledged deliveries all the same.
    let close = async {
        let _ = channel.close(200, "consumer stopping".into()).await;
        let _ = conn.close(200, "consumer stopping".into()).await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
    result
}

/// Resolves once the connection or the channel is no longer usable (checked every 500 ms).
async fn lost(conn: &lapin::Connection, channel: &lapin::Channel) {
    let mut every = tokio::time::interval(Duration::from_millis(500));
    loop {
        every.tick().await;
        if !conn.status().connected() || !channel.status().connected() {
            return;
        }
    }
}

/// Dead-letters the refused deliveries one by one (a refused member of a batch alone, by a confirmed publish),
/// then acknowledges the rest with one `multiple` ack.
async fn settle(
    deliveries: &[Delivered],
    batch: &[Message],
    settles: &[Settle],
    dead_letters: &mut MemberDeadLetters<'_>,
    queue: &str,
    metrics: &ConsumerMetrics,
) -> anyhow::Result<()> {
    let mut last_ack = None;
    let (mut acked, mut dead) = (0u64, 0u64);
    for delivery in deliveries {
        let members = delivery.members.clone();
        let refused = settles[members.clone()]
            .iter()
            .filter(|s| **s == Settle::DeadLetter)
            .count() as u64;
        match &delivery.batch_id {
            None if refused > 0 => {
                delivery
                    .acker
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: false,
                    })
                    .await?;
            }
            None => last_ack = Some(&delivery.acker),
            Some(batch_id) => {
                for (member, settle) in batch[members.clone()].iter().zip(&settles[members]) {
                    if *settle == Settle::DeadLetter {
                        dead_letters.publish(member, batch_id).await?;
                    }
                }
                last_ack = Some(&delivery.acker);
            }
        }
        dead += refused;
        acked += delivery.members.len() as u64 - refused;
    }
    if let Some(acker) = last_ack {
        acker.ack(BasicAckOptions { multiple: true }).await?;
    }
    metrics
        .messages
        .with_label_values(&[queue, "ack"])
        .inc_by(acked);
    metrics
        .messages
        .with_label_values(&[queue, "dead_letter"])
        .inc_by(dead);
    Ok(())
}
