//! One sale's fan-out on one gateway: the latest event, a broadcast channel to every client of the sale, and
//! the task that reads the sale's counters, once for all clients, when an announcement says they changed.
//!
//! Reads are spaced by at least `sse.coalesce_ms`: announcements that arrive meanwhile are answered by the next
//! read, so a sale sends at most one event per interval however fast it sells. After an announcement one more
//! read follows one interval later: a reservation skips its announcement when another was made less than an
//! interval before (`reserve.lua`), and that read sees it.

use super::LiveFeed;
use super::frame::{Frame, next_phase_at};
use arc_swap::ArcSwapOption;
use chrono::Utc;
use flashsale_domain::Sale;
use flashsale_stock::Counters;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, broadcast};

pub struct Hub {
    pub sale: Sale,
    pub tx: broadcast::Sender<Arc<Frame>>,
    /// The newest event sent; what a client connecting now gets first.
    pub latest: ArcSwapOption<Frame>,
    /// An announcement arrived since the last read began.
    dirty: AtomicBool,
    wake: Notify,
    /// Serialises `offer` (the hub's task and a connecting client's first read), so `latest` never goes back.
    offering: Mutex<()>,
}

impl Hub {
    pub fn new(sale: Sale, client_buffer: usize) -> Self {
        Self {
            sale,
            tx: broadcast::channel(client_buffer).0,
            latest: ArcSwapOption::empty(),
            dirty: AtomicBool::new(false),
            wake: Notify::new(),
            offering: Mutex::new(()),
        }
    }

    /// The sale's counters may have changed: read them soon.
    pub fn announce(&self) {
        self.dirty.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Sends these counters if they are newer than the latest event (by version, or by the clock's phase).
    pub fn offer(&self, counters: Counters) {
        let _one_at_a_time = self.offering.lock();
        let frame = Frame::new(&self.sale, counters, Utc::now());
        let latest = self.latest.load();
        if let Some(latest) = latest.as_ref()
            && !frame.mark.newer_than(Some(latest.mark))
        {
            return;
        }
        let frame = Arc::new(frame);
        self.latest.store(Some(Arc::clone(&frame)));
        // No receiver is no error: the next client starts from `latest`.
        let _ = self.tx.send(frame);
    }

    /// The status changes with the clock (start, end) even when no counter does: re-send the last counters then.
    fn on_the_clock(&self) {
        if let Some(latest) = self.latest.load_full() {
            self.offer(latest.counters);
        }
    }
}

/// Until the sale has no listener left (or shutdown): reads on announcements, on the clock's phase changes and
/// every `sse.recheck_ms` (a lost announcement), and sends what changed.
pub async fn run(feed: Arc<LiveFeed>, hub: Arc<Hub>) {
    let mut recheck = tokio::time::interval(feed.recheck);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    recheck.tick().await;
    loop {
        let phase_change = next_phase_at(&hub.sale, Utc::now()).map(|at| {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::Instant::now() + wait
        });
        let clock = async {
            match phase_change {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = feed.stop.cancelled() => return,
            () = hub.wake.notified() => {}
            _ = recheck.tick() => {}
            () = clock => hub.on_the_clock(),
        }
        if feed.retire(&hub) {
            return;
        }
        // One read, then a pause; one more while announcements keep coming, and once after the last one.
        loop {
            let announced = hub.dirty.swap(false, Ordering::AcqRel);
            match feed.stock.counters(hub.sale.id).await {
                Ok(Some(counters)) => hub.offer(counters),
                // Redis lost the sale: keep the last state until the warmer restores it.
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(%error, sale = %hub.sale.id, "cannot read a sale's counters")
                }
            }
            tokio::select! {
                () = feed.stop.cancelled() => return,
                () = tokio::time::sleep(feed.coalesce) => {}
            }
            if !announced {
                break;
            }
        }
    }
}
