//! `reservation.created` → a pending payment per order, the amount taken from the message (never from a
//! client). Many per statement; idempotent: an order that already has a payment (a redelivery, a relay
//! re-publish, or a checkout that came first) is skipped. Acked only after the commit, so a crash redelivers.

use crate::metrics::PaymentMetrics;
use flashsale_broker::{BatchHandler, HandleError, Message, Settle};
use flashsale_domain::ReservationCreated;
use flashsale_store::PgPool;
use flashsale_store::admission::breaks_a_rule;
use flashsale_store::payments::{self, NewPayment, PaymentStatus};

pub struct PaymentRecorder {
    pub pool: PgPool,
    pub metrics: PaymentMetrics,
}

impl BatchHandler for PaymentRecorder {
    async fn healthy(&self) -> bool {
        match self.pool.get().await {
            Ok(mut conn) => flashsale_store::writable(&mut conn).await.unwrap_or(false),
            Err(_) => false,
        }
    }

    async fn handle(&self, batch: &[Message]) -> Result<Vec<Settle>, HandleError> {
        let mut settles = vec![Settle::Ack; batch.len()];
        let mut rows = Vec::with_capacity(batch.len());
        for (i, message) in batch.iter().enumerate() {
            match decode(&message.body) {
                Ok(m) => rows.push(new_payment(&m)),
                Err(reason) => {
                    tracing::error!(
                        reason,
                        "reservation.created the payment service cannot record; dead-lettering"
                    );
                    self.metrics.dead_letters.with_label_values(&[reason]).inc();
                    settles[i] = Settle::DeadLetter;
                }
            }
        }
        if rows.is_empty() {
            return Ok(settles);
        }
        let mut conn = self.pool.get().await.map_err(|e| {
            HandleError::Outage(anyhow::Error::new(e).context("acquiring a PostgreSQL connection"))
        })?;
        let mut recorded = 0;
        // Chunked to stay far below PostgreSQL's bind-parameter limit.
        for chunk in rows.chunks(2000) {
            recorded += payments::record_first(&mut conn, chunk)
                .await
                .map_err(query_error)?;
        }
        self.metrics
            .recorded
            .with_label_values(&["consumer"])
            .inc_by(recorded as u64);
        Ok(settles)
    }
}

fn decode(body: &[u8]) -> Result<ReservationCreated, &'static str> {
    let m: ReservationCreated = serde_json::from_slice(body).map_err(|_| "undecodable")?;
    if m.v != ReservationCreated::VERSION {
        return Err("version");
    }
    if breaks_a_rule(&m).is_some() {
        return Err("invalid");
    }
    Ok(m)
}

fn new_payment(m: &ReservationCreated) -> NewPayment {
    NewPayment {
        id: uuid::Uuid::now_v7(),
        order_id: m.order_id.as_uuid(),
        sale_id: m.sale_id.get(),
        user_id: m.user_id.as_str().to_owned(),
        quantity: i32::try_from(m.quantity).unwrap_or(i32::MAX),
        amount_minor: m.amount.minor(),
        status: PaymentStatus::Pending.as_str(),
        reserved_at: m.created_at,
        expires_at: m.expires_at,
    }
}

/// A lost connection is an outage (retried forever); anything else fails the batch, which the consumer
/// retries and then splits to find the message at fault.
fn query_error(e: diesel::result::Error) -> HandleError {
    use diesel::result::{DatabaseErrorKind, Error};
    let outage = matches!(
        e,
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection
                | DatabaseErrorKind::UnableToSendCommand
                | DatabaseErrorKind::ReadOnlyTransaction,
            _,
        ) | Error::BrokenTransactionManager
    );
    let e = anyhow::Error::new(e).context("recording pending payments");
    if outage {
        HandleError::Outage(e)
    } else {
        HandleError::Failed(e)
    }
}
