//! Reads: reservations, a buyer's reservations, a sale's live counters, and the index of live sales.

use crate::client::{Stock, StockError};
use crate::keys::Tag;
use crate::model::{HeldReservation, SaleSnapshot};
use crate::reply;
use chrono::{TimeZone, Utc};
use flashsale_domain::{Money, OrderId, Sale, SaleId, UserId};
use redis::AsyncCommands;
use std::collections::HashMap;

impl Stock {
    /// Reads reservations of one sale (one stock shard of it) in one pipelined round trip; `None` where a
    /// record is gone.
    pub async fn reservations(
        &self,
        at: impl Into<Tag>,
        orders: &[OrderId],
    ) -> Result<Vec<Option<HeldReservation>>, StockError> {
        let at = at.into();
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for order in orders {
            pipe.hgetall(self.keys.reservation(at, *order));
        }
        let rows: Vec<HashMap<String, String>> =
            self.checked(pipe.query_async(&mut self.conn()).await)?;
        Ok(orders
            .iter()
            .zip(rows)
            .map(|(order, row)| held_from(at.sale, *order, &row))
            .collect())
    }

    /// Ids of the sales that may still hold reservations (their `live_until` lies ahead), from the index.
    pub async fn live_sale_ids(&self) -> Result<Vec<SaleId>, StockError> {
        let now = Utc::now().timestamp_millis();
        let raw: Vec<i64> = self.checked(
            self.conn()
                .zrangebyscore(self.keys.sales_index(), now, "+inf")
                .await,
        )?;
        let mut ids: Vec<SaleId> = raw
            .into_iter()
            .filter_map(|id| SaleId::new(id).ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The sale's live state; `None` when Redis holds no state for it (or only part of it). A sharded sale's
    /// `remaining` and `sold` are the sums over its shards.
    pub async fn snapshot(&self, sale: SaleId) -> Result<Option<SaleSnapshot>, StockError> {
        let shards = self.shards_of(sale).await?;
        let rows: Vec<(HashMap<String, String>, Option<i64>)> = self
            .per_group(&shards, |at| {
                let mut pipe = redis::pipe();
                pipe.hgetall(self.keys.sale(at)).get(self.keys.stock(at));
                pipe
            })
            .await?;
        let (mut remaining, mut sold) = (0, 0);
        for (fields, stock) in &rows {
            let Some(stock) = stock else { return Ok(None) };
            if fields.is_empty() {
                return Ok(None);
            }
            remaining += stock;
            sold += fields
                .get("sold")
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0);
        }
        let Some((first, _)) = rows.first() else {
            return Ok(None);
        };
        let mut snapshot = snapshot_from(sale, first, remaining).map_err(StockError::Reply)?;
        snapshot.sold = sold;
        Ok(Some(snapshot))
    }

    /// Finds a buyer's reservation by order id among the given sales (one read per sale, at the buyer's home
    /// shard, sent together). Used only while the order row is not yet written, so a fresh order never answers
    /// 404; another buyer's order is not found.
    pub async fn find_reservation(
        &self,
        order: OrderId,
        user: &UserId,
        sales: &[SaleId],
    ) -> Result<Option<HeldReservation>, StockError> {
        let homes = self.homes(user, sales).await?;
        let rows: Vec<(HashMap<String, String>,)> = self
            .per_group(&homes, |at| {
                let mut pipe = redis::pipe();
                pipe.hgetall(self.keys.reservation(at, order));
                pipe
            })
            .await?;
        Ok(homes
            .iter()
            .zip(rows)
            .find_map(|(at, (row,))| held_from(at.sale, order, &row)))
    }

    /// The buyer's reservations in the given sales, as Redis holds them.
    pub async fn reservations_of_buyer(
        &self,
        user: &UserId,
        sales: &[SaleId],
    ) -> Result<Vec<HeldReservation>, StockError> {
        let homes = self.homes(user, sales).await?;
        let held: Vec<(Option<String>,)> = self
            .per_group(&homes, |at| {
                let mut pipe = redis::pipe();
                pipe.hget(self.keys.buyers(at), user.as_str());
                pipe
            })
            .await?;
        let mut found = Vec::new();
        for (at, (order,)) in homes.iter().zip(held) {
            if let Some(order) = order.and_then(|o| o.parse::<OrderId>().ok())
                && let Some(Some(r)) = self.reservations(*at, &[order]).await?.pop()
            {
                found.push(r);
            }
        }
        Ok(found)
    }

    /// The buyer's home shard in each sale.
    async fn homes(&self, user: &UserId, sales: &[SaleId]) -> Result<Vec<Tag>, StockError> {
        let mut homes = Vec::with_capacity(sales.len());
        for sale in sales {
            homes.push(self.home(*sale, user).await?);
        }
        Ok(homes)
    }
}

fn held_from(
    sale: SaleId,
    order: OrderId,
    row: &HashMap<String, String>,
) -> Option<HeldReservation> {
    let get = |name: &str| row.get(name);
    Some(HeldReservation {
        order_id: order,
        sale,
        user: UserId::parse(get("user")?.clone()).ok()?,
        quantity: get("qty")?.parse().ok()?,
        amount: Money::from_minor(get("amount")?.parse().ok()?),
        created_at: reply::millis(get("created_ms")?.parse().ok()?).ok()?,
        expires_at: reply::millis(get("expires_ms")?.parse().ok()?).ok()?,
        state: get("state")?.parse().ok()?,
    })
}

fn snapshot_from(
    sale: SaleId,
    f: &HashMap<String, String>,
    remaining: i64,
) -> Result<SaleSnapshot, String> {
    fn num<T: std::str::FromStr>(f: &HashMap<String, String>, name: &str) -> Result<T, String> {
        f.get(name)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("sale hash field {name} missing or malformed"))
    }
    let created_micros: i64 = num(f, "incarnation")?;
    Ok(SaleSnapshot {
        sale: Sale {
            id: sale,
            product_name: f.get("product_name").cloned().unwrap_or_default(),
            price: Money::from_minor(num(f, "price_minor")?),
            total_stock: num(f, "total_stock")?,
            per_user_limit: num(f, "per_user_limit")?,
            starts_at: reply::millis(num(f, "starts_ms")?)?,
            ends_at: reply::millis(num(f, "ends_ms")?)?,
            payment_window_secs: num(f, "payment_window_secs")?,
            stock_shards: f
                .get("stock_shards")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            created_at: Utc
                .timestamp_micros(created_micros)
                .single()
                .ok_or_else(|| format!("incarnation {created_micros} out of range"))?,
        },
        remaining,
        sold: num(f, "sold")?,
    })
}
