//! Following PostgreSQL's terminal transitions in Redis: a paid reservation counts as sold (`lua/pay.lua`), an
//! expired one gives its units back (`lua/expire.lua`). PostgreSQL decides; these only follow, idempotently.

use crate::client::{Stock, StockError};
use crate::keys::Tag;
use flashsale_domain::{OrderId, SaleId, UserId};
use redis::AsyncCommands;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaidOutcome {
    /// Marked paid now: `sold` rose by the reservation's units.
    Paid,
    AlreadyPaid,
    /// Redis holds no record of it (lost state, rebuilt from PostgreSQL by the warmer).
    Missing,
    /// The record is expired or rejected: PostgreSQL said paid, so Redis is behind or wrong.
    NotHeld,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// Units returned now.
    Released,
    AlreadyReleased,
    Missing,
    /// Paid or rejected: nothing to give back.
    NotHeld,
}

impl Stock {
    /// After PostgreSQL committed `pending_payment → paid`.
    pub async fn mark_paid(
        &self,
        sale: SaleId,
        user: &UserId,
        order: OrderId,
    ) -> Result<PaidOutcome, StockError> {
        let k = &self.keys;
        let at = self.home(sale, user).await?;
        let reply: String = self.checked(
            self.scripts
                .pay
                .key(k.reservation(at, order))
                .key(k.sale(at))
                .key(k.deadlines(at))
                .key(k.outbox(at))
                .arg(order.to_string())
                .arg(k.counters_channel())
                .arg(sale.get())
                .invoke_async(&mut self.conn())
                .await,
        )?;
        match reply.as_str() {
            "PAID" => Ok(PaidOutcome::Paid),
            "ALREADY_PAID" => Ok(PaidOutcome::AlreadyPaid),
            "MISSING" => Ok(PaidOutcome::Missing),
            "NOT_HELD" => Ok(PaidOutcome::NotHeld),
            other => Err(StockError::Reply(format!("pay answered {other:?}"))),
        }
    }

    /// After PostgreSQL committed `pending_payment → expired` (or found it so).
    pub async fn release_expired(
        &self,
        sale: SaleId,
        user: &UserId,
        order: OrderId,
    ) -> Result<ReleaseOutcome, StockError> {
        let k = &self.keys;
        let at = self.home(sale, user).await?;
        let reply: String = self.checked(
            self.scripts
                .expire
                .key(k.reservation(at, order))
                .key(k.stock(at))
                .key(k.buyers(at))
                .key(k.deadlines(at))
                .key(k.outbox(at))
                .key(k.sale(at))
                .arg(order.to_string())
                .arg(k.restock_channel())
                .arg(sale.get())
                .invoke_async(&mut self.conn())
                .await,
        )?;
        match reply.as_str() {
            "RELEASED" => Ok(ReleaseOutcome::Released),
            "ALREADY_RELEASED" => Ok(ReleaseOutcome::AlreadyReleased),
            "MISSING" => Ok(ReleaseOutcome::Missing),
            "NOT_HELD" => Ok(ReleaseOutcome::NotHeld),
            other => Err(StockError::Reply(format!("expire answered {other:?}"))),
        }
    }

    /// Held reservations of a sale (shard) whose deadline lies before `before_ms` (Unix ms), oldest first.
    pub async fn overdue(
        &self,
        at: impl Into<Tag>,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<OrderId>, StockError> {
        let raw: Vec<String> = self.checked(
            self.conn()
                .zrangebyscore_limit(
                    self.keys.deadlines(at),
                    "-inf",
                    format!("({before_ms}"),
                    0,
                    isize::try_from(limit).unwrap_or(isize::MAX),
                )
                .await,
        )?;
        Ok(raw.iter().filter_map(|id| id.parse().ok()).collect())
    }
}
