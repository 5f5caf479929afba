//! Queries on `orders`.

use crate::models::{NewOrderRow, OrderRow};
use crate::schema::orders;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use flashsale_domain::{OrderId, OrderStatus, SaleId, UserId};
use uuid::Uuid;

const ACTIVE: [OrderStatus; 2] = [OrderStatus::PendingPayment, OrderStatus::Paid];

pub async fn find(conn: &mut AsyncPgConnection, id: OrderId) -> QueryResult<Option<OrderRow>> {
    orders::table
        .find(id.as_uuid())
        .select(OrderRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A buyer's orders, newest first.
pub async fn of_buyer(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    limit: i64,
) -> QueryResult<Vec<OrderRow>> {
    orders::table
        .filter(orders::user_id.eq(user.as_str()))
        .select(OrderRow::as_select())
        .order((orders::created_at.desc(), orders::id.desc()))
        .limit(limit)
        .load(conn)
        .await
}

/// Which of these ids are already written, with their status (redeliveries and relay re-publishes).
/// One primary-key probe per id: `id = ANY($1)` with a batch of 2,000 ids was planned as a scan of the whole
/// table until it held hundreds of thousands of rows (each probe is priced as a random page read), so every
/// batch of a drop read every order written before it.
pub async fn statuses(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> QueryResult<Vec<(Uuid, OrderStatus)>> {
    use diesel::sql_types::{Array, Text, Uuid as SqlUuid};
    #[derive(QueryableByName)]
    struct Written {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = Text)]
        status: OrderStatus,
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // LIMIT 1 keeps the subquery a probe per id, as in `active_buyers`.
    let written: Vec<Written> = diesel::sql_query(
        "SELECT o.id, o.status FROM unnest($1::uuid[]) AS b(id) \
         CROSS JOIN LATERAL (SELECT id, status FROM orders WHERE orders.id = b.id LIMIT 1) AS o",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .load(conn)
    .await?;
    Ok(written.into_iter().map(|w| (w.id, w.status)).collect())
}

/// The active order of each of these `(sale_id, user_id)` pairs that has one, as `(sale_id, user_id, id)`.
/// One probe of `orders_one_active_per_buyer` per pair, so the cost follows the batch, not the sale: a filter
/// on `sale_id = ANY(..) AND user_id = ANY(..)` was planned as a scan of every active order of the sale
/// (100,000 rows read to answer 2,000 buyers, a batch of a big drop slower with each batch written before it).
pub async fn active_buyers(
    conn: &mut AsyncPgConnection,
    pairs: &[(i64, &str)],
) -> QueryResult<Vec<(i64, String, Uuid)>> {
    use diesel::sql_types::{Array, BigInt, Text, Uuid as SqlUuid};
    #[derive(QueryableByName)]
    struct Holder {
        #[diesel(sql_type = BigInt)]
        sale_id: i64,
        #[diesel(sql_type = Text)]
        user_id: String,
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let sales: Vec<i64> = pairs.iter().map(|(sale, _)| *sale).collect();
    let users: Vec<&str> = pairs.iter().map(|(_, user)| *user).collect();
    // LIMIT 1 keeps the subquery a per-pair index probe (the planner would otherwise hash the sale's orders);
    // the status list is the index's own predicate, written out so the partial index qualifies.
    let holders: Vec<Holder> = diesel::sql_query(
        "SELECT b.sale_id, b.user_id, o.id \
         FROM unnest($1::int8[], $2::text[]) AS b(sale_id, user_id) \
         CROSS JOIN LATERAL (SELECT id FROM orders \
                             WHERE orders.sale_id = b.sale_id AND orders.user_id = b.user_id \
                               AND orders.status IN ('pending_payment', 'paid') \
                             LIMIT 1) AS o",
    )
    .bind::<Array<BigInt>, _>(&sales)
    .bind::<Array<Text>, _>(&users)
    .load(conn)
    .await?;
    Ok(holders
        .into_iter()
        .map(|h| (h.sale_id, h.user_id, h.id))
        .collect())
}

/// Every active order of a sale: what Redis needs to rebuild the sale's reservations (per-buyer limit, units
/// sold, deadlines) after it lost its state.
pub async fn active_of_sale(
    conn: &mut AsyncPgConnection,
    sale: SaleId,
) -> QueryResult<Vec<OrderRow>> {
    orders::table
        .filter(orders::sale_id.eq(sale.get()))
        .filter(orders::status.eq_any(ACTIVE))
        .select(OrderRow::as_select())
        .load(conn)
        .await
}

/// Inserts many orders in one statement and returns the ids actually inserted. Only a row whose id exists
/// already is skipped (idempotent on redelivery); a conflict on any other unique index (a second active
/// order of one buyer) raises, so it can never pass for written. Callers count `held` from the returned ids.
/// The columns travel as eight arrays through `unnest`: one statement of fixed shape whatever the batch size,
/// instead of a VALUES list of eight parameters a row that PostgreSQL parses and plans anew each time.
pub async fn insert_many(
    conn: &mut AsyncPgConnection,
    rows: &[NewOrderRow],
) -> QueryResult<Vec<Uuid>> {
    use diesel::sql_types::{Array, BigInt, Integer, Text, Timestamptz, Uuid as SqlUuid};
    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    if rows.is_empty() {
        return Ok(Vec::new());
    }

    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let sale_ids: Vec<i64> = rows.iter().map(|r| r.sale_id).collect();
    let users: Vec<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
    let quantities: Vec<i32> = rows.iter().map(|r| r.quantity).collect();
    let amounts: Vec<i64> = rows.iter().map(|r| r.amount_minor).collect();
    let statuses: Vec<OrderStatus> = rows.iter().map(|r| r.status).collect();
    let created: Vec<DateTime<Utc>> = rows.iter().map(|r| r.created_at).collect();
    let expires: Vec<DateTime<Utc>> = rows.iter().map(|r| r.expires_at).collect();
    let inserted: Vec<Inserted> = diesel::sql_query(
        "INSERT INTO orders (id, sale_id, user_id, quantity, amount_minor, status, created_at, expires_at) \
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::text[], $4::int4[], $5::int8[], $6::text[], \
                              $7::timestamptz[], $8::timestamptz[]) \
         ON CONFLICT (id) DO NOTHING \
         RETURNING id",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<BigInt>, _>(&sale_ids)
    .bind::<Array<Text>, _>(&users)
    .bind::<Array<Integer>, _>(&quantities)
    .bind::<Array<BigInt>, _>(&amounts)
    .bind::<Array<Text>, _>(&statuses)
    .bind::<Array<Timestamptz>, _>(&created)
    .bind::<Array<Timestamptz>, _>(&expires)
    .load(conn)
    .await?;
    Ok(inserted.into_iter().map(|r| r.id).collect())
}
