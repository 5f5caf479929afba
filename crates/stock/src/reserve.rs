//! The hot path: the whole reservation decision in one EVALSHA, and its undo when the broker definitely did
//! not take the message.

use crate::client::{Stock, StockError};
use crate::keys::Tag;
use crate::model::{CancelOutcome, RateLimits, ReserveOutcome, ReserveRequest};
use crate::reply;
use crate::shards::{Transfer, home_shard};
use flashsale_domain::reservation::Refusal;
use flashsale_domain::{OrderId, SaleId, UserId};

impl Stock {
    /// SHA1 of the reservation script, for `EVALSHA` from outside (the benchmark of the cache's own ceiling).
    pub fn reserve_script_sha(&self) -> &str {
        self.scripts.reserve.get_hash()
    }

    /// The whole reservation decision in one EVALSHA, on the buyer's home shard. Only a sharded sale whose
    /// home shard ran out takes more: units are lent from the other shards (`shards.rs`) and the reservation
    /// runs again with them, so SOLD_OUT means every shard was empty.
    pub async fn reserve(
        &self,
        req: &ReserveRequest<'_>,
        limits: &RateLimits,
    ) -> Result<ReserveOutcome, StockError> {
        let n = self.shard_count(req.sale).await?;
        let home = Tag::new(req.sale, home_shard(req.user, n));
        let first = self.reserve_at(home, req, limits, None).await?;
        if n < 2 || first != ReserveOutcome::Refused(Refusal::SoldOut) {
            return Ok(first);
        }
        self.reserve_with_lent_units(home, n, req, limits).await
    }

    /// Gathers the buyer's units from the other shards, in turn from the next one on, then reserves again
    /// on the home shard with the last transfer (taken in by the same script). Transfers that did not cover
    /// the quantity are taken in on the way; units gathered for a buyer who is then refused stay on sale there.
    async fn reserve_with_lent_units(
        &self,
        home: Tag,
        n: u16,
        req: &ReserveRequest<'_>,
        limits: &RateLimits,
    ) -> Result<ReserveOutcome, StockError> {
        let mut missing = req.quantity;
        let mut last = None;
        for step in 1..n {
            let donor = Tag::new(home.sale, (home.shard + step) % n);
            let Some(t) = self.lend(donor, home, missing).await? else {
                continue;
            };
            let covers = t.units >= missing;
            if !covers {
                missing -= t.units;
                if self.receive(&t).await? {
                    // Forgetting it at the donor may fail: the repair pass finds it taken in, and forgets it.
                    let _ = self.settle_transfer(&t).await;
                }
            }
            // Brought along even when already taken in: the script then skips the buyer's rate bucket.
            last = Some(t);
            if covers {
                break;
            }
        }
        if last.is_none() {
            return Ok(ReserveOutcome::Refused(Refusal::SoldOut));
        }
        let outcome = self.reserve_at(home, req, limits, last.as_ref()).await?;
        if let Some(t) = &last {
            let _ = self.settle_transfer(t).await;
        }
        Ok(outcome)
    }

    /// One run of `reserve.lua` on one shard, bringing a transfer's units along when given.
    async fn reserve_at(
        &self,
        at: Tag,
        req: &ReserveRequest<'_>,
        limits: &RateLimits,
        lent: Option<&Transfer>,
    ) -> Result<ReserveOutcome, StockError> {
        let k = &self.keys;
        // No key: the sale hash stands in, so every key of the call shares the shard's slot.
        let idem = req
            .idempotency_key
            .map_or_else(|| k.sale(at), |key| k.idempotency(at, req.user, key));
        let received = lent.map_or_else(|| k.sale(at), |_| k.received(at));
        let reply: Vec<String> = self.checked(
            self.scripts
                .reserve
                .key(k.sale(at))
                .key(k.stock(at))
                .key(k.buyers(at))
                .key(k.outbox(at))
                .key(k.reservation(at, req.order_id))
                .key(k.buyer_rate(at, req.user))
                .key(idem)
                .key(k.deadlines(at))
                .key(received)
                .arg(req.order_id.to_string())
                .arg(req.user.as_str())
                .arg(req.quantity)
                .arg(limits.idempotency_ttl_secs)
                .arg(limits.buyer_per_sec)
                .arg(limits.buyer_burst)
                .arg(k.counters_channel())
                .arg(req.sale.get())
                .arg(limits.announce_every_ms)
                .arg(lent.map_or("", |t| t.id.as_str()))
                .arg(lent.map_or(0, |t| t.units))
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
        let at = self.home(sale, user).await?;
        let idem = idempotency_key.map_or_else(|| k.sale(at), |key| k.idempotency(at, user, key));
        let reply: String = self.checked(
            self.scripts
                .cancel
                .key(k.reservation(at, order))
                .key(k.stock(at))
                .key(k.buyers(at))
                .key(k.outbox(at))
                .key(idem)
                .key(k.deadlines(at))
                .key(k.sale(at))
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
