//! How a failing batch is settled. The consumer, not the broker's delivery limit, decides what is poison:
//!
//! - an outage (the handler says [`HandleError::Outage`]: connection refused, pool timeout, broken connection)
//!   is waited out with backoff, forever, and never dead-letters anything;
//! - any other failure is retried `attempts_before_split` times, then the batch is split in halves, each
//!   handled on its own, until the one message that fails alone is found and dead-lettered while its
//!   neighbours are written;
//! - before each split and each dead-letter the handler is asked whether its dependencies are healthy
//!   ([`BatchHandler::healthy`]): an outage it could not tell from its error (a server shutting down, a
//!   database turned read-only) then counts as an outage, not against the messages.
//!
//! RabbitMQ 3.10-3.13 also counts a closed channel as a delivery of a quorum queue, so the broker cannot tell
//! a broker blip from a bad message; the queue's delivery limit stays only as a high last resort (a message
//! that crashes the process on every delivery).

use crate::backoff::Backoff;
use crate::consumer::{BatchHandler, ConsumerMetrics, Settle};
use crate::message::Message;
use std::ops::Range;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why a batch could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// A dependency is unreachable: says nothing about the messages. Retried as it is, forever.
    #[error("outage: {0:#}")]
    Outage(anyhow::Error),
    /// A failure that may lie in one of the messages: retried, then the batch is split.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

/// Pauses between attempts.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts of one (part of a) batch failing with [`HandleError::Failed`] before it is split.
    pub attempts_before_split: u32,
    pub outage_backoff: (Duration, Duration),
    pub failure_backoff: (Duration, Duration),
}

impl RetryPolicy {
    pub fn new(attempts_before_split: u32) -> Self {
        Self {
            attempts_before_split: attempts_before_split.max(1),
            outage_backoff: (Duration::from_millis(50), Duration::from_secs(5)),
            failure_backoff: (Duration::from_millis(50), Duration::from_secs(1)),
        }
    }
}

/// One settlement per message of `batch`, once every part of it is committed or dead-lettered; `None` when
/// `shutdown` came first (the batch stays unacknowledged and the broker redelivers it).
pub(crate) async fn resolve<H: BatchHandler>(
    handler: &H,
    batch: &[Message],
    policy: &RetryPolicy,
    queue: &str,
    metrics: &ConsumerMetrics,
    shutdown: &CancellationToken,
) -> Option<Vec<Settle>> {
    let mut settles = vec![Settle::Ack; batch.len()];
    // Parts still to handle, the next one last: left halves go first, so order is kept where it can be.
    let mut parts: Vec<Range<usize>> = Vec::new();
    parts.push(0..batch.len());
    let mut outage = Backoff::new(policy.outage_backoff.0, policy.outage_backoff.1);
    while let Some(range) = parts.pop() {
        let part = &batch[range.clone()];
        let mut failing = Backoff::new(policy.failure_backoff.0, policy.failure_backoff.1);
        let mut failures = 0;
        loop {
            let error = match handler.handle(part).await {
                Ok(got) if got.len() == part.len() => {
                    settles[range.clone()].copy_from_slice(&got);
                    outage.reset();
                    break;
                }
                Ok(got) => HandleError::Failed(anyhow::anyhow!(
                    "the handler settled {} of {} messages",
                    got.len(),
                    part.len()
                )),
                Err(error) => error,
            };
            metrics.retried(queue, part.len(), &error);
            let delay = match &error {
                HandleError::Outage(_) => {
                    tracing::warn!(queue, messages = part.len(), error = %error, "dependency unavailable; retrying the batch");
                    outage.next_delay()
                }
                HandleError::Failed(_) => {
                    failures += 1;
                    if failures < policy.attempts_before_split {
                        tracing::warn!(queue, messages = part.len(), failures, error = %error, "batch failed; retrying");
                        failing.next_delay()
                    } else if !handler.healthy().await {
                        // Decide nothing about the messages while a dependency is down; ask again next time.
                        failures -= 1;
                        tracing::warn!(queue, messages = part.len(), error = %error, "batch failed while a dependency is unhealthy; retrying");
                        outage.next_delay()
                    } else if part.len() == 1 {
                        tracing::error!(queue, message_id = part[0].message_id.as_deref().unwrap_or("-"),
                            failures, error = %error, "message fails on its own; dead-lettering it");
                        settles[range.start] = Settle::DeadLetter;
                        break;
                    } else {
                        let mid = range.start + part.len() / 2;
                        tracing::warn!(queue, messages = part.len(), failures, error = %error,
                            "batch keeps failing; splitting it to find the message at fault");
                        parts.push(mid..range.end);
                        parts.push(range.start..mid);
                        break;
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
    Some(settles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Fails every batch holding a body from `poison`; answers `outages` outages first. While `sick` is above
    /// 0 every batch fails (not as an outage) and `healthy` says no, counting down.
    struct Handler {
        poison: Vec<u8>,
        outages: Mutex<u32>,
        sick: Mutex<u32>,
        calls: Mutex<u32>,
    }

    impl BatchHandler for Handler {
        async fn healthy(&self) -> bool {
            let mut sick = self.sick.lock().expect("lock");
            let healthy = *sick == 0;
            *sick = sick.saturating_sub(1);
            healthy
        }

        async fn handle(&self, batch: &[Message]) -> Result<Vec<Settle>, HandleError> {
            *self.calls.lock().expect("lock") += 1;
            {
                let mut outages = self.outages.lock().expect("lock");
                if *outages > 0 {
                    *outages -= 1;
                    return Err(HandleError::Outage(anyhow::anyhow!("connection refused")));
                }
            }
            if *self.sick.lock().expect("lock") > 0 {
                return Err(HandleError::Failed(anyhow::anyhow!(
                    "read-only transaction"
                )));
            }
            if batch.iter().any(|m| self.poison.contains(&m.body[0])) {
                return Err(HandleError::Failed(anyhow::anyhow!("poison")));
            }
            Ok(vec![Settle::Ack; batch.len()])
        }
    }

    fn batch(n: u8) -> Vec<Message> {
        (0..n)
            .map(|i| Message {
                body: vec![i],
                ..Message::default()
            })
            .collect()
    }

    fn fast(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts_before_split: attempts,
            outage_backoff: (Duration::from_millis(1), Duration::from_millis(2)),
            failure_backoff: (Duration::from_millis(1), Duration::from_millis(2)),
        }
    }

    async fn run(h: &Handler, n: u8, attempts: u32) -> Option<Vec<Settle>> {
        let metrics = ConsumerMetrics::new(&prometheus::Registry::new());
        resolve(
            h,
            &batch(n),
            &fast(attempts),
            "q",
            &metrics,
            &CancellationToken::new(),
        )
        .await
    }

    fn handler(poison: &[u8], outages: u32) -> Handler {
        Handler {
            poison: poison.to_vec(),
            outages: Mutex::new(outages),
            sick: Mutex::new(0),
            calls: Mutex::new(0),
        }
    }

    #[tokio::test]
    async fn failures_while_unhealthy_never_split_nor_dead_letter() {
        let mut h = handler(&[], 0);
        h.sick = Mutex::new(10);
        let settles = run(&h, 8, 1).await.expect("not cancelled");
        assert_eq!(settles, vec![Settle::Ack; 8]);
        // One batch, retried whole until the dependency was healthy again: never split into parts.
        assert_eq!(*h.calls.lock().expect("lock"), 11);
    }

    #[tokio::test]
    async fn isolates_each_poison_and_keeps_its_neighbours() {
        let h = handler(&[3, 77], 0);
        let settles = run(&h, 100, 2).await.expect("not cancelled");
        for (i, s) in settles.iter().enumerate() {
            let want = if i == 3 || i == 77 {
                Settle::DeadLetter
            } else {
                Settle::Ack
            };
            assert_eq!(*s, want, "message {i}");
        }
        // Two poisons among 100: a few attempts per level of the split, not one per message.
        assert!(*h.calls.lock().expect("lock") < 60);
    }

    #[tokio::test]
    async fn an_outage_is_waited_out_and_dead_letters_nothing() {
        let h = handler(&[], 25);
        let settles = run(&h, 10, 1).await.expect("not cancelled");
        assert_eq!(settles, vec![Settle::Ack; 10]);
        assert_eq!(*h.calls.lock().expect("lock"), 26);
    }

    #[tokio::test]
    async fn shutdown_leaves_the_batch_unsettled() {
        let h = handler(&[], u32::MAX);
        let metrics = ConsumerMetrics::new(&prometheus::Registry::new());
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let got = resolve(&h, &batch(3), &fast(1), "q", &metrics, &shutdown).await;
        assert_eq!(got, None);
    }
}
