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
    /// What a gateway needs to answer a sold-out or ended sale from memory, read in one MULTI so that nobody
    /// can become a holder between the reads.
    pub async fn gone_view(&self, sale: SaleId) -> Result<GoneView, StockError> {
        let (remaining, ends_ms, holders): (Option<i64>, Option<i64>, Vec<String>) = self.checked(
            redis::pipe()
                .atomic()
                .get(self.keys.stock(sale))
                .hget(self.keys.sale(sale), "ends_ms")
                .hkeys(self.keys.buyers(sale))
                .query_async(&mut self.conn())
                .await,
        )?;
        Ok(GoneView {
            remaining,
            ends_ms,
            holders,
        })
    }

    /// The remaining units of each sale, in order (`None`: no state), sent together.
    pub async fn remaining_of(&self, sales: &[SaleId]) -> Result<Vec<Option<i64>>, StockError> {
        let replies: Vec<(Option<i64>,)> = self
            .per_sale(sales, |sale| {
                let mut pipe = redis::pipe();
                pipe.get(self.keys.stock(sale));
                pipe
            })
            .await?;
        Ok(replies.into_iter().map(|(remaining,)| remaining).collect())
    }
}
