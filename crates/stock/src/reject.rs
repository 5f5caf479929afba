//! Clearing reservations the database refused (`reservation.rejected`), see `lua/reject.lua`.

use crate::client::{Stock, StockError};
use flashsale_domain::{OrderId, SaleId};

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
        order: OrderId,
        return_units: bool,
        active_order: Option<OrderId>,
    ) -> Result<RejectOutcome, StockError> {
        let k = &self.keys;
        let reply: String = self.checked(
            self.scripts
                .reject
                .key(k.reservation(sale, order))
                .key(k.stock(sale))
                .key(k.buyers(sale))
                .key(k.outbox(sale))
                .key(k.deadlines(sale))
                .key(k.sale(sale))
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
