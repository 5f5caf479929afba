//! What a gateway needs to answer SOLD_OUT from memory and stop doing so the moment units come back: the
//! scripts that return units (`expire.lua`, `cancel.lua`, `reject.lua`) publish the sale's id on one Pub/Sub
//! channel (`<prefix>restock`, followed through `Stock::announcements`); a sold-out sale's holders and remaining
//! units are read together.

use crate::client::{Stock, StockError};
use flashsale_domain::SaleId;

/// A sale's state as far as answering from memory goes.
#[derive(Debug, Clone)]
pub struct GoneView {
    /// Units left; `None` when Redis holds no state for the sale.
    pub remaining: Option<i64>,
    /// The end of the sale window (Unix ms).
    pub ends_ms: Option<i64>,
    /// Users holding an active order in the sale.
    pub holders: Vec<String>,
}

impl Stock {
    /// What a gateway needs to answer a sold-out or ended sale from memory, each shard read in one MULTI so
    /// that nobody can become a holder there between the reads (a sharded sale sums its shards' remaining
    /// units and joins their holders).
    pub async fn gone_view(&self, sale: SaleId) -> Result<GoneView, StockError> {
        let shards = self.shards_of(sale).await?;
        let rows: Vec<(Option<i64>, Option<i64>, Vec<String>)> = self
            .per_group(&shards, |at| {
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .get(self.keys.stock(at))
                    .hget(self.keys.sale(at), "ends_ms")
                    .hkeys(self.keys.buyers(at));
                pipe
            })
            .await?;
        let mut view = GoneView {
            remaining: Some(0),
            ends_ms: None,
            holders: Vec::new(),
        };
        for (remaining, ends_ms, holders) in rows {
            view.remaining = view.remaining.zip(remaining).map(|(a, b)| a + b);
            view.ends_ms = view.ends_ms.or(ends_ms);
            view.holders.extend(holders);
        }
        Ok(view)
    }

    /// The remaining units of each sale, in order (`None`: no state), sent together; a sharded sale's are
    /// the sum over its shards.
    pub async fn remaining_of(&self, sales: &[SaleId]) -> Result<Vec<Option<i64>>, StockError> {
        let shards = self.shards_of_all(sales).await?;
        let replies: Vec<(Option<i64>,)> = self
            .per_group(&shards, |at| {
                let mut pipe = redis::pipe();
                pipe.get(self.keys.stock(at));
                pipe
            })
            .await?;
        let mut sums: Vec<Option<i64>> = Vec::with_capacity(sales.len());
        for (at, (remaining,)) in shards.iter().zip(replies) {
            if at.shard == 0 {
                sums.push(remaining);
            } else if let Some(sum) = sums.last_mut() {
                *sum = sum.zip(remaining).map(|(a, b)| a + b);
            }
        }
        Ok(sums)
    }
}
