//! Turning `reservation.created` deliveries into order rows: many per statement, idempotent, guarded.
//!
//! One transaction per batch runs the admission rules of `flashsale_store::admission` (shared with the payment
//! service): skip ids already written, lock the batch's sales in id order, admit each new order only if its
//! buyer holds no other active order and `held + quantity <= total_stock`. An order that fails either rule
//! (possible only if Redis lost writes) is written as `rejected` and announced here as `reservation.rejected`;
//! it never happens while Redis is healthy.
//!
//! Errors are told apart for the consumer: PostgreSQL or RabbitMQ unreachable is an outage (retried forever,
//! nothing dead-lettered); any other database error fails the batch, which the consumer retries and then
//! splits until the one message at fault is dead-lettered.

use crate::metrics::WriterMetrics;
use anyhow::Context;
use diesel::result::Error as DieselError;
use diesel_async::AsyncConnection;
use flashsale_broker::{BatchHandler, HandleError, Message, Publisher, Settle};
use flashsale_domain::ReservationCreated;
use flashsale_domain::messages::RESERVATION_REJECTED;
use flashsale_store::admission::{Decisions, Stock, breaks_a_rule, decide_and_write, retry_locked};
use flashsale_store::errors::{is_conflict, is_outage};
use flashsale_store::{PgPool, PoolError};
use std::time::Instant;

pub struct OrderWriter {
    pub pool: PgPool,
    pub publisher: Publisher,
    pub metrics: WriterMetrics,
}

impl BatchHandler for OrderWriter {
    /// PostgreSQL answers and takes writes: asked before a failing batch is split or a message dead-lettered.
    async fn healthy(&self) -> bool {
        match self.pool.get().await {
            Ok(mut conn) => flashsale_store::writable(&mut conn).await.unwrap_or(false),
            Err(_) => false,
        }
    }

    async fn handle(&self, batch: &[Message]) -> Result<Vec<Settle>, HandleError> {
        let mut settles = vec![Settle::Ack; batch.len()];
        let mut decoded: Vec<(usize, ReservationCreated)> = Vec::with_capacity(batch.len());
        for (i, message) in batch.iter().enumerate() {
            match serde_json::from_slice::<ReservationCreated>(&message.body) {
                Ok(m) if m.v == ReservationCreated::VERSION && breaks_a_rule(&m).is_none() => {
                    decoded.push((i, m))
                }
                Ok(m) if m.v == ReservationCreated::VERSION => {
                    let rule = breaks_a_rule(&m).unwrap_or_default();
                    tracing::error!(order_id = %m.order_id, rule, "reservation breaks a rule; dead-lettering");
                    self.metrics
                        .dead_letters
                        .with_label_values(&["invalid"])
                        .inc();
                    settles[i] = Settle::DeadLetter;
                }
                Ok(m) => {
                    tracing::error!(v = m.v, order_id = %m.order_id, "unsupported message version; dead-lettering");
                    self.metrics
                        .dead_letters
                        .with_label_values(&["version"])
                        .inc();
                    settles[i] = Settle::DeadLetter;
                }
                Err(error) => {
                    tracing::error!(%error, "undecodable reservation.created; dead-lettering");
                    self.metrics
                        .dead_letters
                        .with_label_values(&["undecodable"])
                        .inc();
                    settles[i] = Settle::DeadLetter;
                }
            }
        }
        if decoded.is_empty() {
            return Ok(settles);
        }

        let messages: Vec<&ReservationCreated> = decoded.iter().map(|(_, m)| m).collect();
        let started = Instant::now();
        let mut conn = self.pool.get().await.map_err(pool_error)?;
        let decisions = self
            .write(&mut conn, &messages)
            .await
            .map_err(query_error)?;
        self.metrics
            .commit_seconds
            .with_label_values(&[] as &[&str])
            .observe(started.elapsed().as_secs_f64());
        drop(conn);

        for (status, n) in &decisions.written {
            self.metrics.written.with_label_values(&[status]).inc_by(*n);
        }
        self.metrics
            .duplicates
            .with_label_values(&[] as &[&str])
            .inc_by(decisions.duplicates);
        for &k in &decisions.unknown_sale {
            let (i, m) = &decoded[k];
            tracing::error!(order_id = %m.order_id, sale_id = %m.sale_id, "reservation for an unknown sale; dead-lettering");
            self.metrics
                .dead_letters
                .with_label_values(&["unknown_sale"])
                .inc();
            settles[*i] = Settle::DeadLetter;
        }
        // Announced before the acks: if this fails the batch is retried, finds the rows and announces again.
        for r in &decisions.rejected {
            tracing::warn!(order_id = %r.order_id, sale_id = %r.sale_id, reason = %r.reason,
                "reservation rejected by the database stock guard (Redis lost writes?)");
            let body = serde_json::to_vec(r)
                .context("encoding reservation.rejected")
                .map_err(HandleError::Failed)?;
            // The rows are committed; only the broker can fail here, and retrying announces again.
            self.publisher
                .publish_event(RESERVATION_REJECTED, &r.order_id.to_string(), &body)
                .await
                .context("announcing reservation.rejected")
                .map_err(HandleError::Outage)?;
        }
        Ok(settles)
    }
}

impl OrderWriter {
    /// The optimistic attempt first, so that concurrent batches of one sale overlap; the rare batch it cannot
    /// decide alone (see `Stock::Optimistic`) is written again under its sales' row locks.
    async fn write(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        messages: &[&ReservationCreated],
    ) -> Result<Decisions, DieselError> {
        let optimistic = conn
            .transaction(async |conn| decide_and_write(conn, messages, Stock::Optimistic).await)
            .await;
        match optimistic {
            Err(e) if retry_locked(&e) => {
                tracing::debug!(error = %e, "optimistic batch rolled back; writing it under the sales' locks");
                self.metrics
                    .locked_retries
                    .with_label_values(&[] as &[&str])
                    .inc();
                conn.transaction(async |conn| decide_and_write(conn, messages, Stock::Locked).await)
                    .await
            }
            other => other,
        }
    }
}

/// No connection from the pool (refused, timed out): PostgreSQL is unreachable.
fn pool_error(e: PoolError) -> HandleError {
    HandleError::Outage(anyhow::Error::new(e).context("acquiring a PostgreSQL connection"))
}

/// A lost connection or a read-only server is an outage, and a deadlock or serialization failure against a
/// concurrent writer (payment admitting a row, expiry) is transient: both are retried and never dead-letter.
/// Any other error (a constraint, a trigger, a bug) may lie in a message. Errors this cannot tell apart (a
/// server shutting down mid-batch) are caught by `healthy`.
fn query_error(e: DieselError) -> HandleError {
    let outage = is_outage(&e) || is_conflict(&e);
    let e = anyhow::Error::new(e).context("writing a batch of orders");
    if outage {
        HandleError::Outage(e)
    } else {
        HandleError::Failed(e)
    }
}
