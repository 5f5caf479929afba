//! The live stock feed (`GET /api/v1/sales/{id}/events`): Server-Sent Events of a sale's counters.
//!
//! The cost of a client is memory, not Redis work. Each gateway follows one Redis Pub/Sub subscription
//! (`announcements.rs`); an announced sale that has listeners here is read once (`hub.rs`) and the event is
//! serialised once and handed to every client through a tokio broadcast channel (`stream.rs`). A sale without
//! listeners costs nothing; its hub goes when its last client does.

pub mod frame;
pub mod hub;
pub mod stream;

use flashsale_domain::{Sale, SaleId};
use flashsale_platform::settings::SseSettings;
use flashsale_stock::{Counters, Stock};
use frame::Frame;
use hub::Hub;
use prometheus::{IntCounter, IntGauge, Registry};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub struct LiveFeed {
    stock: Stock,
    hubs: Mutex<HashMap<SaleId, Arc<Hub>>>,
    coalesce: Duration,
    recheck: Duration,
    pub heartbeat: Duration,
    pub client_buffer: usize,
    max_streams: usize,
    open: AtomicUsize,
    /// `flashsale_sse_streams`: streams open now.
    streams: IntGauge,
    /// `flashsale_sse_dropped_total`: streams closed because their client fell `sse.client_buffer` events behind.
    pub dropped: IntCounter,
    /// Shutdown: the hubs stop reading and every stream ends, so draining HTTP does not wait for them.
    pub stop: CancellationToken,
}

/// One open stream, counted against `sse.max_streams` until it is dropped (the client went, or its stream
/// ended).
pub struct Slot(Arc<LiveFeed>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.streams.dec();
    }
}

/// What a new client starts from: the newest event (if any yet) and the channel of the next ones.
pub struct Attached {
    pub latest: Option<Arc<Frame>>,
    pub rx: broadcast::Receiver<Arc<Frame>>,
}

impl LiveFeed {
    pub fn new(
        stock: Stock,
        settings: &SseSettings,
        registry: &Registry,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let streams = IntGauge::new(
            "flashsale_sse_streams",
            "Live stock streams (Server-Sent Events) open on this gateway",
        )?;
        let dropped = IntCounter::new(
            "flashsale_sse_dropped_total",
            "Live stock streams closed because the client fell sse.client_buffer events behind",
        )?;
        registry.register(Box::new(streams.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        Ok(Self {
            stock,
            hubs: Mutex::default(),
            coalesce: Duration::from_millis(settings.coalesce_ms),
            recheck: Duration::from_millis(settings.recheck_ms),
            heartbeat: Duration::from_millis(settings.heartbeat_ms),
            client_buffer: settings.client_buffer,
            max_streams: settings.max_streams,
            open: AtomicUsize::new(0),
            streams,
            dropped,
            stop,
        })
    }

    /// A place for one more stream, or `None` at `sse.max_streams`.
    pub fn slot(self: &Arc<Self>) -> Option<Slot> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_streams {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.streams.inc();
        Some(Slot(Arc::clone(self)))
    }

    /// Joins the sale's hub if this gateway already follows the sale and has its counters: no I/O at all.
    pub fn attach(&self, sale: SaleId) -> Option<Attached> {
        let hubs = self.hubs.lock().ok()?;
        let hub = hubs.get(&sale)?;
        // Subscribed before `latest` is read (and under the lock `retire` takes): nothing sent after `latest`
        // is missed; what arrives twice is skipped by the stream, which sends only newer events.
        let rx = hub.tx.subscribe();
        let latest = hub.latest.load_full()?;
        Some(Attached {
            latest: Some(latest),
            rx,
        })
    }

    /// Joins (or starts) the sale's hub with counters the caller has just read.
    pub fn attach_with(self: &Arc<Self>, sale: Sale, counters: Counters) -> Option<Attached> {
        let mut hubs = self.hubs.lock().ok()?;
        let hub = match hubs.get(&sale.id) {
            Some(hub) => Arc::clone(hub),
            None => {
                let hub = Arc::new(Hub::new(sale.clone(), self.client_buffer));
                hubs.insert(sale.id, Arc::clone(&hub));
                tokio::spawn(hub::run(Arc::clone(self), Arc::clone(&hub)));
                hub
            }
        };
        let rx = hub.tx.subscribe();
        hub.offer(counters);
        Some(Attached {
            latest: hub.latest.load_full(),
            rx,
        })
    }

    /// An announcement: the sale's counters changed. Costs nothing when nobody here listens to the sale.
    pub fn changed(&self, sale: SaleId) {
        if let Ok(hubs) = self.hubs.lock()
            && let Some(hub) = hubs.get(&sale)
        {
            hub.announce();
        }
    }

    /// Announcements may have been lost (the subscription was down): re-read every followed sale.
    pub fn all_changed(&self) {
        if let Ok(hubs) = self.hubs.lock() {
            hubs.values().for_each(|hub| hub.announce());
        }
    }

    /// Drops the hub if nobody listens any more; true when it was dropped (its task then ends).
    fn retire(&self, hub: &Arc<Hub>) -> bool {
        let Ok(mut hubs) = self.hubs.lock() else {
            return true;
        };
        if hub.tx.receiver_count() > 0 {
            return false;
        }
        if hubs.get(&hub.sale.id).is_some_and(|h| Arc::ptr_eq(h, hub)) {
            hubs.remove(&hub.sale.id);
        }
        true
    }

    /// Sales followed now (for tests).
    pub fn followed(&self) -> usize {
        self.hubs.lock().map_or(0, |h| h.len())
    }
}
