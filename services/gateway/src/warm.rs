//! Warming: a sale's Redis state is written from PostgreSQL when the sale is created, and again when it is
//! found missing (Redis restarted empty, a failover that dropped writes). Each pass also puts every live sale
//! back into the index of live sales, so a sale can never be live while the relay cannot see it.
//!
//! After a loss, stock is restored as `total_stock − held` only once no reservation of the sale can still be in
//! flight, so a unit promised by a 202 whose order row is not yet written is never sold twice. The rule:
//! - at least `outbox.relay_age_ms` has passed since this gateway first saw the state missing (a publish that
//!   was under way when Redis lost it has been confirmed or given up by then), and
//! - the order-writer queue has had no ready message, and the sale's `held` has not changed, for
//!   `gateway.restore_quiet_ms` (whatever order-writer still held unacknowledged has been committed).
//!
//! Until then reservations of the sale answer 503. A new sale is warmed at once: nothing of it can be in flight.

use crate::state::AppState;
use anyhow::Context;
use flashsale_domain::{Money, OrderId, OrderStatus, Sale, SaleId, UserId};
use flashsale_stock::{ActiveHold, SaleWarmup, Warmed};
use flashsale_store::models::SaleRow;
use flashsale_store::{StoreError, orders, sales};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Sales this gateway found missing in Redis, and how long they have been quiet.
#[derive(Default)]
pub struct Restores(Mutex<HashMap<SaleId, Restore>>);

struct Restore {
    seen_missing: Instant,
    held: i64,
    quiet_since: Instant,
}

/// The rule's inputs, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct RestoreRule {
    pub horizon: Duration,
    pub quiet: Duration,
}

impl Restores {
    /// Records one observation; true once the sale may be restored with this `held`.
    fn observe(&self, sale: SaleId, held: i64, queue_ready: u32, rule: RestoreRule) -> bool {
        let now = Instant::now();
        let Ok(mut map) = self.0.lock() else {
            return false;
        };
        let r = map.entry(sale).or_insert(Restore {
            seen_missing: now,
            held,
            quiet_since: now,
        });
        if queue_ready > 0 || r.held != held {
            r.held = held;
            r.quiet_since = now;
            return false;
        }
        now.duration_since(r.seen_missing) >= rule.horizon
            && now.duration_since(r.quiet_since) >= rule.quiet
    }

    fn forget(&self, sale: SaleId) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(&sale);
        }
    }
}

async fn ensure_window(state: &AppState, sale: &Sale) -> anyhow::Result<()> {
    state
        .publisher
        .ensure_payment_window(sale.payment_window_secs)
        .await
        .context("declaring the expiry wait queue")
}

/// Warms a sale just created. The expiry wait queue of its payment window is declared first, so no
/// reservation can be published before its expiry path exists.
pub async fn warm_new(state: &AppState, sale: &Sale) -> anyhow::Result<Warmed> {
    ensure_window(state, sale).await?;
    let warmup = SaleWarmup {
        sale: sale.clone(),
        remaining: sale.total_stock,
        holds: Vec::new(),
    };
    Ok(state.stock.warm(&warmup, true).await?)
}

/// Restores a live sale whose state is missing, if the rule allows it now. Returns whether it warmed.
async fn restore(state: &AppState, row: &SaleRow, sale: &Sale) -> anyhow::Result<bool> {
    ensure_window(state, sale).await?;
    // A missing sale hash beside live stock is rewritten at once (its `sold` counted from PostgreSQL); the
    // stock is left alone.
    let partial = SaleWarmup {
        sale: sale.clone(),
        remaining: 0,
        holds: active_holds(state, sale.id).await?,
    };
    if state.stock.warm(&partial, false).await? != Warmed::Waiting {
        state.restores.forget(sale.id);
        return Ok(false);
    }
    let ready = state
        .publisher
        .queue_depth(&state.order_writer_queue)
        .await?;
    if !state
        .restores
        .observe(sale.id, row.held, ready, state.restore_rule)
    {
        return Ok(false);
    }
    let holds = active_holds(state, sale.id).await?;
    let held = {
        let mut conn = state.pool.get().await.map_err(StoreError::from)?;
        sales::find(&mut conn, sale.id)
            .await?
            .map_or(row.held, |r| r.held)
    };
    if held != row.held {
        // An order was committed meanwhile: not quiet after all.
        state.restores.observe(sale.id, held, 0, state.restore_rule);
        return Ok(false);
    }
    let warmup = SaleWarmup {
        sale: sale.clone(),
        remaining: sale.total_stock - held,
        holds,
    };
    let warmed = state.stock.warm(&warmup, true).await?;
    state.restores.forget(sale.id);
    Ok(warmed == Warmed::Written)
}

/// The sale's active orders as reservations to restore.
async fn active_holds(state: &AppState, sale: SaleId) -> anyhow::Result<Vec<ActiveHold>> {
    let mut conn = state.pool.get().await.map_err(StoreError::from)?;
    let rows = orders::active_of_sale(&mut conn, sale).await?;
    rows.into_iter()
        .map(|o| {
            Ok(ActiveHold {
                order_id: OrderId::from_uuid(o.id),
                user: UserId::parse(o.user_id).map_err(anyhow::Error::msg)?,
                quantity: u32::try_from(o.quantity).context("order quantity")?,
                amount: Money::from_minor(o.amount_minor),
                created_at: o.created_at,
                expires_at: o.expires_at,
                paid: o.status == OrderStatus::Paid,
            })
        })
        .collect()
}

/// One pass: re-index every live sale and restore those whose state is missing and may be restored now.
/// Returns how many were restored.
pub async fn warm_missing(state: &AppState) -> anyhow::Result<usize> {
    let live = {
        let mut conn = state.pool.get().await.map_err(StoreError::from)?;
        sales::live(&mut conn).await?
    };
    let mut records = Vec::with_capacity(live.len());
    for row in live {
        let sale = row.to_sale().map_err(anyhow::Error::msg)?;
        state.catalog.remember(sale.clone(), row.held);
        records.push((row, sale));
    }
    let all: Vec<&Sale> = records.iter().map(|(_, s)| s).collect();
    state.stock.index_live(&all).await?;
    let mut warmed = 0;
    for (row, sale) in &records {
        if state.stock.is_live(sale.id).await? {
            state.restores.forget(sale.id);
            continue;
        }
        if restore(state, row, sale).await? {
            tracing::info!(sale = %sale.id, "sale state restored in Redis from PostgreSQL");
            state.metrics.warmed.with_label_values(&[] as &[&str]).inc();
            warmed += 1;
        }
    }
    Ok(warmed)
}

pub async fn warmer(state: AppState, interval: Duration, shutdown: CancellationToken) {
    flashsale_platform::shutdown::every(interval, shutdown, "warmer", || warm_missing(&state))
        .await;
}
