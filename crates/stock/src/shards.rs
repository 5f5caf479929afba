//! Stock shards: a hot sale split over N key groups, each with a hash tag of its own (`{sale:<id>}` for shard 0,
//! `{sale:<id>:<k>}` for shard k), so on Redis Cluster one sale's reservations spread over N primaries.
//!
//! Every buyer has a home shard, a stable hash of their user id (CRC-32, modulo N): their rate bucket,
//! Idempotency-Keys, buyer entry and reservations all live there, so the per-buyer limit is checked in one
//! script as with one shard. When the home shard runs out, units move to it instead of the buyer moving
//! away: `lend.lua` takes them from a donor shard and records the transfer there; the home shard takes them in
//! once per transfer id (`reserve.lua` for the buyer who asked, `receive.lua` from the relay's repair pass for
//! transfers a gateway lent and then died). SOLD_OUT is answered only after every donor was found empty.
//!
//! The shard count is fixed when the sale is created; every shard's sale hash carries it (`stock_shards`), and
//! each process remembers it per sale after the first read.

use crate::client::{Stock, StockError};
use crate::keys::Tag;
use flashsale_domain::{SaleId, UserId};
use redis::AsyncCommands;
use std::time::Duration;

/// A transfer lent by a donor and not yet taken in by its home shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub donor: Tag,
    pub home: Tag,
    pub units: u32,
    pub id: String,
}

impl Transfer {
    /// The donor's `lent` member: `home|units|id`.
    fn member(&self) -> String {
        format!("{}|{}|{}", self.home.shard, self.units, self.id)
    }

    fn parse(donor: Tag, member: &str) -> Option<Self> {
        let mut parts = member.splitn(3, '|');
        let home = parts.next()?.parse().ok()?;
        let units = parts.next()?.parse().ok()?;
        let id = parts.next()?.to_owned();
        Some(Self {
            donor,
            home: Tag::new(donor.sale, home),
            units,
            id,
        })
    }
}

/// The home shard of a buyer in a sale of `shards` shards: stable across processes and versions.
pub fn home_shard(user: &UserId, shards: u16) -> u16 {
    if shards <= 1 {
        return 0;
    }
    u16::try_from(crc32fast::hash(user.as_str().as_bytes()) % u32::from(shards)).unwrap_or(0)
}

impl Stock {
    /// Remembers a sale's shard count (known at creation and warm-up), saving the first read.
    pub fn remember_shards(&self, sale: SaleId, shards: u16) {
        if let Ok(mut map) = self.shards.write() {
            map.insert(sale, shards.max(1));
        }
    }

    /// The sale's shard count: remembered, or read from shard 0's sale hash once. A sale Redis holds nothing
    /// of counts as one shard and is not remembered (its scripts answer that the state is missing).
    pub async fn shard_count(&self, sale: SaleId) -> Result<u16, StockError> {
        if let Some(n) = self.shards.read().ok().and_then(|m| m.get(&sale).copied()) {
            return Ok(n);
        }
        let (id, shards): (Option<String>, Option<u16>) = self.checked(
            redis::cmd("HMGET")
                .arg(self.keys.sale(sale))
                .arg("sale_id")
                .arg("stock_shards")
                .query_async(&mut self.conn())
                .await,
        )?;
        if id.is_none() {
            return Ok(1);
        }
        let n = shards.unwrap_or(1).max(1);
        self.remember_shards(sale, n);
        Ok(n)
    }

    /// Every shard of the sale.
    pub async fn shards_of(&self, sale: SaleId) -> Result<Vec<Tag>, StockError> {
        let n = self.shard_count(sale).await?;
        Ok((0..n).map(|k| Tag::new(sale, k)).collect())
    }

    /// Every shard of every sale, sale by sale in the order given.
    pub(crate) async fn shards_of_all(&self, sales: &[SaleId]) -> Result<Vec<Tag>, StockError> {
        let mut all = Vec::with_capacity(sales.len());
        for sale in sales {
            all.extend(self.shards_of(*sale).await?);
        }
        Ok(all)
    }

    /// The buyer's home shard in the sale.
    pub async fn home(&self, sale: SaleId, user: &UserId) -> Result<Tag, StockError> {
        let n = self.shard_count(sale).await?;
        Ok(Tag::new(sale, home_shard(user, n)))
    }

    /// Asks `donor` for units for `home`; `None` when the donor has none (or no state).
    pub(crate) async fn lend(
        &self,
        donor: Tag,
        home: Tag,
        units: u32,
    ) -> Result<Option<Transfer>, StockError> {
        let id = uuid::Uuid::now_v7().to_string();
        let k = &self.keys;
        let reply: Vec<String> = self.checked(
            self.scripts
                .lend
                .key(k.sale(donor))
                .key(k.stock(donor))
                .key(k.lent(donor))
                .arg(&id)
                .arg(home.shard)
                .arg(units)
                .invoke_async(&mut self.conn())
                .await,
        )?;
        match reply.first().map(String::as_str) {
            Some("LENT") => {
                let units = reply
                    .get(1)
                    .and_then(|u| u.parse().ok())
                    .ok_or_else(|| StockError::Reply(format!("lend answered {reply:?}")))?;
                Ok(Some(Transfer {
                    donor,
                    home,
                    units,
                    id,
                }))
            }
            Some("EMPTY" | "MISSING") => Ok(None),
            _ => Err(StockError::Reply(format!("lend answered {reply:?}"))),
        }
    }

    /// Takes a transfer in at its home shard (at most once); false when the home shard holds no state.
    pub(crate) async fn receive(&self, t: &Transfer) -> Result<bool, StockError> {
        let k = &self.keys;
        let reply: String = self.checked(
            self.scripts
                .receive
                .key(k.sale(t.home))
                .key(k.stock(t.home))
                .key(k.received(t.home))
                .arg(&t.id)
                .arg(t.units)
                .arg(k.restock_channel())
                .arg(t.home.sale.get())
                .invoke_async(&mut self.conn())
                .await,
        )?;
        match reply.as_str() {
            "RECEIVED" | "ALREADY" => Ok(true),
            "MISSING" => Ok(false),
            other => Err(StockError::Reply(format!("receive answered {other:?}"))),
        }
    }

    /// Forgets a transfer at its donor once the home shard took it in.
    pub(crate) async fn settle_transfer(&self, t: &Transfer) -> Result<(), StockError> {
        let _: i64 = self.checked(self.conn().zrem(self.keys.lent(t.donor), t.member()).await)?;
        Ok(())
    }

    /// The repair pass over one sale: every transfer lent longer than `age` ago and still recorded at its
    /// donor is taken in at its home (idempotently) and forgotten. Returns how many were repaired.
    pub async fn repair_transfers(&self, sale: SaleId, age: Duration) -> Result<usize, StockError> {
        let shards = self.shards_of(sale).await?;
        if shards.len() < 2 {
            return Ok(0);
        }
        let before = chrono::Utc::now().timestamp_millis()
            - i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
        let mut repaired = 0;
        for donor in shards {
            let members: Vec<String> = self.checked(
                self.conn()
                    .zrangebyscore(self.keys.lent(donor), "-inf", before)
                    .await,
            )?;
            for t in members.iter().filter_map(|m| Transfer::parse(donor, m)) {
                if self.receive(&t).await? {
                    self.settle_transfer(&t).await?;
                    repaired += 1;
                }
            }
        }
        Ok(repaired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_shards_are_stable_and_spread() {
        let user = |s: &str| UserId::parse(s).expect("valid user id");
        assert_eq!(home_shard(&user("ada"), 1), 0);
        // CRC-32 ("ada" = 2372962152) is fixed forever: a change here would move every buyer of a live sale.
        assert_eq!(crc32fast::hash(b"ada"), 2_372_962_152);
        assert_eq!(home_shard(&user("ada"), 4), 0);
        assert_eq!(home_shard(&user("ada"), 5), 2);
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[usize::from(home_shard(&user(&format!("buyer-{i}")), 4))] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn transfers_round_trip_through_their_member() {
        let sale = SaleId::new(7).expect("positive");
        let t = Transfer {
            donor: Tag::new(sale, 2),
            home: Tag::new(sale, 1),
            units: 3,
            id: "0190-abc".into(),
        };
        assert_eq!(Transfer::parse(t.donor, &t.member()), Some(t));
        assert_eq!(Transfer::parse(Tag::new(sale, 0), "junk"), None);
    }
}
