//! The one path every expiration takes, whoever found it (a due message, the sweeper):
//!
//! 1. PostgreSQL decides: the conditional `pending_payment → expired` (only once `expires_at <=
//!    clock_timestamp()`), with `sales.held` lowered in the same transaction; a row order-writer has not
//!    written yet is inserted as `expired` (if it appeared meanwhile, the conditional update applies instead).
//! 2. Redis follows: `Stock::release_expired` gives the units back, idempotently (only a `held` record
//!    changes).
//! 3. `order.expired` is published, confirmed.
//!
//! Steps 2 and 3 run for every order PostgreSQL shows `expired`, not only for those this call expired: a
//! redelivery or a sweeper pass after a crash between the commit and Redis repairs it (re-drive, don't trust a
//! single attempt). Consumers of `order.expired` dedupe by `message_id` (the order id).

use crate::due::Due;
use crate::metrics::{ExpiryMetrics, Source};
use anyhow::Context;
use chrono::{DateTime, Utc};
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use flashsale_broker::{HandleError, Publisher};
use flashsale_domain::messages::ORDER_EXPIRED;
use flashsale_domain::{OrderExpired, OrderId, OrderStatus};
use flashsale_stock::{PaidOutcome, ReleaseOutcome, Stock, StockError};
use flashsale_store::errors::{is_conflict, is_outage};
use flashsale_store::{PgPool, PoolError, expiry, orders};
use futures_util::future::try_join_all;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use uuid::Uuid;

/// Attempts at a transaction PostgreSQL rolled back for a deadlock or serialization failure.
const CONFLICT_ATTEMPTS: u32 = 5;
/// Redis calls and confirmed publishes in flight at once: one at a time would make a wave of expirations wait
/// on round trips.
const IN_FLIGHT: usize = 64;

pub struct Expirer {
    pub pool: PgPool,
    pub stock: Stock,
    pub publisher: Publisher,
    pub metrics: ExpiryMetrics,
}

/// What became of one due reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Expired, by this call or an earlier one: units released in Redis, `order.expired` published.
    Expired,
    /// Paid before its deadline: left alone (or, when Redis showed it held, repaired there as paid).
    Paid,
    /// Refused by order-writer's stock guard: holds nothing (the gateway clears it in Redis).
    Rejected,
    /// Not due yet by PostgreSQL's clock.
    NotDue,
    /// No row, and none can be written: its sale does not exist in PostgreSQL.
    UnknownSale,
}

/// Whether a `paid` row should be told to Redis again (the sweeper found the reservation still `held` there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaidInRedis {
    Leave,
    Repair,
}

impl Expirer {
    /// Takes `dues` through PostgreSQL, Redis and the notification; one fate per due, in order. An error
    /// means some step did not happen: the caller retries (a redelivery, the next sweep) and the re-drive
    /// finishes it.
    pub async fn expire(
        &self,
        dues: &[Due],
        source: Source,
        paid: PaidInRedis,
    ) -> Result<Vec<Fate>, HandleError> {
        if dues.is_empty() {
            return Ok(Vec::new());
        }
        let (status, newly) = self.decide(dues).await?;

        let mut fates = Vec::with_capacity(dues.len());
        let mut expired: Vec<&Due> = Vec::new();
        let mut repair: Vec<&Due> = Vec::new();
        let mut seen = HashSet::new();
        let mut unknown_sales = Vec::new();
        for due in dues {
            let id = due.order_id.as_uuid();
            let first = seen.insert(id);
            let fate = match status.get(&id) {
                Some(OrderStatus::Expired) => {
                    if first {
                        expired.push(due);
                    }
                    Fate::Expired
                }
                Some(OrderStatus::Paid) => {
                    if first && paid == PaidInRedis::Repair {
                        repair.push(due);
                    }
                    Fate::Paid
                }
                Some(OrderStatus::Rejected) => Fate::Rejected,
                Some(OrderStatus::PendingPayment) => Fate::NotDue,
                None => {
                    unknown_sales.push(due.sale_id.get());
                    Fate::UnknownSale
                }
            };
            fates.push(fate);
        }
        if !unknown_sales.is_empty() {
            // Missing and not inserted: either its sale is unknown or it is not due by PostgreSQL's clock.
            let mut conn = self.pool.get().await.map_err(pool_error)?;
            let existing: HashSet<i64> = expiry::existing_sales(&mut conn, &unknown_sales)
                .await
                .map_err(query_error)?
                .into_iter()
                .collect();
            for (fate, due) in fates.iter_mut().zip(dues) {
                if *fate == Fate::UnknownSale && existing.contains(&due.sale_id.get()) {
                    *fate = Fate::NotDue;
                }
            }
        }

        for chunk in expired.chunks(IN_FLIGHT) {
            try_join_all(chunk.iter().map(|due| self.release(due))).await?;
        }
        for chunk in repair.chunks(IN_FLIGHT) {
            try_join_all(chunk.iter().map(|due| self.repair_paid(due))).await?;
        }
        let released_at = Utc::now();
        for due in &expired {
            if newly.contains_key(&due.order_id.as_uuid()) {
                let lag = (released_at - due.expires_at).to_std().unwrap_or_default();
                self.metrics
                    .release_lag
                    .with_label_values(&[source.label()])
                    .observe(lag.as_secs_f64());
            }
        }
        self.metrics
            .expirations
            .with_label_values(&[source.label()])
            .inc_by(newly.len() as u64);
        for chunk in expired.chunks(IN_FLIGHT) {
            try_join_all(
                chunk
                    .iter()
                    .map(|due| self.announce(due, newly.get(&due.order_id.as_uuid()).copied())),
            )
            .await?;
        }
        Ok(fates)
    }

    /// Step 1: the orders' statuses once PostgreSQL has decided, and those this call expired (with when).
    async fn decide(
        &self,
        dues: &[Due],
    ) -> Result<(HashMap<Uuid, OrderStatus>, HashMap<Uuid, DateTime<Utc>>), HandleError> {
        let mut ids: Vec<Uuid> = dues.iter().map(|d| d.order_id.as_uuid()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut conn = self.pool.get().await.map_err(pool_error)?;
        let mut newly = transition(&mut conn, &ids).await?;
        let mut status: HashMap<Uuid, OrderStatus> = orders::statuses(&mut conn, &ids)
            .await
            .map_err(query_error)?
            .into_iter()
            .collect();

        let mut missing = Vec::new();
        let mut queued = HashSet::new();
        for due in dues {
            let id = due.order_id.as_uuid();
            if !status.contains_key(&id) && queued.insert(id) {
                missing.push(due.row());
            }
        }
        if missing.is_empty() {
            return Ok((status, newly));
        }
        // order-writer is behind (or stopped): write the row as expired, so its later insert is skipped and
        // never counts in `held`.
        let inserted = expiry::insert_expired(&mut conn, &missing)
            .await
            .map_err(query_error)?;
        let now = Utc::now();
        for id in &inserted {
            newly.insert(*id, now);
            status.insert(*id, OrderStatus::Expired);
        }
        let inserted: HashSet<Uuid> = inserted.into_iter().collect();
        let raced: Vec<Uuid> = missing
            .iter()
            .map(|r| r.id)
            .filter(|id| !inserted.contains(id))
            .collect();
        if !raced.is_empty() {
            // Not inserted: the row appeared meanwhile (conflict), or it is not due, or its sale is unknown.
            newly.extend(transition(&mut conn, &raced).await?);
            status.extend(
                orders::statuses(&mut conn, &raced)
                    .await
                    .map_err(query_error)?,
            );
        }
        Ok((status, newly))
    }

    /// Step 2: the units back in Redis. Any outcome but an error is final.
    async fn release(&self, due: &Due) -> Result<(), HandleError> {
        let outcome = self
            .stock
            .release_expired(due.sale_id, &due.user_id, due.order_id)
            .await
            .map_err(stock_error)?;
        match outcome {
            ReleaseOutcome::Released | ReleaseOutcome::AlreadyReleased => {}
            // Redis lost the state; the warmer rebuilt the stock from PostgreSQL, where it no longer counts.
            ReleaseOutcome::Missing => {
                tracing::debug!(order_id = %due.order_id, "no Redis record to release")
            }
            ReleaseOutcome::NotHeld => tracing::error!(
                order_id = %due.order_id, sale_id = %due.sale_id,
                "PostgreSQL says expired but Redis says paid or rejected; Redis left as it is"
            ),
        }
        Ok(())
    }

    /// The sweeper found a reservation held in Redis whose row is paid: payment crashed before its Redis step.
    async fn repair_paid(&self, due: &Due) -> Result<(), HandleError> {
        let outcome = self
            .stock
            .mark_paid(due.sale_id, &due.user_id, due.order_id)
            .await
            .map_err(stock_error)?;
        if outcome == PaidOutcome::Paid {
            tracing::warn!(order_id = %due.order_id, "paid order was still held in Redis; marked paid");
        }
        Ok(())
    }

    /// Step 3: `order.expired`, confirmed by the broker.
    async fn announce(
        &self,
        due: &Due,
        expired_at: Option<DateTime<Utc>>,
    ) -> Result<(), HandleError> {
        let message = OrderExpired {
            v: OrderExpired::VERSION,
            order_id: due.order_id,
            sale_id: due.sale_id,
            user_id: due.user_id.clone(),
            quantity: due.quantity,
            expires_at: due.expires_at,
            // A re-drive does not know the first commit's time; consumers dedupe by the order id anyway.
            expired_at: expired_at.unwrap_or_else(Utc::now),
        };
        let body = serde_json::to_vec(&message)
            .context("encoding order.expired")
            .map_err(HandleError::Failed)?;
        self.publisher
            .publish_event(ORDER_EXPIRED, &order_key(due.order_id), &body)
            .await
            .context("publishing order.expired")
            .map_err(HandleError::Outage)
    }
}

fn order_key(id: OrderId) -> String {
    id.to_string()
}

/// The conditional transition in its own transaction, run again when PostgreSQL resolved a deadlock or a
/// serialization failure against it.
async fn transition(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, DateTime<Utc>>, HandleError> {
    let mut attempt = 1;
    loop {
        let result = conn
            .transaction(async |conn| expiry::expire_pending(conn, ids).await)
            .await;
        match result {
            Ok(rows) => return Ok(rows.into_iter().map(|r| (r.id, r.expired_at)).collect()),
            Err(e) if is_conflict(&e) && attempt < CONFLICT_ATTEMPTS => {
                tracing::debug!(error = %e, attempt, "expiry transaction lost a conflict; retrying");
                tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(e) => return Err(query_error(e)),
        }
    }
}

fn pool_error(e: PoolError) -> HandleError {
    HandleError::Outage(anyhow::Error::new(e).context("acquiring a PostgreSQL connection"))
}

fn query_error(e: DieselError) -> HandleError {
    let outage = is_outage(&e);
    let e = anyhow::Error::new(e).context("expiring orders in PostgreSQL");
    if outage {
        HandleError::Outage(e)
    } else {
        HandleError::Failed(e)
    }
}

fn stock_error(e: StockError) -> HandleError {
    match e {
        StockError::Unavailable(_) => {
            HandleError::Outage(anyhow::Error::new(e).context("releasing units in Redis"))
        }
        StockError::Reply(_) => {
            HandleError::Failed(anyhow::Error::new(e).context("releasing units in Redis"))
        }
    }
}
