//! The outbox: the reservation script adds every reservation to its sale's outbox; a confirmed publish removes
//! it (batched here, off the hot path); the relay re-publishes whatever stays longer than `outbox.relay_age_ms`
//! — timed-out confirms, refused reservations a retry was already answered for, and the reservations of a
//! gateway that died between script and confirm. Re-publishes carry the same `message_id`, so consumers dedupe.

use crate::state::AppState;
use flashsale_domain::{OrderId, ReservationCreated};
use flashsale_stock::Tag;
use futures_util::future::join_all;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

/// Removes confirmed entries in batches until `shutdown`, then flushes whatever is already queued.
pub async fn remove_confirmed(
    state: AppState,
    mut rx: UnboundedReceiver<(Tag, OrderId)>,
    shutdown: CancellationToken,
) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let received = tokio::select! {
            n = rx.recv_many(&mut buf, 1024) => n,
            _ = shutdown.cancelled() => {
                while let Ok(item) = rx.try_recv() {
                    buf.push(item);
                }
                flush(&state, &mut buf).await;
                return;
            }
        };
        if received == 0 {
            return;
        }
        flush(&state, &mut buf).await;
    }
}

async fn flush(state: &AppState, buf: &mut Vec<(Tag, OrderId)>) {
    let mut by_shard: BTreeMap<Tag, Vec<OrderId>> = BTreeMap::new();
    for (at, order) in buf.drain(..) {
        by_shard.entry(at).or_default().push(order);
    }
    for (at, orders) in by_shard {
        if let Err(error) = state.stock.confirmed(at, &orders).await {
            // Harmless: the relay re-publishes them and consumers dedupe.
            tracing::warn!(%error, sale = %at.sale, shard = at.shard, n = orders.len(), "cannot remove confirmed outbox entries");
        }
    }
}

/// Runs the relay every `interval` until `shutdown`.
pub async fn relay(state: AppState, interval: Duration, shutdown: CancellationToken) {
    flashsale_platform::shutdown::every(interval, shutdown, "outbox relay", || relay_once(&state))
        .await;
}

/// One pass over every sale's outbox (every stock shard's), finishing the shards' stale unit transfers on the
/// way. Returns how many entries were confirmed.
pub async fn relay_once(state: &AppState) -> anyhow::Result<usize> {
    let mut relayed = 0;
    for sale in state.stock.live_sale_ids().await? {
        let repaired = state.stock.repair_transfers(sale, state.relay_age).await?;
        if repaired > 0 {
            tracing::warn!(%sale, repaired, "units lent between stock shards were taken in by the relay");
        }
        for at in state.stock.shards_of(sale).await? {
            relayed += relay_shard(state, at).await?;
        }
    }
    Ok(relayed)
}

async fn relay_shard(state: &AppState, at: Tag) -> anyhow::Result<usize> {
    let sale = at.sale;
    let ids = state
        .stock
        .claim_stale(at, state.relay_age, state.relay_batch)
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let held = state.stock.reservations(at, &ids).await?;
    let attempts = ids.iter().zip(held).map(|(id, r)| async move {
        let Some(r) = r else {
            // The record is gone (cancelled in the same script that removes the entry): nothing to send.
            state.metrics.relayed.with_label_values(&["orphan"]).inc();
            return Some(*id);
        };
        let message = ReservationCreated::new(
            r.order_id,
            sale,
            r.user,
            r.quantity,
            r.amount,
            r.created_at,
            r.expires_at,
        );
        let body = serde_json::to_vec(&message).ok()?;
        match state
            .publisher
            .publish(&message.routing_key(), &id.to_string(), &body)
            .await
        {
            Ok(()) => {
                state
                    .metrics
                    .relayed
                    .with_label_values(&["confirmed"])
                    .inc();
                Some(*id)
            }
            Err(error) => {
                tracing::warn!(order_id = %id, %error, "relay publish failed; will retry");
                state.metrics.relayed.with_label_values(&["failed"]).inc();
                None
            }
        }
    });
    let done: Vec<OrderId> = join_all(attempts).await.into_iter().flatten().collect();
    state.stock.confirmed(at, &done).await?;
    Ok(done.len())
}
