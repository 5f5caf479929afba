//! Settling a handled batch: dead-letter what the handler refused, acknowledge the rest, within a bound.

use crate::consumer::{ConsumerMetrics, Settle};
use crate::message::Message;
use crate::unpack::{Delivered, MemberDeadLetters};
use lapin::options::{BasicAckOptions, BasicNackOptions};
use std::time::Duration;
use tokio::task::JoinError;

/// What a handler task hands back: its batch, and the settlements (`None`: stopped mid-batch by a shutdown).
pub(crate) type Handled = Result<(Vec<Message>, Option<Vec<Settle>>), JoinError>;

pub(crate) struct Settler<'s, 'c> {
    pub(crate) dead: &'s mut MemberDeadLetters<'c>,
    pub(crate) queue: &'s str,
    pub(crate) metrics: &'s ConsumerMetrics,
    pub(crate) confirm_timeout: Duration,
}

impl Settler<'_, '_> {
    /// Settles one handled batch. `Ok(false)`: it was stopped by a shutdown before it committed, so it stays
    /// unacknowledged (the broker redelivers it) and nothing after it may be acknowledged either.
    pub(crate) async fn finish(
        &mut self,
        done: Handled,
        deliveries: &[Delivered],
    ) -> anyhow::Result<bool> {
        let (batch, settles) = done.map_err(|e| anyhow::anyhow!("a batch handler failed: {e}"))?;
        let Some(settles) = settles else {
            return Ok(false);
        };
        // Bounded: lapin may never resolve an ack on a connection the broker reset (its node stopped), and a
        // consumer waiting on it would hold its deliveries and never reconnect. Giving up unacknowledged is
        // safe: the broker redelivers the batch and the handler is idempotent. Each dead-lettered member waits
        // for its own confirm (at most `amqp.confirm_timeout_ms`); acks are instant on a live connection.
        let refused = settles.iter().filter(|s| **s == Settle::DeadLetter).count();
        let settle_within = self
            .confirm_timeout
            .saturating_mul(u32::try_from(refused + 2).unwrap_or(u32::MAX))
            .saturating_add(Duration::from_secs(1));
        let settled = tokio::time::timeout(
            settle_within,
            settle(
                deliveries,
                &batch,
                &settles,
                self.dead,
                self.queue,
                self.metrics,
            ),
        )
        .await;
        match settled {
            Ok(result) => result.map(|()| true),
            Err(_) => Err(anyhow::anyhow!(
                "settling a batch took longer than {settle_within:?}; reconnecting (the broker redelivers \
                 it)"
            )),
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
