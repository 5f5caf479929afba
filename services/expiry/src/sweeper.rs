//! The safety net: every `expiry.sweep_interval_ms`, reservations more than `expiry.sweep_grace_ms` past their
//! deadline that no message brought go through the same expiry path.
//!
//! - PostgreSQL: `pending_payment` orders past their deadline (a lost or purged due message), through the
//!   partial index `orders_pending_by_deadline`.
//! - Redis: reservations still `held` in a live sale's `deadlines` index (a crash between the commit and the
//!   Redis step, or a row order-writer never wrote: written `expired`). One whose row says `paid` is repaired
//!   with `Stock::mark_paid` (payment crashed before its Redis step).
//!
//! Several replicas may sweep at once: the conditional update and the idempotent scripts make that safe.

use crate::due::Due;
use crate::expire::{Expirer, PaidInRedis};
use crate::metrics::Source;
use anyhow::Context;
use chrono::Utc;
use flashsale_platform::settings::ExpirySettings;
use flashsale_stock::ReservationState;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

pub async fn run(expirer: Arc<Expirer>, settings: ExpirySettings, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(settings.sweep_interval_ms));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(error) = sweep(&expirer, &settings).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "sweeper pass failed; trying again next interval"
            );
        }
    }
    tracing::info!("sweeper stopped");
}

/// One pass over both stores.
pub async fn sweep(expirer: &Expirer, settings: &ExpirySettings) -> anyhow::Result<()> {
    let grace_ms = i64::try_from(settings.sweep_grace_ms).unwrap_or(i64::MAX);
    let limit = settings.sweep_batch;

    let rows = {
        let mut conn = expirer
            .pool
            .get()
            .await
            .context("acquiring a PostgreSQL connection")?;
        flashsale_store::expiry::overdue_pending(
            &mut conn,
            grace_ms,
            i64::try_from(limit).unwrap_or(i64::MAX),
        )
        .await
        .context("listing overdue pending orders")?
    };
    if !rows.is_empty() {
        expirer
            .metrics
            .sweeper_found
            .with_label_values(&["postgres"])
            .inc_by(rows.len() as u64);
        let dues: Vec<Due> = rows
            .into_iter()
            .filter_map(|r| {
                Due::try_from(r)
                    .map_err(|e| tracing::error!(error = %e, "malformed order row"))
                    .ok()
            })
            .collect();
        expirer
            .expire(&dues, Source::Sweeper, PaidInRedis::Leave)
            .await
            .context("expiring overdue orders found in PostgreSQL")?;
    }

    let before_ms = Utc::now().timestamp_millis().saturating_sub(grace_ms);
    let mut shards = Vec::new();
    for sale in expirer
        .stock
        .live_sale_ids()
        .await
        .context("listing live sales")?
    {
        shards.extend(
            expirer
                .stock
                .shards_of(sale)
                .await
                .context("listing stock shards")?,
        );
    }
    for at in shards {
        let ids = expirer
            .stock
            .overdue(at, before_ms, limit)
            .await
            .context("reading overdue reservations")?;
        if ids.is_empty() {
            continue;
        }
        let held = expirer
            .stock
            .reservations(at, &ids)
            .await
            .context("reading overdue reservations")?;
        let dues: Vec<Due> = held
            .iter()
            .flatten()
            .filter(|r| r.state == ReservationState::Held)
            .map(Due::from)
            .collect();
        if dues.is_empty() {
            continue;
        }
        expirer
            .metrics
            .sweeper_found
            .with_label_values(&["redis"])
            .inc_by(dues.len() as u64);
        expirer
            .expire(&dues, Source::Sweeper, PaidInRedis::Repair)
            .await
            .context("expiring overdue reservations found in Redis")?;
    }
    Ok(())
}
