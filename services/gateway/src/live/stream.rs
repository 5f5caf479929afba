//! One client's stream: the first event (unless its `Last-Event-ID` already names that state), then every newer
//! event of the sale, a `: ping` comment when idle for `sse.heartbeat_ms`, and the end when it falls behind.
//!
//! The client's buffer is its place in the sale's broadcast channel, which holds `sse.client_buffer` events: a
//! client that reads too slowly is overtaken (`Lagged`), and its stream ends instead of growing memory. It
//! reconnects with `Last-Event-ID` and gets the current counters, which is all a state feed owes it.

use super::frame::{Frame, Mark};
use super::{Attached, LiveFeed, Slot};
use actix_web::web::Bytes;
use futures_util::Stream;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Interval, MissedTickBehavior};

/// How long a browser's EventSource waits before it reconnects after the stream ended (ms).
const RETRY_MS: u64 = 1000;
const PING: &[u8] = b": ping\n\n";

struct Client {
    rx: tokio::sync::broadcast::Receiver<Arc<Frame>>,
    /// The newest state this client has: what it was sent, or named in `Last-Event-ID`.
    seen: Option<Mark>,
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
    let start = tokio::time::Instant::now() + feed.heartbeat;
    let mut heartbeat = tokio::time::interval_at(start, feed.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let client = Client {
        rx: attached.rx,
        seen,
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

impl Client {
    /// The next chunk to write; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            tokio::select! {
                biased;
                () = self.feed.stop.cancelled() => return None,
                got = self.rx.recv() => match got {
                    Ok(frame) if frame.mark.newer_than(self.seen) => {
                        self.seen = Some(frame.mark);
                        self.heartbeat.reset();
                        return Some(frame.bytes.clone());
                    }
                    // Already had it (it raced the first event).
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        self.feed.dropped.inc();
                        return None;
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(PING)),
            }
        }
    }
}
