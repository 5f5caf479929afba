//! Admitting reservations as order rows: many per statement, idempotent, guarded. Shared by order-writer (its
//! batches) and the payment service (a payment that arrives before order-writer wrote the row admits it the
//! same way, then pays it).
//!
//! One transaction per call: skip ids already written (redelivery, relay re-publish), lock the sales in id
//! order, and admit each new order only if its buyer holds no other active order and
//! `held + quantity <= total_stock`. An order that fails either rule (possible only if Redis lost writes) is
//! written as `rejected` and returned for announcing as `reservation.rejected`.
//!
//! [`Stock::Optimistic`] defers the sale's row lock to the last statement, so that concurrent batches of one
//! sale insert in parallel: it reads `held` unlocked, writes only if every order is admitted, and adds to
//! `held` by a conditional update. Anything that read may have got wrong rolls the attempt back
//! ([`retry_locked`]), and the batch runs again under [`Stock::Locked`], which decides exactly as a lone
//! writer would.

use crate::models::NewOrderRow;
use crate::{orders, sales};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use flashsale_domain::{
    OrderId, OrderStatus, RejectCause, ReservationCreated, ReservationRejected,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

/// What one committed batch decided, beyond "written".
#[derive(Debug, Default)]
pub struct Decisions {
    /// Indexes (into the decoded messages) of messages no row can be written for: their sale does not exist.
    pub unknown_sale: Vec<usize>,
    /// Rejected orders, to announce (also those found rejected by an earlier attempt).
    pub rejected: Vec<ReservationRejected>,
    pub written: HashMap<&'static str, u64>,
    pub duplicates: u64,
}

/// How a call reads the stock of its sales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stock {
    /// Each sale's row is locked first: every later read sees what concurrent writers committed.
    Locked,
    /// `held` is read unlocked and raised last by `held + n <= total_stock`; a refusal, a miss of that update
    /// or a clash with a concurrent batch rolls back with an error for which [`retry_locked`] is true.
    Optimistic,
}

/// An optimistic attempt was rolled back for a reason a locked one decides correctly: it would have rejected
/// an order, its conditional update of `held` found less stock than it read, or a concurrent batch wrote one
/// of its buyers (unique violation) or waited on it the other way round (deadlock).
pub fn retry_locked(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::RollbackTransaction
            | DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    ) || crate::errors::is_conflict(e)
}

const REJECT_BUYER: &str = "the buyer already holds an active order in this sale";
const REJECT_STOCK: &str = "the sale's recorded stock is exhausted";

/// A message that decodes but could never be written (a table CHECK would refuse it) is refused here, so it is
/// dead-lettered instead of failing its whole batch forever.
pub fn breaks_a_rule(m: &ReservationCreated) -> Option<&'static str> {
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

/// Writes the new ones among `messages` (in the caller's transaction) and says what it decided.
pub async fn decide_and_write(
    conn: &mut diesel_async::AsyncPgConnection,
    messages: &[&ReservationCreated],
    mode: Stock,
) -> Result<Decisions, DieselError> {
    let mut d = Decisions::default();
    let mut sale_ids: Vec<i64> = messages.iter().map(|m| m.sale_id.get()).collect();
    sale_ids.sort_unstable();
    sale_ids.dedup();
    // Locked: the sales first (in id order, so concurrent writers never deadlock), so every later read in
    // this transaction sees what a concurrent writer of the same sale committed.
    let stock = match mode {
        Stock::Locked => sales::lock_stock(conn, &sale_ids).await?,
        Stock::Optimistic => sales::stock(conn, &sale_ids).await?,
    };
    let mut stock: BTreeMap<i64, (i64, i64)> = stock
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

    let buyers: Vec<(i64, &str)> = fresh
        .iter()
        .map(|(_, m)| (m.sale_id.get(), m.user_id.as_str()))
        .collect();
    let mut active: HashMap<(i64, String), Uuid> = orders::active_buyers(conn, &buyers)
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
        if status == OrderStatus::Rejected && mode == Stock::Optimistic {
            // An unlocked read may be stale; only a locked one may refuse an order.
            return Err(DieselError::RollbackTransaction);
        }
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
    // In id order, as the locks of the locked mode.
    for (sale, delta) in held_delta {
        match mode {
            Stock::Locked => {
                sales::add_held(conn, sale, delta).await?;
            }
            Stock::Optimistic => {
                if sales::add_held_within_stock(conn, sale, delta).await? == 0 {
                    return Err(DieselError::RollbackTransaction);
                }
            }
        }
    }
    Ok(d)
}
