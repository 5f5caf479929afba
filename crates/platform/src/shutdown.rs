//! SIGTERM and SIGINT become a [`Shutdown`] that every loop of a service selects on.
//!
//! A stop has two moments. The first signal *requests* it: `/readyz` turns 503 at once, and the service keeps
//! serving HTTP for its readiness delay (`<service>.shutdown_delay_ms`), so load balancers and probes see the
//! 503 and stop routing here before the listener closes. A second signal *hurries* it: the rest of the delay
//! is skipped (an operator pressing Ctrl-C twice means "now"). The drain after the delay is the same either way.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A service's stop: requested (readiness 503) and, optionally, hurried (skip the readiness delay).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    requested: CancellationToken,
    hurried: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// A shutdown driven by SIGTERM/SIGINT: the first requests it, the second hurries it.
    pub fn on_signal() -> Self {
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let mut signals = Signals::listen();
            signals.next().await;
            tracing::info!(
                "shutdown signal received: /readyz answers 503, draining after the readiness delay"
            );
            trigger.request();
            signals.next().await;
            tracing::info!("second shutdown signal: skipping the rest of the readiness delay");
            trigger.hurry();
        });
        shutdown
    }

    /// Asks the service to stop (what the first signal does).
    pub fn request(&self) {
        self.requested.cancel();
    }

    /// Skips what is left of the readiness delay; also requests the stop.
    pub fn hurry(&self) {
        self.requested.cancel();
        self.hurried.cancel();
    }

    pub fn is_requested(&self) -> bool {
        self.requested.is_cancelled()
    }

    /// Cancelled once the stop is requested: readiness, and the loops that stop taking work at once.
    pub fn requested(&self) -> CancellationToken {
        self.requested.clone()
    }

    /// Waits until the stop is requested.
    pub async fn wait(&self) {
        self.requested.cancelled().await;
    }

    /// Waits until the stop is requested, then for `delay` more, or less if the stop is hurried: the time
    /// between `/readyz` turning 503 and the drain.
    pub async fn readiness_delay(&self, delay: Duration) {
        self.wait().await;
        if delay.is_zero() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.hurried.cancelled() => {
                tracing::info!("readiness delay cut short by a second signal");
            }
        }
    }
}

/// A test or tool that stops a service with a plain token: cancelling it requests the stop, nothing hurries it.
impl From<CancellationToken> for Shutdown {
    fn from(requested: CancellationToken) -> Self {
        Self {
            requested,
            hurried: CancellationToken::new(),
        }
    }
}

/// SIGTERM and SIGINT as one stream. The listeners are made once, so a signal between two waits is not lost.
struct Signals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    #[cfg(unix)]
    fn listen() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Self {
                streams: Some((term, int)),
            },
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot listen for SIGTERM/SIGINT; only Ctrl-C stops this process");
                Self { streams: None }
            }
        }
    }

    #[cfg(not(unix))]
    fn listen() -> Self {
        Self {}
    }

    #[cfg(unix)]
    async fn next(&mut self) {
        match &mut self.streams {
            Some((term, int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `pass` every `interval` until `shutdown`, logging (not propagating) a failed pass: background loops
/// such as the outbox relay and the warmer must outlive a dependency's outage.
pub async fn every<F, Fut>(
    interval: std::time::Duration,
    shutdown: CancellationToken,
    name: &str,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(error) = pass().await {
            tracing::warn!(
                error = format!("{error:#}"),
                loop_name = name,
                "background pass failed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    // Real time, short delays: paused time needs tokio's test-util, which would rebuild tokio for everyone.
    const DELAY: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn the_delay_starts_at_the_request_and_lasts_its_length() {
        let shutdown = Shutdown::new();
        let waiting = tokio::spawn({
            let s = shutdown.clone();
            async move {
                s.readiness_delay(DELAY).await;
                Instant::now()
            }
        });
        tokio::time::sleep(DELAY * 2).await;
        assert!(!waiting.is_finished(), "no delay runs before the request");
        let requested = Instant::now();
        shutdown.request();
        let took = waiting.await.expect("task") - requested;
        assert!(took >= DELAY && took < DELAY * 3, "{took:?}");
    }

    #[tokio::test]
    async fn a_hurry_cuts_the_delay_short() {
        let shutdown = Shutdown::new();
        shutdown.request();
        let waiting = tokio::spawn({
            let s = shutdown.clone();
            async move { s.readiness_delay(Duration::from_secs(60)).await }
        });
        tokio::time::sleep(DELAY).await;
        assert!(!waiting.is_finished());
        let hurried = Instant::now();
        shutdown.hurry();
        waiting.await.expect("task");
        assert!(hurried.elapsed() < DELAY, "{:?}", hurried.elapsed());
    }

    #[tokio::test]
    async fn a_plain_token_requests_and_never_hurries() {
        let token = CancellationToken::new();
        let shutdown = Shutdown::from(token.clone());
        assert!(!shutdown.is_requested());
        token.cancel();
        assert!(shutdown.is_requested());
        let start = Instant::now();
        shutdown.readiness_delay(DELAY).await;
        assert!(start.elapsed() >= DELAY);
    }
}
