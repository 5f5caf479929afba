//! Queries on `sales`.

use crate::models::{NewSaleRow, SaleRow};
use crate::schema::sales;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use flashsale_domain::{Money, NewSale, Sale, SaleId};

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
            stock_shards: i16::try_from(sale.stock_shards).unwrap_or(1),
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

/// `(id, total_stock, held)` of these sales, unlocked: what they were when the statement ran.
pub async fn stock(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<Vec<(i64, i64, i64)>> {
    sales::table
        .filter(sales::id.eq_any(ids))
        .select((sales::id, sales::total_stock, sales::held))
        .load(conn)
        .await
}

/// Adds to the units held by active orders if they still fit in the stock; returns 0 (and changes nothing)
/// if not. The row lock it takes lasts until the commit, and a concurrent update is waited for and checked
/// again, so two writers can never both take the last units.
pub async fn add_held_within_stock(
    conn: &mut AsyncPgConnection,
    id: i64,
    units: i64,
) -> QueryResult<usize> {
    diesel::update(
        sales::table
            .find(id)
            .filter((sales::held + units).le(sales::total_stock)),
    )
    .set(sales::held.eq(sales::held + units))
    .execute(conn)
    .await
}

/// Adds to the units held by active orders; the CHECK constraint refuses anything past total_stock.
pub async fn add_held(conn: &mut AsyncPgConnection, id: i64, units: i64) -> QueryResult<usize> {
    diesel::update(sales::table.find(id))
        .set(sales::held.eq(sales::held + units))
        .execute(conn)
        .await
}

impl SaleRow {
    /// The domain's sale. The table's CHECK constraints keep every narrowing in range.
    pub fn to_sale(&self) -> Result<Sale, String> {
        Ok(Sale {
            id: SaleId::new(self.id).map_err(|e| e.to_string())?,
            product_name: self.product_name.clone(),
            price: Money::from_minor(self.price_minor),
            total_stock: self.total_stock,
            per_user_limit: u32::try_from(self.per_user_limit).map_err(|e| e.to_string())?,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            payment_window_secs: u32::try_from(self.payment_window_secs)
                .map_err(|e| e.to_string())?,
            stock_shards: u16::try_from(self.stock_shards).map_err(|e| e.to_string())?,
            created_at: self.created_at,
        })
    }
}

/// The highest sale id issued so far (0 when there is none).
pub async fn max_id(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    use diesel::dsl::max;
    Ok(sales::table
        .select(max(sales::id))
        .first::<Option<i64>>(conn)
        .await?
        .unwrap_or(0))
}
