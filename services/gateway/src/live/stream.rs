//! One client's stream: the first event (unless its `Last-Event-ID` already names that state), then every newer
//! event of the sale, a `: ping` comment when idle for `sse.heartbeat_ms`, and the end when it falls behind.
//!
//! A forwarding task per client moves the sale's events (shared `Bytes`, never copied) into the client's own
//! buffer of `sse.client_buffer` events. The HTTP server takes from that buffer only as fast as the client's
//! socket drains, so a client that reads too slowly fills it: the task then stops forwarding and counts the
//! drop, and the stream ends once the server writes again. Memory stays bounded (the buffer, the socket's
//! `sse.send_buffer_bytes` and the server's 32 KiB write buffer) whatever the client does. A dropped client
//! reconnects with `Last-Event-ID` and gets the current counters, which is all a state feed owes it.

use super::frame::{Frame, Mark};
use super::{Attached, LiveFeed, Slot};
use actix_web::web::Bytes;
use futures_util::Stream;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{Interval, MissedTickBehavior};

/// How long a browser's EventSource waits before it reconnects after the stream ended (ms).
const RETRY_MS: u64 = 1000;
const PING: &[u8] = b": ping\n\n";

struct Client {
    events: mpsc::Receiver<Bytes>,
    first: Option<Bytes>,
    heartbeat: Interval,
    feed: Arc<LiveFeed>,
    _slot: Slot,
}

/// The response body of one stream.
pub fn open(
    feed: Arc<LiveFeed>,
    slot: Slot,
    attached: Attached,
    last_event: Option<Mark>,
) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let mut first = format!("retry: {RETRY_MS}\n\n").into_bytes();
    let mut seen = last_event;
    if let Some(latest) = attached.latest.filter(|l| l.mark.newer_than(last_event)) {
        first.extend_from_slice(&latest.bytes);
        seen = Some(latest.mark);
    }
    let (tx, events) = mpsc::channel(feed.client_buffer);
    tokio::spawn(forward(Arc::clone(&feed), attached.rx, tx, seen));
    let start = tokio::time::Instant::now() + feed.heartbeat;
    let mut heartbeat = tokio::time::interval_at(start, feed.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let client = Client {
        events,
        first: Some(Bytes::from(first)),
        heartbeat,
        feed,
        _slot: slot,
    };
    futures_util::stream::unfold(client, |mut c| async move {
        let chunk = c.next().await?;
        Some((Ok(chunk), c))
    })
}

/// Moves the sale's newer events into the client's buffer until the client goes, falls behind or shutdown.
async fn forward(
    feed: Arc<LiveFeed>,
    mut sale: broadcast::Receiver<Arc<Frame>>,
    client: mpsc::Sender<Bytes>,
    mut seen: Option<Mark>,
) {
    loop {
        let frame = tokio::select! {
            biased;
            () = feed.stop.cancelled() => return,
            () = client.closed() => return,
            got = sale.recv() => match got {
                Ok(frame) => frame,
                Err(RecvError::Lagged(_)) => {
                    feed.dropped.inc();
                    return;
                }
                Err(RecvError::Closed) => return,
            },
        };
        // Already had it (it raced the first event).
        if !frame.mark.newer_than(seen) {
            continue;
        }
        seen = Some(frame.mark);
        match client.try_send(frame.bytes.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                feed.dropped.inc();
                return;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

impl Client {
    /// The next chunk to write; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        tokio::select! {
            biased;
            () = self.feed.stop.cancelled() => None,
            event = self.events.recv() => {
                self.heartbeat.reset();
                event
            }
            _ = self.heartbeat.tick() => Some(Bytes::from_static(PING)),
        }
    }
}
