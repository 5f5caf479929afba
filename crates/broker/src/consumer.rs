//! The batch consumer: a bounded prefetch, batches of up to N messages (or whatever arrived within the
//! linger), settled only after the handler committed, and its own reconnect loop.
//!
//! The handler sees [`Message`]s (no lapin types; a group-committed batch message as its members, see
//! `unpack`) and decides per message: `Ack`, or `DeadLetter`
//! (undecodable, violates a rule: nack without requeue, so the queue's dead-letter exchange takes it). A
//! handler error is settled by [`crate::poison`]: an outage is retried forever, any other failure is retried
//! and then split until the one message at fault is dead-lettered. Nothing is acknowledged before the handler
//! committed, so a crash at any point redelivers the batch.
//!
//! `ConsumeOptions::in_flight` batches may be handled at once, each in a task of its own, while the next is
//! collected; they are settled (`crate::settle`) in the order they were collected.

use crate::backoff::Backoff;
use crate::message::Message;
use crate::names::Names;
use crate::poison::{self, HandleError, RetryPolicy};
use crate::settle::Settler;
use crate::topology;
use crate::unpack::{Delivered, MemberDeadLetters, unpack};
use flashsale_platform::metrics::{counter_vec, histogram_vec};
use flashsale_platform::settings::AmqpSettings;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use prometheus::{HistogramVec, IntCounterVec, Registry};
use std::collections::VecDeque;
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
    pub(crate) messages: IntCounterVec,
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
    /// Batches handed to the handler at once (1 = one after the other). The next batch is collected while
    /// earlier ones are handled; batches are settled in the order they were collected, so one `multiple` ack
    /// never covers a batch still in hand. Only for handlers whose batches may run concurrently.
    pub in_flight: usize,
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
            &handler,
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
    handler: &Arc<H>,
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
    // Batches being handled, oldest first, each with the deliveries it settles.
    let mut handled = FuturesOrdered::new();
    let mut waiting: VecDeque<Vec<Delivered>> = VecDeque::new();
    let mut settler = Settler {
        dead: &mut dead,
        queue: &opts.queue,
        metrics,
        confirm_timeout,
    };
    // False once a batch could not be settled: a later `multiple` ack would cover it.
    let mut settling = true;
    let result = loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            Some(done) = handled.next(), if !handled.is_empty() => {
                let deliveries = waiting.pop_front().unwrap_or_default();
                match settler.finish(done, &deliveries).await {
                    Ok(true) => continue,
                    Ok(false) => {
                        settling = false;
                        break Ok(());
                    }
                    Err(e) => break Err(e),
                }
            }
            next = consumer.next(), if handled.len() < opts.in_flight.max(1) => next,
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
        // A task of its own, so it goes on while the next batch is collected.
        let task = (
            Arc::clone(handler),
            opts.retry.clone(),
            opts.queue.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        handled.push_back(tokio::spawn(async move {
            let (handler, retry, queue, metrics, shutdown) = task;
            let settles =
                poison::resolve(&*handler, &batch, &retry, &queue, &metrics, &shutdown).await;
            (batch, settles)
        }));
        waiting.push_back(deliveries);
        if let Some(e) = broken {
            break Err(e);
        }
    };
    // The batches still in hand are finished (shutdown: "finish the batch in hand"), and settled in order
    // while settling works; after the first that cannot be, the rest are only waited for (the broker
    // redelivers them), so no handler outlives its session.
    settling &= result.is_ok();
    while let Some(done) = handled.next().await {
        let deliveries = waiting.pop_front().unwrap_or_default();
        if settling {
            settling = matches!(settler.finish(done, &deliveries).await, Ok(true));
        }
    }
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
