//! The due-queue handler: a batch of `reservation.created` messages whose wait queue's TTL ran out, taken
//! through the expiry path (`expire`). Acknowledged only once PostgreSQL, Redis and the notification are done;
//! an error leaves the batch unacknowledged (the consumer retries it, a crash redelivers it), and the re-drive
//! makes every retry safe.
//!
//! A message can arrive a little before its deadline when the gateway's clock (which set `expires_at`) runs
//! behind the broker's (which timed the TTL). PostgreSQL's clock decides, so such an order is held and tried
//! again, at most `expiry.early_wait_max_ms` in all; past that it is acknowledged and left to the sweeper.

use crate::due::Due;
use crate::expire::{Expirer, Fate, PaidInRedis};
use crate::metrics::Source;
use chrono::Utc;
use flashsale_broker::{BatchHandler, HandleError, Message, Settle};
use flashsale_domain::ReservationCreated;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Shortest pause before asking PostgreSQL again about an order its clock does not find due yet.
const RECHECK: Duration = Duration::from_millis(20);

pub struct DueConsumer {
    pub expirer: Arc<Expirer>,
    pub early_wait_max: Duration,
    pub shutdown: CancellationToken,
}

impl BatchHandler for DueConsumer {
    /// PostgreSQL answers and takes writes: asked before a failing batch is split or a message dead-lettered.
    async fn healthy(&self) -> bool {
        match self.expirer.pool.get().await {
            Ok(mut conn) => flashsale_store::writable(&mut conn).await.unwrap_or(false),
            Err(_) => false,
        }
    }

    async fn handle(&self, batch: &[Message]) -> Result<Vec<Settle>, HandleError> {
        let mut settles = vec![Settle::Ack; batch.len()];
        let mut dues = Vec::with_capacity(batch.len());
        for (i, message) in batch.iter().enumerate() {
            match serde_json::from_slice::<ReservationCreated>(&message.body) {
                Ok(m) if m.v == ReservationCreated::VERSION => dues.push(Due::from(&m)),
                Ok(m) => {
                    tracing::error!(v = m.v, order_id = %m.order_id, "unsupported message version; dead-lettering");
                    settles[i] = Settle::DeadLetter;
                }
                Err(error) => {
                    tracing::error!(%error, "undecodable due message; dead-lettering");
                    settles[i] = Settle::DeadLetter;
                }
            }
        }

        let started = Instant::now();
        while !dues.is_empty() {
            let fates = self
                .expirer
                .expire(&dues, Source::Message, PaidInRedis::Leave)
                .await?;
            for (due, fate) in dues.iter().zip(&fates) {
                if *fate == Fate::UnknownSale {
                    tracing::warn!(order_id = %due.order_id, sale_id = %due.sale_id,
                        "due reservation of a sale PostgreSQL does not know; acknowledged");
                }
            }
            dues = dues
                .into_iter()
                .zip(fates)
                .filter(|(_, fate)| *fate == Fate::NotDue)
                .map(|(due, _)| due)
                .collect();
            if dues.is_empty() {
                break;
            }
            let left = self.early_wait_max.saturating_sub(started.elapsed());
            if left.is_zero() {
                tracing::warn!(
                    orders = dues.len(),
                    "due messages still not due by PostgreSQL's clock; \
                    acknowledged, the sweeper expires them"
                );
                self.expirer
                    .metrics
                    .left_to_sweeper
                    .with_label_values(&[] as &[&str])
                    .inc_by(dues.len() as u64);
                break;
            }
            // Until the latest deadline by our clock; PostgreSQL's may differ, so at least a short pause.
            let latest = dues
                .iter()
                .map(|d| d.expires_at)
                .max()
                .unwrap_or_else(Utc::now);
            let until = (latest - Utc::now()).to_std().unwrap_or_default();
            let pause = until.max(RECHECK).min(left);
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    // Unacknowledged: the broker redelivers them to whoever consumes next.
                    return Err(HandleError::Outage(anyhow::anyhow!("shutting down while waiting for deadlines")));
                }
                _ = tokio::time::sleep(pause) => {}
            }
        }
        Ok(settles)
    }
}
