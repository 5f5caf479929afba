//! The paid transition (see the payment service): the order row's lock first, then the sale's `paid_count`.
//! Taking them in that order everywhere (expiry does too) keeps payment and expiry from deadlocking.

use crate::models::OrderRow;
use crate::schema::orders;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// The order row, locked until the transaction ends.
pub async fn lock_order(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<OrderRow>> {
    orders::table
        .find(id)
        .select(OrderRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Takes the sale's next shipping priority under its row lock; the time returned (`clock_timestamp()`, not the
/// transaction's start) is the order's `paid_at`, so priorities and `paid_at` increase together.
pub async fn next_priority(
    conn: &mut AsyncPgConnection,
    sale: i64,
) -> QueryResult<(i64, DateTime<Utc>)> {
    #[derive(QueryableByName)]
    struct Next {
        #[diesel(sql_type = BigInt)]
        paid_count: i64,
        #[diesel(sql_type = Timestamptz)]
        at: DateTime<Utc>,
    }
    let next: Next = diesel::sql_query(
        "UPDATE sales SET paid_count = paid_count + 1 WHERE id = $1 \
         RETURNING paid_count, clock_timestamp() AS at",
    )
    .bind::<BigInt, _>(sale)
    .get_result(conn)
    .await?;
    Ok((next.paid_count, next.at))
}

/// `pending_payment → paid`, only while the deadline lies ahead at this very moment; 1 when it happened.
pub async fn mark_paid(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    paid_at: DateTime<Utc>,
    priority: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE orders SET status = 'paid', paid_at = $2, shipping_priority = $3 \
         WHERE id = $1 AND status = 'pending_payment' AND expires_at > clock_timestamp()",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<Timestamptz, _>(paid_at)
    .bind::<BigInt, _>(priority)
    .execute(conn)
    .await
}
