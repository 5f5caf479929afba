//! Turning `reservation.created` deliveries into order rows: many per statement, idempotent, guarded.
//!
//! One transaction per batch: skip ids already written (redelivery, relay re-publish), lock the batch's sales
//! in id order, and admit each new order only if its buyer holds no other active order and
//! `held + quantity <= total_stock`. An order that fails either rule (possible only if Redis lost writes) is
//! written as `rejected` and announced as `reservation.rejected`; it never happens while Redis is healthy.
//!
//! Errors are told apart for the consumer: PostgreSQL or RabbitMQ unreachable is an outage (retried forever,
//! nothing dead-lettered); any other database error fails the batch, which the consumer retries and then
//! splits until the one message at fault is dead-lettered.

use crate::metrics::WriterMetrics;
use anyhow::Context;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncConnection;
use flashsale_broker::{BatchHandler, HandleError, Message, Publisher, Settle};
use flashsale_domain::messages::RESERVATION_REJECTED;
use flashsale_domain::{
    OrderId, OrderStatus, RejectCause, ReservationCreated, ReservationRejected,
};
use flashsale_store::models::NewOrderRow;
use flashsale_store::{PgPool, PoolError, orders, sales};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;
use uuid::Uuid;

pub struct OrderWriter {
    pub pool: PgPool,
    pub publisher: Publisher,
    pub metrics: WriterMetrics,
}

/// What one committed batch decided, beyond "written".
#[derive(Debug, Default)]
struct Decisions {
    /// Indexes (into the decoded messages) of messages no row can be written for: their sale does not exist.
    unknown_sale: Vec<usize>,
    /// Rejected orders, to announce (also those found rejected by an earlier attempt).
    rejected: Vec<ReservationRejected>,
    written: HashMap<&'static str, u64>,
    duplicates: u64,
}

const REJECT_BUYER: &str = "the buyer already holds an active order in this sale";
const REJECT_STOCK: &str = "the sale's recorded stock is exhausted";

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
        let decisions = conn
            .transaction(async |conn| decide_and_write(conn, &messages).await)
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

/// No connection from the pool (refused, timed out): PostgreSQL is unreachable.
fn pool_error(e: PoolError) -> HandleError {
    HandleError::Outage(anyhow::Error::new(e).context("acquiring a PostgreSQL connection"))
}

/// A lost connection or a read-only server is an outage; any other error (a constraint, a trigger, a bug) may
/// lie in a message. Errors this cannot tell apart (a server shutting down mid-batch) are caught by `healthy`.
fn query_error(e: DieselError) -> HandleError {
    let outage = is_outage(&e);
    let e = anyhow::Error::new(e).context("writing a batch of orders");
    if outage {
        HandleError::Outage(e)
    } else {
        HandleError::Failed(e)
    }
}

/// tokio-postgres errors without a SQLSTATE (closed socket, I/O) arrive as `UnableToSendCommand`.
fn is_outage(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand
            // A replica after a failover: no message can be written until a primary is back.
            | DatabaseErrorKind::ReadOnlyTransaction,
            _,
        )
        | DieselError::BrokenTransactionManager => true,
        // The commit's fate is unknown; a retry finds the rows if it happened.
        DieselError::RollbackErrorOnCommit { commit_error, .. } => is_outage(commit_error),
        _ => false,
    }
}

/// A message that decodes but could never be written (a table CHECK would refuse it) is refused here, so it is
/// dead-lettered instead of failing its whole batch forever.
fn breaks_a_rule(m: &ReservationCreated) -> Option<&'static str> {
    if m.quantity == 0 || m.quantity > flashsale_domain::sale::MAX_PER_USER_LIMIT {
        Some("quantity out of range")
    } else if m.amount.minor() <= 0 {
        Some("amount must be positive")
    } else if m.expires_at < m.created_at {
        Some("expires_at before created_at")
    } else {
        None
    }
}

fn rejected(
    m: &ReservationCreated,
    reason: &str,
    cause: RejectCause,
    active_order_id: Option<Uuid>,
) -> ReservationRejected {
    ReservationRejected {
        v: ReservationRejected::VERSION,
        order_id: m.order_id,
        sale_id: m.sale_id,
        user_id: m.user_id.clone(),
        quantity: m.quantity,
        reason: reason.to_owned(),
        cause,
        active_order_id: active_order_id.map(OrderId::from_uuid),
    }
}

async fn decide_and_write(
    conn: &mut diesel_async::AsyncPgConnection,
    messages: &[&ReservationCreated],
) -> Result<Decisions, diesel::result::Error> {
    let mut d = Decisions::default();
    // Lock the batch's sales first (in id order, so concurrent writers never deadlock): every later read in
    // this transaction then sees what a concurrent writer of the same sale committed.
    let mut sale_ids: Vec<i64> = messages.iter().map(|m| m.sale_id.get()).collect();
    sale_ids.sort_unstable();
    sale_ids.dedup();
    let mut stock: BTreeMap<i64, (i64, i64)> = sales::lock_stock(conn, &sale_ids)
        .await?
        .into_iter()
        .map(|(id, total, held)| (id, (total, held)))
        .collect();

    let ids: Vec<Uuid> = messages.iter().map(|m| m.order_id.as_uuid()).collect();
    let existing: HashMap<Uuid, OrderStatus> =
        orders::statuses(conn, &ids).await?.into_iter().collect();

    // New messages, first occurrence only (a batch can hold a redelivery and a relay re-publish of one id).
    let mut seen = HashSet::new();
    let mut fresh: Vec<(usize, &ReservationCreated)> = Vec::new();
    for (k, m) in messages.iter().enumerate() {
        let id = m.order_id.as_uuid();
        if let Some(&status) = existing.get(&id) {
            if status == OrderStatus::Rejected && seen.insert(id) {
                // The cause was not recorded: announced as unknown, which returns no units (never oversells).
                d.rejected.push(rejected(
                    m,
                    "previously rejected",
                    RejectCause::Unknown,
                    None,
                ));
            }
            d.duplicates += 1;
        } else if seen.insert(id) {
            fresh.push((k, m));
        } else {
            d.duplicates += 1;
        }
    }
    if fresh.is_empty() {
        return Ok(d);
    }

    let users: Vec<&str> = fresh.iter().map(|(_, m)| m.user_id.as_str()).collect();
    let mut active: HashMap<(i64, String), Uuid> = orders::active_buyers(conn, &sale_ids, &users)
        .await?
        .into_iter()
        .map(|(sale, user, id)| ((sale, user), id))
        .collect();

    let mut rows = Vec::with_capacity(fresh.len());
    for (k, m) in fresh {
        let sale = m.sale_id.get();
        let Some((total, held)) = stock.get_mut(&sale) else {
            d.unknown_sale.push(k);
            continue;
        };
        let qty = i64::from(m.quantity);
        let buyer = (sale, m.user_id.as_str().to_owned());
        let status = if let Some(&holder) = active.get(&buyer) {
            let cause = RejectCause::BuyerAlreadyActive;
            d.rejected
                .push(rejected(m, REJECT_BUYER, cause, Some(holder)));
            OrderStatus::Rejected
        } else if *held + qty > *total {
            let cause = RejectCause::StockExhausted;
            d.rejected.push(rejected(m, REJECT_STOCK, cause, None));
            OrderStatus::Rejected
        } else {
            *held += qty;
            active.insert(buyer, m.order_id.as_uuid());
            OrderStatus::PendingPayment
        };
        rows.push(NewOrderRow {
            id: m.order_id.as_uuid(),
            sale_id: sale,
            user_id: m.user_id.as_str().to_owned(),
            quantity: i32::try_from(m.quantity).unwrap_or(i32::MAX),
            amount_minor: m.amount.minor(),
            status,
            created_at: m.created_at,
            expires_at: m.expires_at,
        });
    }
    // Chunked to stay far below PostgreSQL's 65,535 bind parameters per statement.
    let mut inserted = HashSet::with_capacity(rows.len());
    for chunk in rows.chunks(2000) {
        inserted.extend(orders::insert_many(conn, chunk).await?);
    }
    // `held` grows only by the active rows this statement inserted: a row skipped because its id appeared
    // meanwhile (another writer) holds nothing on our account.
    let mut held_delta: BTreeMap<i64, i64> = BTreeMap::new();
    for row in &rows {
        if !inserted.contains(&row.id) {
            d.duplicates += 1;
            continue;
        }
        *d.written.entry(row.status.as_str()).or_default() += 1;
        if row.status.is_active() {
            *held_delta.entry(row.sale_id).or_default() += i64::from(row.quantity);
        }
    }
    for (sale, delta) in held_delta {
        sales::add_held(conn, sale, delta).await?;
    }
    Ok(d)
}
