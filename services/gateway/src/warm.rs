//! Warming: a sale's Redis state is written from PostgreSQL when the sale is created, and again whenever it is
//! found missing (Redis restarted empty, failover without the latest writes). Remaining stock comes from the
//! database's `held` counter; the buyers of active orders are restored so the per-buyer limit holds. A
//! reservation still in flight when Redis lost its state may be admitted twice; order-writer's stock guard
//! then writes the surplus as `rejected` (see docs/architecture.md).

use crate::state::AppState;
use anyhow::Context;
use flashsale_domain::{Money, OrderId, SaleId};
use flashsale_stock::{SaleSnapshot, SaleWarmup};
use flashsale_store::models::SaleRow;
use flashsale_store::{StoreError, orders, sales};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub fn snapshot_of(row: &SaleRow, remaining: i64, sold: i64) -> anyhow::Result<SaleSnapshot> {
    Ok(SaleSnapshot {
        sale: SaleId::new(row.id)?,
        product_name: row.product_name.clone(),
        price: Money::from_minor(row.price_minor),
        total_stock: row.total_stock,
        per_user_limit: u32::try_from(row.per_user_limit)?,
        payment_window_secs: u32::try_from(row.payment_window_secs)?,
        starts_at: row.starts_at,
        ends_at: row.ends_at,
        remaining,
        sold,
    })
}

/// Warms one sale if its state is missing. The expiry wait queue of its payment window is declared first, so
/// no reservation can be published before its expiry path exists.
pub async fn warm_sale(state: &AppState, row: &SaleRow) -> anyhow::Result<bool> {
    let window = u32::try_from(row.payment_window_secs)?;
    state
        .publisher
        .ensure_payment_window(window)
        .await
        .context("declaring the expiry wait queue")?;
    let sale = SaleId::new(row.id)?;
    let buyers = {
        let mut conn = state.pool.get().await.map_err(StoreError::from)?;
        orders::active_of_sale(&mut conn, sale).await?
    };
    let warmup = SaleWarmup {
        snapshot: snapshot_of(row, row.total_stock - row.held, 0)?,
        buyers: buyers
            .into_iter()
            .map(|(user, id)| (user, OrderId::from_uuid(id)))
            .collect(),
    };
    let warmed = state.stock.warm(&warmup).await?;
    Ok(warmed)
}

/// Warms every live sale whose Redis state is missing. Returns how many were warmed.
pub async fn warm_missing(state: &AppState) -> anyhow::Result<usize> {
    let live = {
        let mut conn = state.pool.get().await.map_err(StoreError::from)?;
        sales::live(&mut conn).await?
    };
    let mut warmed = 0;
    for row in live {
        let sale = SaleId::new(row.id)?;
        if state.stock.snapshot(sale).await?.is_some() {
            continue;
        }
        if warm_sale(state, &row).await? {
            tracing::info!(sale = %sale, "sale state restored in Redis from PostgreSQL");
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
