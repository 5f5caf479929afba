//! What the gateways' live stock feed reads: a sale's counters with their version, one sale or a page of sales
//! in one round trip, and the one Pub/Sub subscription that announces changes.
//!
//! Every script that changes `remaining` or `sold` raises the sale hash's `v` in the same script, so a version
//! read together with the counters names exactly that state. `warm.lua` starts `v` from the clock whenever it
//! writes the hash anew, so versions never go back after Redis lost or replaced a sale.

use crate::client::{Stock, StockError};
use flashsale_domain::SaleId;
use futures_util::{Stream, StreamExt};

/// A sale's counters as Redis holds them now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Raised by every change of `remaining` or `sold`.
    pub version: i64,
    pub remaining: i64,
    pub sold: i64,
}

/// A message on one of the two channels the gateway follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// Units came back to the sale (`<prefix>restock`): its counters changed too.
    Restocked(SaleId),
    /// The sale's counters changed without units coming back (`<prefix>counters`).
    Changed(SaleId),
}

impl Announcement {
    pub fn sale(self) -> SaleId {
        match self {
            Self::Restocked(s) | Self::Changed(s) => s,
        }
    }
}

type Row = (Option<i64>, Option<i64>, Option<i64>);

/// One sale's MULTI reply: `(v, sold)` of the sale hash, then the stock.
type CountersReply = ((Option<i64>, Option<i64>), Option<i64>);

fn counters_from((version, sold, remaining): Row) -> Option<Counters> {
    Some(Counters {
        version: version.unwrap_or(0),
        remaining: remaining?,
        sold: sold?,
    })
}

impl Stock {
    /// Subscribes, on one connection, to the restock and the counters channels. The stream ends when the
    /// connection is lost (announcements made meanwhile are lost with it).
    pub async fn announcements(
        &self,
    ) -> Result<impl Stream<Item = Announcement> + use<>, StockError> {
        let restock = self.keys.restock_channel();
        let mut pubsub = self.checked(self.pubsub().await)?;
        self.checked(
            pubsub
                .subscribe(&[restock.clone(), self.keys.counters_channel()])
                .await,
        )?;
        Ok(pubsub.into_on_message().filter_map(move |message| {
            let restocked = message.get_channel_name() == restock;
            async move {
                let raw: String = message.get_payload().ok()?;
                let sale = SaleId::new(raw.parse().ok()?).ok()?;
                Some(if restocked {
                    Announcement::Restocked(sale)
                } else {
                    Announcement::Changed(sale)
                })
            }
        }))
    }

    /// The sale's counters and their version, read atomically; `None` when Redis holds no state for it.
    pub async fn counters(&self, sale: SaleId) -> Result<Option<Counters>, StockError> {
        Ok(self.counters_of(&[sale]).await?.pop().flatten())
    }

    /// The counters of each sale, in order (`None`: no state), sent together; each shard's fields are read
    /// in one MULTI, so a version always names the counters read with it. A sharded sale's counters and
    /// version are the sums over its shards (each shard's version only rises, so the sum does too).
    pub async fn counters_of(&self, sales: &[SaleId]) -> Result<Vec<Option<Counters>>, StockError> {
        if sales.is_empty() {
            return Ok(Vec::new());
        }
        let shards = self.shards_of_all(sales).await?;
        let replies: Vec<CountersReply> = self
            .per_group(&shards, |at| {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .cmd("HMGET")
                    .arg(self.keys.sale(at))
                    .arg("v")
                    .arg("sold")
                    .get(self.keys.stock(at));
                pipe
            })
            .await?;
        let mut sums: Vec<Option<Counters>> = Vec::with_capacity(sales.len());
        for (at, ((version, sold), remaining)) in shards.iter().zip(replies) {
            let shard = counters_from((version, sold, remaining));
            if at.shard == 0 {
                sums.push(shard);
            } else if let Some(sum) = sums.last_mut() {
                *sum = match (*sum, shard) {
                    (Some(a), Some(b)) => Some(Counters {
                        version: a.version + b.version,
                        remaining: a.remaining + b.remaining,
                        sold: a.sold + b.sold,
                    }),
                    _ => None,
                };
            }
        }
        Ok(sums)
    }
}
