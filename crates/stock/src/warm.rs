//! Warming: a sale's Redis state written from its PostgreSQL record, and the index of live sales that the
//! relay and the warmer walk (a sorted set scored by each sale's `live_until`, so ended sales drop out).

use crate::client::{Stock, StockError};
use crate::model::{SaleWarmup, Warmed};
use chrono::{Duration as ChronoDuration, Utc};
use flashsale_domain::{Sale, SaleId};

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
    pub async fn warm(
        &self,
        w: &SaleWarmup,
        may_restore_stock: bool,
    ) -> Result<Warmed, StockError> {
        let s = &w.sale;
        self.index_live(&[s]).await?;
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
            ("sold", "0".to_owned()),
        ];
        let sold: i64 = w
            .holds
            .iter()
            .filter(|h| h.paid)
            .map(|h| i64::from(h.quantity))
            .sum();
        let mut invocation = self.scripts.warm.prepare_invoke();
        invocation
            .key(self.keys.sale(s.id))
            .key(self.keys.stock(s.id))
            .key(self.keys.buyers(s.id))
            .key(self.keys.outbox(s.id))
            .key(self.keys.deadlines(s.id))
            .arg(s.created_at.timestamp_micros())
            .arg(w.remaining)
            .arg(self.keys_expire_at_ms(s))
            .arg(if may_restore_stock { "1" } else { "0" })
            .arg(fields.len() * 2)
            .arg(self.keys.restock_channel())
            .arg(s.id.get());
        for (field, value) in &fields {
            invocation.arg(field).arg(value);
        }
        invocation.arg(sold).arg(self.keys.reservation_prefix(s.id));
        for h in &w.holds {
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

    /// True when Redis holds both the sale hash and the stock of this sale.
    pub async fn is_live(&self, sale: SaleId) -> Result<bool, StockError> {
        let n: i64 = self.checked(
            redis::cmd("EXISTS")
                .arg(self.keys.sale(sale))
                .arg(self.keys.stock(sale))
                .query_async(&mut self.conn())
                .await,
        )?;
        Ok(n == 2)
    }
}
