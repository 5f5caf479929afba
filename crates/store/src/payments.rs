//! Queries on `payments` and `webhook_events`.
//!
//! A payment is one checkout attempt: `pending → succeeded | failed | refund_required`. At most one is pending
//! per order (a partial unique index), so recording one is idempotent whoever comes first (the
//! `reservation.created` consumer or a checkout).

use crate::schema::{payments, webhook_events};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::fmt;
use uuid::Uuid;

/// The states of a payment row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    Pending,
    Succeeded,
    Failed,
    RefundRequired,
}

impl PaymentStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RefundRequired => "refund_required",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "refund_required" => Self::RefundRequired,
            _ => return None,
        })
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = payments, check_for_backend(diesel::pg::Pg))]
pub struct PaymentRow {
    pub id: Uuid,
    pub order_id: Uuid,
    pub sale_id: i64,
    pub user_id: String,
    pub quantity: i32,
    pub amount_minor: i64,
    pub status: String,
    pub reserved_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl PaymentRow {
    /// The row's status (the table's CHECK allows only the four states).
    pub fn status(&self) -> Option<PaymentStatus> {
        PaymentStatus::parse(&self.status)
    }
}

/// A pending payment to record.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = payments)]
pub struct NewPayment {
    pub id: Uuid,
    pub order_id: Uuid,
    pub sale_id: i64,
    pub user_id: String,
    pub quantity: i32,
    pub amount_minor: i64,
    pub status: &'static str,
    pub reserved_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Records the first pending payment of each order that has no payment yet, in one statement; returns how many
/// were recorded. A redelivery, or an order a checkout already recorded, is skipped.
pub async fn record_first(conn: &mut AsyncPgConnection, rows: &[NewPayment]) -> QueryResult<usize> {
    use diesel::sql_types::{Array, BigInt, Integer, Text, Timestamptz, Uuid as SqlUuid};
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let orders: Vec<Uuid> = rows.iter().map(|r| r.order_id).collect();
    let sales: Vec<i64> = rows.iter().map(|r| r.sale_id).collect();
    let users: Vec<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
    let quantities: Vec<i32> = rows.iter().map(|r| r.quantity).collect();
    let amounts: Vec<i64> = rows.iter().map(|r| r.amount_minor).collect();
    let reserved: Vec<DateTime<Utc>> = rows.iter().map(|r| r.reserved_at).collect();
    let expires: Vec<DateTime<Utc>> = rows.iter().map(|r| r.expires_at).collect();
    // DISTINCT ON: a batch may carry a redelivery next to its original.
    diesel::sql_query(
        "INSERT INTO payments (id, order_id, sale_id, user_id, quantity, amount_minor, status, reserved_at, \
                               expires_at) \
         SELECT DISTINCT ON (n.order_id) n.id, n.order_id, n.sale_id, n.user_id, n.quantity, n.amount_minor, \
                'pending', n.reserved_at, n.expires_at \
         FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::text[], $5::int4[], $6::int8[], \
                     $7::timestamptz[], $8::timestamptz[]) \
              AS n(id, order_id, sale_id, user_id, quantity, amount_minor, reserved_at, expires_at) \
         WHERE NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = n.order_id) \
         ON CONFLICT DO NOTHING",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<SqlUuid>, _>(&orders)
    .bind::<Array<BigInt>, _>(&sales)
    .bind::<Array<Text>, _>(&users)
    .bind::<Array<Integer>, _>(&quantities)
    .bind::<Array<BigInt>, _>(&amounts)
    .bind::<Array<Timestamptz>, _>(&reserved)
    .bind::<Array<Timestamptz>, _>(&expires)
    .execute(conn)
    .await
}

/// Records a pending payment unless the order already has one (then nothing happens: read it back).
pub async fn insert_pending(conn: &mut AsyncPgConnection, row: &NewPayment) -> QueryResult<usize> {
    diesel::insert_into(payments::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<PaymentRow>> {
    payments::table
        .find(id)
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The order's payments, newest first.
pub async fn of_order(conn: &mut AsyncPgConnection, order: Uuid) -> QueryResult<Vec<PaymentRow>> {
    payments::table
        .filter(payments::order_id.eq(order))
        .select(PaymentRow::as_select())
        .order((payments::created_at.desc(), payments::id.desc()))
        .load(conn)
        .await
}

/// Which of these orders have a payment that must be refunded (it arrived after the order expired, or after
/// another payment paid it), served by `payments_by_order`.
pub async fn refunds_owed(
    conn: &mut AsyncPgConnection,
    orders: &[Uuid],
) -> QueryResult<std::collections::HashSet<Uuid>> {
    if orders.is_empty() {
        return Ok(Default::default());
    }
    let owed: Vec<Uuid> = payments::table
        .filter(payments::order_id.eq_any(orders))
        .filter(payments::status.eq(PaymentStatus::RefundRequired.as_str()))
        .select(payments::order_id)
        .distinct()
        .load(conn)
        .await?;
    Ok(owed.into_iter().collect())
}

/// The payments, locked until the transaction ends (in id order, so concurrent batches never deadlock on them).
pub async fn lock_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<PaymentRow>> {
    payments::table
        .filter(payments::id.eq_any(ids))
        .select(PaymentRow::as_select())
        .order(payments::id)
        .for_update()
        .load(conn)
        .await
}

/// The stored answers of the events already processed among `event_ids`: `(event id, status code, body)`.
pub async fn event_answers(
    conn: &mut AsyncPgConnection,
    event_ids: &[&str],
) -> QueryResult<Vec<(String, i32, String)>> {
    webhook_events::table
        .filter(webhook_events::event_id.eq_any(event_ids))
        .select((
            webhook_events::event_id,
            webhook_events::status_code,
            webhook_events::answer,
        ))
        .load(conn)
        .await
}

/// Sets each payment's status, in one statement.
pub async fn set_statuses(
    conn: &mut AsyncPgConnection,
    changes: &[(Uuid, PaymentStatus)],
) -> QueryResult<usize> {
    use diesel::sql_types::{Array, Text, Uuid as SqlUuid};
    if changes.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = changes.iter().map(|c| c.0).collect();
    let statuses: Vec<&str> = changes.iter().map(|c| c.1.as_str()).collect();
    diesel::sql_query(
        "UPDATE payments p SET status = n.status, updated_at = now() \
         FROM unnest($1::uuid[], $2::text[]) AS n(id, status) WHERE p.id = n.id",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<Text>, _>(&statuses)
    .execute(conn)
    .await
}

/// A processed webhook event and the answer it was given.
pub struct NewEvent<'a> {
    pub event_id: &'a str,
    pub payment_id: Uuid,
    pub event_type: &'static str,
    pub status_code: i32,
    pub answer: &'a str,
}

/// Stores processed events, in one statement.
pub async fn record_events(
    conn: &mut AsyncPgConnection,
    events: &[NewEvent<'_>],
) -> QueryResult<usize> {
    use diesel::sql_types::{Array, Integer, Text, Uuid as SqlUuid};
    if events.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = events.iter().map(|e| e.event_id).collect();
    let payments: Vec<Uuid> = events.iter().map(|e| e.payment_id).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type).collect();
    let codes: Vec<i32> = events.iter().map(|e| e.status_code).collect();
    let answers: Vec<&str> = events.iter().map(|e| e.answer).collect();
    diesel::sql_query(
        "INSERT INTO webhook_events (event_id, payment_id, event_type, status_code, answer) \
         SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::int4[], $5::text[])",
    )
    .bind::<Array<Text>, _>(&ids)
    .bind::<Array<SqlUuid>, _>(&payments)
    .bind::<Array<Text>, _>(&types)
    .bind::<Array<Integer>, _>(&codes)
    .bind::<Array<Text>, _>(&answers)
    .execute(conn)
    .await
}
