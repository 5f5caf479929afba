//! The outbox of each sale (each stock shard of it): entries removed once the broker confirmed, and claimed by the relay when stale.

use crate::client::{Stock, StockError};
use crate::keys::Tag;
use flashsale_domain::OrderId;
use redis::AsyncCommands;
use std::time::Duration;

impl Stock {
    /// Removes outbox entries whose message the broker confirmed.
    pub async fn confirmed(
        &self,
        at: impl Into<Tag>,
        orders: &[OrderId],
    ) -> Result<(), StockError> {
        if orders.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = orders.iter().map(ToString::to_string).collect();
        let _: i64 = self.checked(self.conn().zrem(self.keys.outbox(at), ids).await)?;
        Ok(())
    }

    /// Claims outbox entries older than `age` for re-publishing.
    pub async fn claim_stale(
        &self,
        at: impl Into<Tag>,
        age: Duration,
        limit: usize,
    ) -> Result<Vec<OrderId>, StockError> {
        let ids: Vec<String> = self.checked(
            self.scripts
                .claim
                .key(self.keys.outbox(at))
                .arg(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
                .arg(limit)
                .invoke_async(&mut self.conn())
                .await,
        )?;
        ids.iter()
            .map(|id| {
                id.parse()
                    .map_err(|_| StockError::Reply(format!("outbox holds {id:?}")))
            })
            .collect()
    }
}
