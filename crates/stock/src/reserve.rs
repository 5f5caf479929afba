//! The hot path: the whole reservation decision in one EVALSHA, and its undo when the broker definitely did
//! not take the message.

use crate::client::{Stock, StockError};
use crate::model::{CancelOutcome, RateLimits, ReserveOutcome, ReserveRequest};
use crate::reply;
use flashsale_domain::{OrderId, SaleId, UserId};

impl Stock {
    /// SHA1 of the reservation script, for `EVALSHA` from outside (the benchmark of the cache's own ceiling).
    pub fn reserve_script_sha(&self) -> &str {
        self.scripts.reserve.get_hash()
    }

    /// The whole reservation decision in one EVALSHA.
    pub async fn reserve(
        &self,
        req: &ReserveRequest<'_>,
        limits: &RateLimits,
    ) -> Result<ReserveOutcome, StockError> {
        let k = &self.keys;
        // No key: the sale hash stands in, so every key of the call shares the sale's slot.
        let idem = req.idempotency_key.map_or_else(
            || k.sale(req.sale),
            |key| k.idempotency(req.sale, req.user, key),
        );
        let reply: Vec<String> = self.checked(
            self.scripts
                .reserve
                .key(k.sale(req.sale))
                .key(k.stock(req.sale))
                .key(k.buyers(req.sale))
                .key(k.outbox(req.sale))
                .key(k.reservation(req.sale, req.order_id))
                .key(k.buyer_rate(req.sale, req.user))
                .key(idem)
                .key(k.deadlines(req.sale))
                .arg(req.order_id.to_string())
                .arg(req.user.as_str())
                .arg(req.quantity)
                .arg(limits.idempotency_ttl_secs)
                .arg(limits.buyer_per_sec)
                .arg(limits.buyer_burst)
                .arg(k.counters_channel())
                .arg(req.sale.get())
                .arg(limits.announce_every_ms)
                .invoke_async(&mut self.conn())
                .await,
        )?;
        match reply.first().map(String::as_str) {
            Some("RESERVED") => Ok(ReserveOutcome::Reserved(
                reply::reservation(&reply).map_err(StockError::Reply)?,
            )),
            Some("REPLAYED") => Ok(ReserveOutcome::Replayed(
                reply::reservation(&reply).map_err(StockError::Reply)?,
            )),
            _ => Ok(ReserveOutcome::Refused(
                reply::refusal(&reply).map_err(StockError::Reply)?,
            )),
        }
    }

    /// Gives the units back after the broker definitely refused the message, unless a 202 was already given
    /// for this reservation or the relay claimed it (then a message may exist, and releasing could oversell).
    pub async fn cancel(
        &self,
        sale: SaleId,
        order: OrderId,
        user: &UserId,
        idempotency_key: Option<&str>,
    ) -> Result<CancelOutcome, StockError> {
        let k = &self.keys;
        let idem =
            idempotency_key.map_or_else(|| k.sale(sale), |key| k.idempotency(sale, user, key));
        let reply: String = self.checked(
            self.scripts
                .cancel
                .key(k.reservation(sale, order))
                .key(k.stock(sale))
                .key(k.buyers(sale))
                .key(k.outbox(sale))
                .key(idem)
                .key(k.deadlines(sale))
                .key(k.sale(sale))
                .arg(order.to_string())
                .arg(k.restock_channel())
                .arg(sale.get())
                .invoke_async(&mut self.conn())
                .await,
        )?;
        match reply.as_str() {
            "RELEASED" => Ok(CancelOutcome::Released),
            "PROMISED" | "CLAIMED" => Ok(CancelOutcome::KeptForRelay),
            "NOT_HELD" => Ok(CancelOutcome::NotHeld),
            other => Err(StockError::Reply(format!("cancel answered {other:?}"))),
        }
    }
}
