//! Queries on `sales`.

use crate::models::{NewSaleRow, SaleRow};
use crate::schema::sales;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use flashsale_domain::{NewSale, SaleId};

pub async fn insert(conn: &mut AsyncPgConnection, sale: &NewSale) -> QueryResult<SaleRow> {
    diesel::insert_into(sales::table)
        .values(NewSaleRow {
            product_name: &sale.product_name,
            price_minor: sale.price.minor(),
            total_stock: sale.total_stock,
            per_user_limit: i32::try_from(sale.per_user_limit).unwrap_or(i32::MAX),
            starts_at: sale.starts_at,
            ends_at: sale.ends_at,
            payment_window_secs: i32::try_from(sale.payment_window_secs).unwrap_or(i32::MAX),
        })
        .returning(SaleRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: SaleId) -> QueryResult<Option<SaleRow>> {
    sales::table
        .find(id.get())
        .select(SaleRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Sales that may still hold reservations: not ended, or ended less than one payment window ago.
pub async fn live(conn: &mut AsyncPgConnection) -> QueryResult<Vec<SaleRow>> {
    sales::table
        .filter(sql::<Bool>(
            "ends_at + payment_window_secs * interval '1 second' > now()",
        ))
        .select(SaleRow::as_select())
        .order(sales::id)
        .load(conn)
        .await
}

/// The payment windows of every sale that may still hold reservations: each needs its expiry wait queue.
pub async fn live_payment_windows(conn: &mut AsyncPgConnection) -> QueryResult<Vec<i32>> {
    sales::table
        .filter(sql::<Bool>(
            "ends_at + payment_window_secs * interval '1 second' > now()",
        ))
        .select(sales::payment_window_secs)
        .distinct()
        .load(conn)
        .await
}

/// Locks the sales of one batch (in id order, so concurrent writers never deadlock) and returns
/// `(id, total_stock, held)`.
pub async fn lock_stock(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
) -> QueryResult<Vec<(i64, i64, i64)>> {
    sales::table
        .filter(sales::id.eq_any(ids))
        .select((sales::id, sales::total_stock, sales::held))
        .order(sales::id)
        .for_update()
        .load(conn)
        .await
}

/// Adds to the units held by active orders; the CHECK constraint refuses anything past total_stock.
pub async fn add_held(conn: &mut AsyncPgConnection, id: i64, units: i64) -> QueryResult<usize> {
    diesel::update(sales::table.find(id))
        .set(sales::held.eq(sales::held + units))
        .execute(conn)
        .await
}
