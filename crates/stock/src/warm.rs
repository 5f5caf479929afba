//! Warming: a sale's Redis state written from its PostgreSQL record, and the index of live sales that the
//! relay and the warmer walk (a sorted set scored by each sale's `live_until`, so ended sales drop out).

use crate::client::{Stock, StockError};
use crate::keys::Tag;
use crate::model::{SaleWarmup, Warmed};
use crate::shards::home_shard;
use chrono::{Duration as ChronoDuration, Utc};
use flashsale_domain::{Sale, SaleId};
use futures_util::future::join_all;

impl Stock {
    /// When every key of the sale ends: its last possible reservation, plus `redis.retention_secs`.
    pub fn keys_expire_at_ms(&self, sale: &Sale) -> i64 {
        let retention = ChronoDuration::from_std(self.retention).unwrap_or(ChronoDuration::MAX);
        sale.live_until()
            .checked_add_signed(retention)
            .unwrap_or(sale.live_until())
            .timestamp_millis()
    }

    /// Makes a sale live. The index entry is written first, so a sale can never accept reservations while
    /// the relay and the order look-up cannot see it. Missing stock is restored only if `may_restore_stock`
    /// (see `warm.lua`); otherwise the answer is [`Warmed::Waiting`] and nothing but the index is written.
    ///
    /// A sharded sale is warmed shard by shard: each active order goes to its buyer's home shard, and the
    /// units left are split evenly over the shards whose stock is missing, after what the live shards still
    /// hold (all of them for a new sale).
    pub async fn warm(
        &self,
        w: &SaleWarmup,
        may_restore_stock: bool,
    ) -> Result<Warmed, StockError> {
        let s = &w.sale;
        self.index_live(&[s]).await?;
        let n = s.stock_shards.max(1);
        self.remember_shards(s.id, n);
        let shards: Vec<Tag> = (0..n).map(|k| Tag::new(s.id, k)).collect();
        let shares = if n == 1 {
            vec![w.remaining]
        } else {
            self.shares(w, &shards).await?
        };
        let replies = join_all(
            shards
                .iter()
                .zip(shares)
                .map(|(at, share)| self.warm_shard(w, *at, share, may_restore_stock)),
        )
        .await;
        let mut warmed = Vec::with_capacity(replies.len());
        for reply in replies {
            warmed.push(reply?);
        }
        Ok(if warmed.contains(&Warmed::Waiting) {
            Warmed::Waiting
        } else if warmed.contains(&Warmed::ReplacedStale) {
            Warmed::ReplacedStale
        } else if warmed.iter().all(|w| *w == Warmed::AlreadyLive) {
            Warmed::AlreadyLive
        } else {
            Warmed::Written
        })
    }

    /// What each shard's stock becomes if it is missing: `remaining` less what live shards of this
    /// incarnation hold, split evenly over the others (a live shard's stock is never touched; a shard left by
    /// an earlier database under this id is replaced whole, so it counts as missing).
    async fn shares(&self, w: &SaleWarmup, shards: &[Tag]) -> Result<Vec<i64>, StockError> {
        let incarnation = w.sale.created_at.timestamp_micros().to_string();
        let stocks: Vec<(Option<i64>, Option<String>)> = self
            .per_group(shards, |at| {
                let mut pipe = redis::pipe();
                pipe.get(self.keys.stock(at))
                    .hget(self.keys.sale(at), "incarnation");
                pipe
            })
            .await?;
        let live_stock = |(n, inc): &(Option<i64>, Option<String>)| {
            n.filter(|_| inc.as_deref() == Some(incarnation.as_str()))
        };
        let live: i64 = stocks.iter().filter_map(live_stock).sum();
        let missing: Vec<usize> = (0..stocks.len())
            .filter(|i| live_stock(&stocks[*i]).is_none())
            .collect();
        let remaining = w.remaining;
        let left = (remaining - live).max(0);
        let mut shares = vec![0; shards.len()];
        let m = i64::try_from(missing.len()).unwrap_or(1).max(1);
        for (rank, i) in (0i64..).zip(&missing) {
            shares[*i] = left / m + i64::from(rank < left % m);
        }
        Ok(shares)
    }

    /// `warm.lua` on one shard, with the active orders homed there.
    async fn warm_shard(
        &self,
        w: &SaleWarmup,
        at: Tag,
        remaining: i64,
        may_restore_stock: bool,
    ) -> Result<Warmed, StockError> {
        let s = &w.sale;
        let n = s.stock_shards.max(1);
        let holds: Vec<_> = w
            .holds
            .iter()
            .filter(|h| home_shard(&h.user, n) == at.shard)
            .collect();
        let fields = [
            ("sale_id", s.id.get().to_string()),
            ("product_name", s.product_name.clone()),
            ("price_minor", s.price.minor().to_string()),
            ("total_stock", s.total_stock.to_string()),
            ("per_user_limit", s.per_user_limit.to_string()),
            ("payment_window_secs", s.payment_window_secs.to_string()),
            ("starts_ms", s.starts_at.timestamp_millis().to_string()),
            ("ends_ms", s.ends_at.timestamp_millis().to_string()),
            ("incarnation", s.created_at.timestamp_micros().to_string()),
            ("expire_ms", self.keys_expire_at_ms(s).to_string()),
            ("stock_shards", n.to_string()),
            ("sold", "0".to_owned()),
        ];
        let sold: i64 = holds
            .iter()
            .filter(|h| h.paid)
            .map(|h| i64::from(h.quantity))
            .sum();
        let mut invocation = self.scripts.warm.prepare_invoke();
        invocation
            .key(self.keys.sale(at))
            .key(self.keys.stock(at))
            .key(self.keys.buyers(at))
            .key(self.keys.outbox(at))
            .key(self.keys.deadlines(at))
            .arg(s.created_at.timestamp_micros())
            .arg(remaining)
            .arg(self.keys_expire_at_ms(s))
            .arg(if may_restore_stock { "1" } else { "0" })
            .arg(fields.len() * 2)
            .arg(self.keys.restock_channel())
            .arg(s.id.get());
        for (field, value) in &fields {
            invocation.arg(field).arg(value);
        }
        invocation.arg(sold).arg(self.keys.reservation_prefix(at));
        for h in holds {
            invocation
                .arg(h.order_id.to_string())
                .arg(h.user.as_str())
                .arg(h.quantity)
                .arg(h.amount.minor())
                .arg(h.created_at.timestamp_millis())
                .arg(h.expires_at.timestamp_millis())
                .arg(if h.paid { "paid" } else { "held" });
        }
        let reply: String = self.checked(invocation.invoke_async(&mut self.conn()).await)?;
        match reply.as_str() {
            "WRITTEN" => Ok(Warmed::Written),
            "LIVE" => Ok(Warmed::AlreadyLive),
            "REPLACED" => Ok(Warmed::ReplacedStale),
            "WAIT" => Ok(Warmed::Waiting),
            other => Err(StockError::Reply(format!("warm answered {other:?}"))),
        }
    }

    /// Puts these sales in the index of live sales (again) and drops every sale whose `live_until` has passed.
    pub async fn index_live(&self, sales: &[&Sale]) -> Result<(), StockError> {
        let index = self.keys.sales_index();
        let mut pipe = redis::pipe();
        for s in sales {
            pipe.zadd(&index, s.id.get(), s.live_until().timestamp_millis())
                .ignore();
        }
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(format!("({}", Utc::now().timestamp_millis()))
            .ignore();
        let () = self.checked(pipe.query_async(&mut self.conn()).await)?;
        Ok(())
    }

    /// True when Redis holds both the sale hash and the stock of this sale (of every shard of it).
    pub async fn is_live(&self, sale: SaleId) -> Result<bool, StockError> {
        let shards = self.shards_of(sale).await?;
        let found: Vec<(i64,)> = self
            .per_group(&shards, |at| {
                let mut pipe = redis::pipe();
                pipe.cmd("EXISTS")
                    .arg(self.keys.sale(at))
                    .arg(self.keys.stock(at));
                pipe
            })
            .await?;
        Ok(found.iter().all(|(n,)| *n == 2))
    }
}
