//! Every Redis key flashsale uses is built here and nowhere else.
//!
//! All keys of one sale share the hash tag `{sale:<id>}`, so on Redis Cluster they live on one slot and a
//! script may touch them together. A sale split into stock shards has one such key group per shard: shard 0
//! keeps `{sale:<id>}`, shard k > 0 is `{sale:<id>:<k>}` (see `shards.rs`). The prefix (`fs:` by default)
//! isolates tests and tenants.

use flashsale_domain::{OrderId, SaleId, UserId};

/// One key group: a sale, or one stock shard of it. A plain `SaleId` is its shard 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    pub sale: SaleId,
    pub shard: u16,
}

impl Tag {
    pub const fn new(sale: SaleId, shard: u16) -> Self {
        Self { sale, shard }
    }
}

impl From<SaleId> for Tag {
    fn from(sale: SaleId) -> Self {
        Self::new(sale, 0)
    }
}

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn of_sale(&self, at: impl Into<Tag>, suffix: &str) -> String {
        let at = at.into();
        match at.shard {
            0 => format!("{}{{sale:{}}}:{suffix}", self.prefix, at.sale.get()),
            k => format!("{}{{sale:{}:{k}}}:{suffix}", self.prefix, at.sale.get()),
        }
    }

    /// Pub/Sub channel on which the scripts that return units to a sale announce its id, so that gateways
    /// answering SOLD_OUT from memory sell them again at once.
    pub fn restock_channel(&self) -> String {
        format!("{}restock", self.prefix)
    }

    /// Pub/Sub channel on which the scripts that change a sale's counters without returning units (reserve, pay)
    /// announce its id, so that gateways with live-feed listeners re-read them (units that come back are
    /// announced on the restock channel, which the live feed follows too).
    pub fn counters_channel(&self) -> String {
        format!("{}counters", self.prefix)
    }

    /// Hash: the sale's static fields (window, limit, price, ...) and `sold`.
    pub fn sale(&self, sale: impl Into<Tag>) -> String {
        self.of_sale(sale, "sale")
    }

    /// String: units still available.
    pub fn stock(&self, sale: impl Into<Tag>) -> String {
        self.of_sale(sale, "stock")
    }

    /// Hash: user id → order id of the buyer's active order.
    pub fn buyers(&self, sale: impl Into<Tag>) -> String {
        self.of_sale(sale, "buyers")
    }

    /// Sorted set: order ids whose `reservation.created` is not yet confirmed, scored by last publish attempt.
    pub fn outbox(&self, sale: impl Into<Tag>) -> String {
        self.of_sale(sale, "outbox")
    }

    /// Sorted set: order ids of reservations still `held`, scored by their deadline (`expires_ms`). The expiry
    /// sweeper finds overdue reservations here whose message never reached it; paying, expiring, cancelling or
    /// rejecting a reservation removes it.
    pub fn deadlines(&self, sale: impl Into<Tag>) -> String {
        self.of_sale(sale, "deadlines")
    }

    /// Hash: one reservation (user, qty, amount, created_ms, expires_ms, state).
    pub fn reservation(&self, sale: impl Into<Tag>, order: OrderId) -> String {
        format!("{}{order}", self.reservation_prefix(sale))
    }

    /// What every reservation key of the sale starts with (the warm script appends order ids).
    pub fn reservation_prefix(&self, sale: impl Into<Tag>) -> String {
        self.of_sale(sale, "res:")
    }

    /// Hash: the buyer's token bucket in this sale.
    pub fn buyer_rate(&self, sale: impl Into<Tag>, user: &UserId) -> String {
        self.of_sale(sale, &format!("rate:user:{user}"))
    }

    /// String: the first 202 of (buyer, sale, Idempotency-Key). The key has no ':' so the name is unambiguous.
    pub fn idempotency(&self, sale: impl Into<Tag>, user: &UserId, key: &str) -> String {
        self.of_sale(sale, &format!("idem:{user}:{key}"))
    }

    /// Sorted set on a donor shard: transfers lent to another shard and not yet known taken in there
    /// (`home|units|transfer id`, scored by when they were lent).
    pub fn lent(&self, at: Tag) -> String {
        self.of_sale(at, "lent")
    }

    /// Set on a home shard: the transfer ids it has taken in, so a transfer is applied at most once.
    pub fn received(&self, at: Tag) -> String {
        self.of_sale(at, "received")
    }

    /// Sorted set of warmed sale ids scored by `live_until` (ms): what the relay, the warmer and the order
    /// look-up walk; ended sales drop out. Not tagged: it spans sales.
    pub fn sales_index(&self) -> String {
        format!("{}sales:live", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sale_keys_share_one_hash_tag() {
        let keys = Keys::new("fs:");
        let sale = SaleId::new(42).expect("positive");
        assert_eq!(keys.stock(sale), "fs:{sale:42}:stock");
        for key in [
            keys.sale(sale),
            keys.buyers(sale),
            keys.outbox(sale),
            keys.deadlines(sale),
        ] {
            assert!(key.starts_with("fs:{sale:42}:"), "{key}");
        }
        assert_eq!(keys.stock(Tag::new(sale, 0)), "fs:{sale:42}:stock");
        assert_eq!(keys.stock(Tag::new(sale, 3)), "fs:{sale:42:3}:stock");
    }
}
