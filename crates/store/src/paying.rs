//! The paid transition for a batch of webhook events (see the payment service), in a fixed lock order: the
//! orders' rows first, then the sales' rows (their `paid_count`). Expiry takes them in the same order, so
//! payment and expiry never deadlock, and every lock set is taken in id order, so concurrent batches neither.

use crate::models::OrderRow;
use crate::schema::{orders, sales};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The order rows, locked until the transaction ends.
pub async fn lock_orders(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<OrderRow>> {
    orders::table
        .filter(orders::id.eq_any(ids))
        .select(OrderRow::as_select())
        .order(orders::id)
        .for_update()
        .load(conn)
        .await
}

/// An order moved to `paid` by [`pay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paid {
    pub order_id: Uuid,
    pub paid_at: DateTime<Utc>,
    pub shipping_priority: i64,
}

/// Moves the orders (already locked by [`lock_orders`]) `pending_payment → paid`, each only while its
/// deadline lies ahead at that very moment, and gives them their sales' next shipping priorities; the orders
/// missing from the answer were not payable (their deadline passed).
///
/// The sales' rows are locked before any `paid_at` is taken, so across concurrent transactions priorities and
/// `paid_at` increase together; within the batch, priorities follow `paid_at` (`clock_timestamp()` per row),
/// then the order id.
pub async fn pay(conn: &mut AsyncPgConnection, orders: &[(Uuid, i64)]) -> QueryResult<Vec<Paid>> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let mut sale_ids: Vec<i64> = orders.iter().map(|o| o.1).collect();
    sale_ids.sort_unstable();
    sale_ids.dedup();
    sales::table
        .filter(sales::id.eq_any(&sale_ids))
        .select(sales::id)
        .order(sales::id)
        .for_update()
        .load::<i64>(conn)
        .await?;

    #[derive(QueryableByName)]
    struct Marked {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = BigInt)]
        sale_id: i64,
        #[diesel(sql_type = Timestamptz)]
        paid_at: DateTime<Utc>,
    }
    let ids: Vec<Uuid> = orders.iter().map(|o| o.0).collect();
    let mut marked: Vec<Marked> = diesel::sql_query(
        "UPDATE orders SET status = 'paid', paid_at = clock_timestamp() \
         WHERE id = ANY($1) AND status = 'pending_payment' AND expires_at > clock_timestamp() \
         RETURNING id, sale_id, paid_at",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .load(conn)
    .await?;
    if marked.is_empty() {
        return Ok(Vec::new());
    }
    marked.sort_by_key(|m| (m.paid_at, m.id));

    // The rank of each order among its sale's payments in this batch, 1-based.
    let mut ranks: BTreeMap<i64, i64> = BTreeMap::new();
    let rank: Vec<i64> = marked
        .iter()
        .map(|m| {
            let n = ranks.entry(m.sale_id).or_default();
            *n += 1;
            *n
        })
        .collect();
    #[derive(QueryableByName)]
    struct Prioritised {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = BigInt)]
        shipping_priority: i64,
    }
    let ids: Vec<Uuid> = marked.iter().map(|m| m.id).collect();
    let sale_of: Vec<i64> = marked.iter().map(|m| m.sale_id).collect();
    let given: Vec<Prioritised> = diesel::sql_query(
        "WITH n AS (SELECT * FROM unnest($1::uuid[], $2::int8[], $3::int8[]) AS n(id, sale_id, rank)), \
              k AS (SELECT sale_id, count(*) AS k FROM n GROUP BY sale_id), \
              s AS (UPDATE sales SET paid_count = sales.paid_count + k.k FROM k WHERE sales.id = k.sale_id \
                    RETURNING sales.id, sales.paid_count - k.k AS base) \
         UPDATE orders o SET shipping_priority = s.base + n.rank \
         FROM n JOIN s ON s.id = n.sale_id WHERE o.id = n.id \
         RETURNING o.id, o.shipping_priority",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<BigInt>, _>(&sale_of)
    .bind::<Array<BigInt>, _>(&rank)
    .load(conn)
    .await?;
    let priority: BTreeMap<Uuid, i64> = given
        .into_iter()
        .map(|p| (p.id, p.shipping_priority))
        .collect();
    Ok(marked
        .iter()
        .filter_map(|m| {
            Some(Paid {
                order_id: m.id,
                paid_at: m.paid_at,
                shipping_priority: *priority.get(&m.id)?,
            })
        })
        .collect())
}
