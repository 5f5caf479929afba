//! The gateway's one Redis Pub/Sub subscription, on the restock and counters channels, and what follows from
//! each announcement: a restocked sale is forgotten by the sold-out memory (`sold_out.rs`), and any announced
//! sale with live-feed listeners here is re-read (`live`). Whenever announcements may have been missed (the
//! subscription was lost, or cannot be made), the sold-out memory forgets every sold-out sale and the live feed
//! re-reads every sale it follows; the periodic sold-out check keeps running meanwhile.

use crate::state::AppState;
use flashsale_stock::Announcement;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Until `shutdown`.
pub async fn follow(state: AppState, check_every: Duration, shutdown: CancellationToken) {
    let memory = Arc::clone(&state.sold_out);
    let forgotten = |by: &str, n: usize| {
        if n > 0 {
            let n = u64::try_from(n).unwrap_or(u64::MAX);
            state
                .metrics
                .sold_out_forgotten
                .with_label_values(&[by])
                .inc_by(n);
        }
    };
    let mut check = tokio::time::interval(check_every);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let subscribed = tokio::select! {
            () = shutdown.cancelled() => return,
            subscribed = state.stock.announcements() => subscribed,
        };
        forgotten("resubscribed", memory.forget_sold_out());
        state.live.all_changed();
        let mut announced = match subscribed {
            Ok(announced) => Box::pin(announced),
            Err(error) => {
                tracing::warn!(%error, "cannot subscribe to restock and counters announcements; retrying");
                // The periodic check (and the live feed's recheck) keep running meanwhile, as the only source.
                let retry = tokio::time::sleep(check_every * 4);
                tokio::pin!(retry);
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = &mut retry => break,
                        _ = check.tick() => forgotten("check", memory.verify(&state.stock).await),
                    }
                }
                continue;
            }
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                next = announced.next() => match next {
                    Some(Announcement::Restocked(sale)) => {
                        forgotten("announcement", usize::from(memory.restocked(sale)));
                        state.live.changed(sale);
                    }
                    Some(Announcement::Changed(sale)) => state.live.changed(sale),
                    None => {
                        tracing::warn!("the announcement subscription was lost; resubscribing");
                        break;
                    }
                },
                _ = check.tick() => forgotten("check", memory.verify(&state.stock).await),
            }
        }
    }
}
