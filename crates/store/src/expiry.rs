//! Queries of the expiry service: the conditional `pending_payment → expired` transition with its `held`
//! decrement, the insert-as-expired of rows order-writer has not written yet, and the sweeper's scan.
//!
//! The deadline is PostgreSQL's clock (`clock_timestamp()`), the same one payment's conditional update reads,
//! so exactly one of the two wins an order whatever the services' clocks say.

use crate::models::NewOrderRow;
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Integer, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{QueryResult, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::BTreeMap;
use uuid::Uuid;

/// An order this call moved to `expired`.
#[derive(Debug, Clone, QueryableByName)]
pub struct ExpiredRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = BigInt)]
    pub sale_id: i64,
    #[diesel(sql_type = Integer)]
    pub quantity: i32,
    #[diesel(sql_type = Timestamptz)]
    pub expired_at: DateTime<Utc>,
}

/// Moves the due `pending_payment` orders among `ids` to `expired` and lowers each sale's `held` by their
/// units. Run it inside a transaction: the transition and the counter commit together.
///
/// Lock order is the lifecycle's: the order rows first (in id order, so two expiry replicas never deadlock on
/// each other), then the sale rows (in id order). A row locked by a concurrent payment is re-read after it
/// commits, so a paid order is never touched.
pub async fn expire_pending(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> QueryResult<Vec<ExpiredRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let expired: Vec<ExpiredRow> = diesel::sql_query(
        "WITH due AS ( \
             SELECT id FROM orders \
             WHERE id = ANY($1) AND status = 'pending_payment' AND expires_at <= clock_timestamp() \
             ORDER BY id FOR UPDATE) \
         UPDATE orders o SET status = 'expired' FROM due \
         WHERE o.id = due.id AND o.status = 'pending_payment' \
         RETURNING o.id, o.sale_id, o.quantity, clock_timestamp() AS expired_at",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .load(conn)
    .await?;
    let mut units: BTreeMap<i64, i64> = BTreeMap::new();
    for row in &expired {
        *units.entry(row.sale_id).or_default() += i64::from(row.quantity);
    }
    for (sale, n) in units {
        diesel::sql_query("UPDATE sales SET held = held - $2 WHERE id = $1")
            .bind::<BigInt, _>(sale)
            .bind::<BigInt, _>(n)
            .execute(conn)
            .await?;
    }
    Ok(expired)
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// Writes reservations order-writer has not written yet straight as `expired` (their `status` field is
/// ignored), only those already due by PostgreSQL's clock and whose sale exists. Returns the ids inserted. A row
/// that exists already is left alone (`ON CONFLICT (id) DO NOTHING`): the caller applies the conditional
/// update to it instead. `held` is not touched: an expired row never counted there, and order-writer's later
/// insert of the same id is skipped, so it never counts either.
pub async fn insert_expired(
    conn: &mut AsyncPgConnection,
    rows: &[NewOrderRow],
) -> QueryResult<Vec<Uuid>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let sale_ids: Vec<i64> = rows.iter().map(|r| r.sale_id).collect();
    let users: Vec<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
    let quantities: Vec<i32> = rows.iter().map(|r| r.quantity).collect();
    let amounts: Vec<i64> = rows.iter().map(|r| r.amount_minor).collect();
    let created: Vec<DateTime<Utc>> = rows.iter().map(|r| r.created_at).collect();
    let expires: Vec<DateTime<Utc>> = rows.iter().map(|r| r.expires_at).collect();
    let inserted: Vec<Id> = diesel::sql_query(
        "INSERT INTO orders (id, sale_id, user_id, quantity, amount_minor, status, created_at, expires_at) \
         SELECT u.id, u.sale_id, u.user_id, u.quantity, u.amount_minor, 'expired', u.created_at, u.expires_at \
         FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::int4[], $5::int8[], $6::timestamptz[], \
                     $7::timestamptz[]) AS u(id, sale_id, user_id, quantity, amount_minor, created_at, expires_at) \
         JOIN sales s ON s.id = u.sale_id \
         WHERE u.expires_at <= clock_timestamp() \
         ON CONFLICT (id) DO NOTHING \
         RETURNING id",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<BigInt>, _>(&sale_ids)
    .bind::<Array<Text>, _>(&users)
    .bind::<Array<Integer>, _>(&quantities)
    .bind::<Array<BigInt>, _>(&amounts)
    .bind::<Array<Timestamptz>, _>(&created)
    .bind::<Array<Timestamptz>, _>(&expires)
    .load(conn)
    .await?;
    Ok(inserted.into_iter().map(|r| r.id).collect())
}

/// A `pending_payment` order past its deadline, as the sweeper finds it.
#[derive(Debug, Clone, QueryableByName)]
pub struct OverdueRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = BigInt)]
    pub sale_id: i64,
    #[diesel(sql_type = Text)]
    pub user_id: String,
    #[diesel(sql_type = Integer)]
    pub quantity: i32,
    #[diesel(sql_type = BigInt)]
    pub amount_minor: i64,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub expires_at: DateTime<Utc>,
}

/// `pending_payment` orders whose deadline passed more than `grace_ms` ago, oldest first, at most `limit`.
/// Served by the partial index `orders_pending_by_deadline`, bounded by the deadline: the cut-off is taken from
/// `statement_timestamp()` (stable), not `clock_timestamp()` (volatile, so no index bound: every pass read
/// every pending order of every sale).
pub async fn overdue_pending(
    conn: &mut AsyncPgConnection,
    grace_ms: i64,
    limit: i64,
) -> QueryResult<Vec<OverdueRow>> {
    diesel::sql_query(
        "SELECT id, sale_id, user_id, quantity, amount_minor, created_at, expires_at FROM orders \
         WHERE status = 'pending_payment' \
           AND expires_at <= statement_timestamp() - $1 * interval '1 millisecond' \
         ORDER BY expires_at LIMIT $2",
    )
    .bind::<BigInt, _>(grace_ms)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

/// Which of these sales exist.
pub async fn existing_sales(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Sale {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let found: Vec<Sale> = diesel::sql_query("SELECT id FROM sales WHERE id = ANY($1)")
        .bind::<Array<BigInt>, _>(ids)
        .load(conn)
        .await?;
    Ok(found.into_iter().map(|s| s.id).collect())
}
