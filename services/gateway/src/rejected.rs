//! Clearing what the database refused: each `reservation.rejected` (order-writer's stock guard wrote the order
//! `rejected` because Redis had lost writes) is cleared from Redis by one gateway, so the buyer is no longer
//! blocked by it and `remaining + units of active orders = total_stock` again once the queues drain.
//!
//! Consumes `<prefix>gateway.rejected` (competing consumers: every gateway attaches, each message is handled
//! once; `reject.lua` is idempotent for the redeliveries).

use flashsale_broker::{BatchHandler, HandleError, Message, Settle};
use flashsale_domain::{RejectCause, ReservationRejected};
use flashsale_stock::{Stock, StockError};

pub struct ClearRejected {
    pub stock: Stock,
}

impl BatchHandler for ClearRejected {
    async fn handle(&self, batch: &[Message]) -> Result<Vec<Settle>, HandleError> {
        let mut settles = Vec::with_capacity(batch.len());
        for message in batch {
            let Ok(r) = serde_json::from_slice::<ReservationRejected>(&message.body) else {
                tracing::error!("undecodable reservation.rejected; dead-lettering");
                settles.push(Settle::DeadLetter);
                continue;
            };
            let returns_units = r.cause == RejectCause::BuyerAlreadyActive;
            match self
                .stock
                .clear_rejected(
                    r.sale_id,
                    &r.user_id,
                    r.order_id,
                    returns_units,
                    r.active_order_id,
                )
                .await
            {
                Ok(outcome) => {
                    tracing::info!(order_id = %r.order_id, ?outcome, cause = ?r.cause, "rejected reservation cleared from Redis");
                    settles.push(Settle::Ack);
                }
                Err(StockError::Unavailable(e)) => return Err(HandleError::Outage(e.into())),
                Err(e @ StockError::Reply(_)) => return Err(HandleError::Failed(e.into())),
            }
        }
        Ok(settles)
    }
}
