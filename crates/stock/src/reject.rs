//! Clearing reservations the database refused (`reservation.rejected`), see `lua/reject.lua`.

use crate::client::{Stock, StockError};
use flashsale_domain::{OrderId, SaleId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectOutcome {
    Cleared,
    /// Already cleared, or Redis never held it (it was lost with the state the rejection stems from).
    NotHeld,
}

impl Stock {
    /// `return_units`: the refusal proves Redis counted these units nowhere else (buyer already active).
    /// `active_order`: the buyer's active order, which their entry should name from now on.
    pub async fn clear_rejected(
        &self,
        sale: SaleId,
        user: &UserId,
        order: OrderId,
        return_units: bool,
        active_order: Option<OrderId>,
    ) -> Result<RejectOutcome, StockError> {
        let k = &self.keys;
        let at = self.home(sale, user).await?;
        let reply: String = self.checked(
            self.scripts
                .reject
                .key(k.reservation(at, order))
                .key(k.stock(at))
                .key(k.buyers(at))
                .key(k.outbox(at))
                .key(k.deadlines(at))
                .key(k.sale(at))
                .arg(order.to_string())
                .arg(if return_units { "1" } else { "0" })
                .arg(active_order.map(|o| o.to_string()).unwrap_or_default())
                .arg(k.restock_channel())
                .arg(sale.get())
                .invoke_async(&mut self.conn())
                .await,
        )?;
        match reply.as_str() {
            "CLEARED" => Ok(RejectOutcome::Cleared),
            "NOT_HELD" => Ok(RejectOutcome::NotHeld),
            other => Err(StockError::Reply(format!("reject answered {other:?}"))),
        }
    }
}
