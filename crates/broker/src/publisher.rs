//! The confirmed publisher: one connection with one confirm-mode channel, shared by every task of the process
//! (lapin channels are safe to share), kept alive by its own reconnect loop.
//!
//! A publish returns once the broker owns the message, or says precisely what went wrong: definitely not taken
//! (never sent, or returned as unroutable: the caller may undo its work) or unknown (no confirm, or a nack: the
//! caller must not undo anything; the outbox relay finishes it). Each caller gets its own confirm and its own
//! returned message, however many tasks publish at once (see `confirms`).

mod depth;

use crate::backoff::Backoff;
use crate::confirms::{Ledger, Publishing, Stage};
use crate::names::Names;
use crate::topology;
use flashsale_platform::metrics::{LATENCY_BUCKETS, counter_vec, histogram_vec};
use flashsale_platform::settings::AmqpSettings;
use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection, Event};
use prometheus::{HistogramVec, IntCounterVec, Registry};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// Never reached the broker (no connection, channel closed before sending).
    #[error("not sent: {0}")]
    NotSent(String),
    /// A queue refused it (nack). A message routed to several queues is nacked when ONE of them refuses it
    /// (say a full quorum queue with `overflow=reject-publish`) while the others keep their copy: a nack proves
    /// nothing about the other queues, so it is an unknown outcome, never grounds to undo.
    #[error("refused by a queue (nack); other queues may hold it")]
    Nacked,
    /// The broker returned it: no queue is bound for its routing key.
    #[error("unroutable: no queue bound for the routing key")]
    Unroutable,
    /// Sent, but no confirm arrived in time or the connection died while waiting: it may be in a queue.
    #[error("outcome unknown: {0}")]
    Unconfirmed(String),
}

impl PublishError {
    /// True only when the broker certainly holds no copy (never sent, or returned as unroutable: no queue was
    /// bound), so undoing the work cannot oversell. A nack and a missing confirm are not such proofs.
    pub fn broker_did_not_take_it(&self) -> bool {
        match self {
            Self::NotSent(_) | Self::Unroutable => true,
            Self::Nacked | Self::Unconfirmed(_) => false,
        }
    }

    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::NotSent(_) => "not_sent",
            Self::Nacked => "nacked",
            Self::Unroutable => "unroutable",
            Self::Unconfirmed(_) => "unconfirmed",
        }
    }
}

#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    settings: AmqpSettings,
    names: Names,
    role: String,
    exchange: String,
    confirm_timeout: Duration,
    link: RwLock<Option<Link>>,
    broken: Notify,
    windows: Mutex<BTreeSet<u32>>,
    shutdown: CancellationToken,
    confirm_seconds: HistogramVec,
    outcomes: IntCounterVec,
}

#[derive(Clone)]
struct Link {
    conn: Arc<Connection>,
    channel: Channel,
    /// Orders this channel's publishes and answers each with its own confirm.
    ledger: Arc<Ledger>,
}

impl Publisher {
    /// Connects (failing fast), declares the topology with these payment windows, and starts the reconnect loop.
    pub async fn start(
        settings: &AmqpSettings,
        names: Names,
        role: &str,
        payment_windows: impl IntoIterator<Item = u32>,
        registry: &Registry,
    ) -> anyhow::Result<Self> {
        let inner = Arc::new(Inner {
            exchange: names.events_exchange(),
            confirm_timeout: Duration::from_millis(settings.confirm_timeout_ms),
            settings: settings.clone(),
            names,
            role: role.to_owned(),
            link: RwLock::new(None),
            broken: Notify::new(),
            windows: Mutex::new(payment_windows.into_iter().collect()),
            shutdown: CancellationToken::new(),
            confirm_seconds: histogram_vec(
                registry,
                "flashsale_publish_confirm_seconds",
                "Time from publish to the broker's confirm",
                &["routing"],
                LATENCY_BUCKETS,
            ),
            outcomes: counter_vec(
                registry,
                "flashsale_publish_total",
                "Publishes by outcome (confirmed, not_sent, nacked, unroutable, unconfirmed)",
                &["outcome"],
            ),
        });
        let link = inner.open().await?;
        inner.set_link(Some(link));
        tokio::spawn(Arc::clone(&inner).supervise());
        Ok(Self { inner })
    }

    pub fn is_connected(&self) -> bool {
        self.inner
            .current()
            .is_some_and(|l| l.conn.status().connected() && l.channel.status().connected())
    }

    /// Publishes persistent JSON with `message_id` and waits for the confirm, at most `amqp.confirm_timeout_ms`.
    /// `mandatory`: a message no queue is bound for comes back and counts as [`PublishError::Unroutable`].
    pub async fn publish(
        &self,
        routing_key: &str,
        message_id: &str,
        body: &[u8],
    ) -> Result<(), PublishError> {
        self.publish_with(routing_key, message_id, body, true, None)
            .await
    }

    /// Like [`Publisher::publish`], with the AMQP `type` property set (a batch message says what it holds).
    pub async fn publish_typed(
        &self,
        routing_key: &str,
        message_id: &str,
        body: &[u8],
        kind: &str,
    ) -> Result<(), PublishError> {
        self.publish_with(routing_key, message_id, body, true, Some(kind))
            .await
    }

    /// Like [`Publisher::publish`] for notifications that may have no subscriber yet (not mandatory).
    pub async fn publish_event(
        &self,
        routing_key: &str,
        message_id: &str,
        body: &[u8],
    ) -> Result<(), PublishError> {
        self.publish_with(routing_key, message_id, body, false, None)
            .await
    }

    async fn publish_with(
        &self,
        routing_key: &str,
        message_id: &str,
        body: &[u8],
        mandatory: bool,
        kind: Option<&str>,
    ) -> Result<(), PublishError> {
        let started = Instant::now();
        let result = self
            .inner
            .publish_once(routing_key, message_id, body, mandatory, kind)
            .await;
        let outcome = match &result {
            Ok(()) => {
                self.inner
                    .confirm_seconds
                    .with_label_values(&["events"])
                    .observe(started.elapsed().as_secs_f64());
                "confirmed"
            }
            Err(e) => e.label(),
        };
        self.inner.outcomes.with_label_values(&[outcome]).inc();
        result
    }

    /// Makes sure the expiry wait queue of this payment window exists now and after every reconnect.
    pub async fn ensure_payment_window(&self, window_secs: u32) -> anyhow::Result<()> {
        let fresh = self
            .inner
            .windows
            .lock()
            .map(|mut w| w.insert(window_secs))
            .unwrap_or(true);
        if !fresh {
            return Ok(());
        }
        let link = self
            .inner
            .current()
            .ok_or_else(|| anyhow::anyhow!("RabbitMQ is not connected"))?;
        let declared = topology::declare_expiry_wait(
            &link.conn,
            &self.inner.names,
            &self.inner.settings,
            window_secs,
        )
        .await;
        if declared.is_err()
            && let Ok(mut w) = self.inner.windows.lock()
        {
            w.remove(&window_secs);
        }
        Ok(declared?)
    }

    /// Stops the reconnect loop and closes the connection; call after HTTP has drained.
    pub async fn close(&self) {
        self.inner.shutdown.cancel();
        if let Some(link) = self.inner.current() {
            let _ = link.conn.close(200, "shutting down".into()).await;
        }
        self.inner.set_link(None);
    }
}

impl Inner {
    fn current(&self) -> Option<Link> {
        self.link.read().ok().and_then(|l| l.clone())
    }

    fn set_link(&self, link: Option<Link>) {
        if let Ok(mut slot) = self.link.write() {
            *slot = link;
        }
    }

    async fn open(&self) -> anyhow::Result<Link> {
        let conn = crate::connect(&self.settings, &self.role).await?;
        let windows: Vec<u32> = self
            .windows
            .lock()
            .map(|w| w.iter().copied().collect())
            .unwrap_or_default();
        topology::declare(&conn, &self.names, &self.settings, windows).await?;
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Link {
            conn: Arc::new(conn),
            channel,
            ledger: Arc::default(),
        })
    }

    async fn publish_once(
        &self,
        routing_key: &str,
        message_id: &str,
        body: &[u8],
        mandatory: bool,
        kind: Option<&str>,
    ) -> Result<(), PublishError> {
        let link = self
            .current()
            .ok_or_else(|| PublishError::NotSent("RabbitMQ is not connected".into()))?;
        let props = BasicProperties::default()
            .with_delivery_mode(2) // persistent
            .with_content_type("application/json".into())
            .with_message_id(message_id.into());
        let props = match kind {
            Some(kind) => props.with_type(kind.into()),
            None => props,
        };
        let channel = link.channel.clone();
        let exchange = ShortString::from(self.exchange.as_str());
        let routing_key = ShortString::from(routing_key);
        let body = body.to_vec();
        let publishing: Publishing = Box::pin(async move {
            let confirm = channel
                .basic_publish(
                    exchange,
                    routing_key,
                    // mandatory: an unroutable message comes back instead of vanishing.
                    BasicPublishOptions {
                        mandatory,
                        ..Default::default()
                    },
                    &body,
                    props,
                )
                .await
                .map_err(Stage::Send)?;
            confirm.await.map_err(Stage::Confirm)
        });
        let in_flight = link
            .ledger
            .submit(message_id, publishing, self.confirm_timeout * 4)
            .await;
        match tokio::time::timeout(self.confirm_timeout, in_flight.answer()).await {
            Err(_) => Err(PublishError::Unconfirmed(format!(
                "no confirm within {} ms",
                self.confirm_timeout.as_millis()
            ))),
            Ok(Err(e @ (PublishError::NotSent(_) | PublishError::Unconfirmed(_)))) => {
                self.broken.notify_one();
                Err(e)
            }
            Ok(result) => result,
        }
    }

    /// Detect, back off, reconnect, redeclare, resume; until shutdown.
    async fn supervise(self: Arc<Self>) {
        let mut backoff = Backoff::new(
            Duration::from_millis(self.settings.reconnect_min_ms),
            Duration::from_millis(self.settings.reconnect_max_ms),
        );
        loop {
            if let Some(link) = self.current() {
                self.wait_until_broken(&link).await;
                self.set_link(None);
                let _ = link.conn.close(320, "reconnecting".into()).await;
                if self.shutdown.is_cancelled() {
                    return;
                }
                tracing::warn!(role = %self.role, "RabbitMQ publisher connection lost; reconnecting");
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            match self.open().await {
                Ok(link) => {
                    tracing::info!(role = %self.role, "RabbitMQ publisher connected");
                    self.set_link(Some(link));
                    backoff.reset();
                }
                Err(error) => {
                    tracing::warn!(role = %self.role, error = format!("{error:#}"), "RabbitMQ reconnect failed");
                }
            }
        }
    }

    async fn wait_until_broken(&self, link: &Link) {
        let mut events = link.conn.events_listener();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.broken.notified() => {
                    if !(link.conn.status().connected() && link.channel.status().connected()) {
                        return;
                    }
                }
                event = events.next() => match event {
                    Some(Event::Error(error)) => {
                        // Channel errors come here too (a refused declare on a short-lived channel): only a
                        // dead connection or publishing channel is a reason to reconnect.
                        if !(link.conn.status().connected() && link.channel.status().connected()) {
                            tracing::warn!(%error, "RabbitMQ connection error");
                            return;
                        }
                    }
                    None => return,
                    Some(_) => {}
                },
                _ = tick.tick() => {
                    // Backstop: some failures surface only as a status change.
                    if !(link.conn.status().connected() && link.channel.status().connected()) {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PublishError;

    #[test]
    fn only_never_sent_and_unroutable_prove_the_broker_holds_nothing() {
        assert!(PublishError::NotSent("closed".into()).broker_did_not_take_it());
        assert!(PublishError::Unroutable.broker_did_not_take_it());
        assert!(!PublishError::Nacked.broker_did_not_take_it());
        assert!(!PublishError::Unconfirmed("timeout".into()).broker_did_not_take_it());
    }
}
