//! A circuit breaker for one dependency (Redis or RabbitMQ) of the reservation hot path.
//!
//! Closed: every call goes through; `breaker.failure_threshold` consecutive dependency failures (timeouts,
//! connection errors; never business refusals) open it. Open: every call is refused at once for
//! `breaker.cool_down_ms`, with the remaining cool-down as Retry-After. Then half-open: at most
//! `breaker.half_open_probes` calls at a time go through; the first success closes it, a failure re-opens it.
//!
//! Hand-written rather than a crate: `failsafe` takes a mutex on every permission check, lets any number of calls
//! through while half-open and cannot say how long the cool-down still runs. Here the whole state is one
//! `AtomicU64`, so checking a closed breaker is a single load and every transition is one compare-and-swap.

use prometheus::{IntCounter, IntGauge};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

// The word: the state in the low 2 bits. Open: the cool-down's end (ms since `base`) above them. Half-open: the
// probes in flight (16 bits), then the epoch (the end of the cool-down that preceded it), so the outcome of a
// probe from an earlier half-open period can never move the current one.
const TAG: u64 = 0b11;
const CLOSED: u64 = 0;
const HALF_OPEN: u64 = 1;
const OPEN: u64 = 2;
const PROBE_SHIFT: u32 = 2;
const PROBE_ONE: u64 = 1 << PROBE_SHIFT;
const PROBE_MASK: u64 = 0xFFFF;
const EPOCH_SHIFT: u32 = 18;

/// How long a caller refused while every half-open probe is in flight should wait: a probe ends within the
/// dependency's own timeout.
const PROBES_BUSY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    HalfOpen,
    Open,
}

impl State {
    /// The value of `flashsale_breaker_state`.
    pub fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        }
    }

    fn label(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::HalfOpen => "half_open",
            State::Open => "open",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub failure_threshold: u32,
    pub cool_down: Duration,
    pub half_open_probes: u16,
}

/// `flashsale_breaker_state{dependency}` and `flashsale_breaker_transitions_total{dependency,to}` of one breaker.
pub struct Instruments {
    pub state: IntGauge,
    pub to_closed: IntCounter,
    pub to_half_open: IntCounter,
    pub to_open: IntCounter,
}

pub struct Breaker {
    dependency: &'static str,
    word: AtomicU64,
    /// Consecutive failures while closed; any success resets it.
    failures: AtomicU32,
    policy: Policy,
    base: Instant,
    instruments: Instruments,
}

/// The call may go ahead; report how it went with `success` or `failure`. Dropped without either (a business
/// refusal, or the request went away), it counts as neither and frees its probe slot.
#[must_use]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    /// The half-open epoch of a probe; `None` for a call made while closed.
    probe: Option<u64>,
    reported: bool,
}

/// The call was refused without touching the dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

impl Refused {
    /// Whole seconds for Retry-After: rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_millis().div_ceil(1000).max(1) as u64
    }
}

impl Breaker {
    pub fn new(dependency: &'static str, policy: Policy, instruments: Instruments) -> Self {
        instruments.state.set(State::Closed.gauge());
        Self {
            dependency,
            word: AtomicU64::new(CLOSED),
            failures: AtomicU32::new(0),
            policy,
            base: Instant::now(),
            instruments,
        }
    }

    /// Permission to call the dependency now.
    pub fn acquire(&self) -> Result<Permit<'_>, Refused> {
        // The hot path: one load while closed.
        if self.word.load(Ordering::Acquire) & TAG == CLOSED {
            return Ok(self.permit(None));
        }
        self.acquire_at(self.now_ms())
    }

    /// The state as last changed (an open breaker whose cool-down has run out turns half-open on the next call).
    pub fn state(&self) -> State {
        match self.word.load(Ordering::Acquire) & TAG {
            CLOSED => State::Closed,
            HALF_OPEN => State::HalfOpen,
            _ => State::Open,
        }
    }

    /// How much of the cool-down is left, if the breaker is open and it has not run out.
    pub fn open_for(&self) -> Option<Duration> {
        self.open_for_at(self.now_ms())
    }

    fn open_for_at(&self, now: u64) -> Option<Duration> {
        let w = self.word.load(Ordering::Acquire);
        (w & TAG == OPEN && now < w >> 2).then(|| Duration::from_millis((w >> 2) - now))
    }

    /// Sets the state gauge from the state itself (a scrape never shows a transition out of order).
    pub fn refresh_gauge(&self) {
        self.instruments.state.set(self.state().gauge());
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX >> 4)
    }

    fn permit(&self, probe: Option<u64>) -> Permit<'_> {
        Permit {
            breaker: self,
            probe,
            reported: false,
        }
    }

    fn acquire_at(&self, now: u64) -> Result<Permit<'_>, Refused> {
        let mut w = self.word.load(Ordering::Acquire);
        loop {
            let next = match w & TAG {
                CLOSED => return Ok(self.permit(None)),
                OPEN => {
                    let until = w >> 2;
                    if now < until {
                        return Err(Refused {
                            retry_after: Duration::from_millis(until - now),
                        });
                    }
                    // Cool-down over: half-open, with this call as its first probe.
                    HALF_OPEN | PROBE_ONE | (until << EPOCH_SHIFT)
                }
                _ => {
                    if (w >> PROBE_SHIFT) & PROBE_MASK >= u64::from(self.policy.half_open_probes) {
                        return Err(Refused {
                            retry_after: PROBES_BUSY,
                        });
                    }
                    w + PROBE_ONE
                }
            };
            match self
                .word
                .compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if w & TAG == OPEN {
                        self.transitioned(State::HalfOpen);
                    }
                    return Ok(self.permit(Some(next >> EPOCH_SHIFT)));
                }
                Err(actual) => w = actual,
            }
        }
    }

    fn closed_success(&self) {
        // A load first: the common case (no failures) writes nothing, so callers do not contend on the line.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    fn closed_failure(&self, now: u64) {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures < self.policy.failure_threshold {
            return;
        }
        let open = self.open_word(now);
        if self
            .word
            .compare_exchange(CLOSED, open, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tracing::warn!(
                dependency = self.dependency,
                failures,
                "circuit breaker opened"
            );
            self.transitioned(State::Open);
        }
    }

    /// Moves a half-open breaker of `epoch` to `next` (closed or open again); false when it already moved on.
    fn end_half_open(&self, epoch: u64, next: u64) -> bool {
        let mut w = self.word.load(Ordering::Acquire);
        while w & TAG == HALF_OPEN && w >> EPOCH_SHIFT == epoch {
            match self
                .word
                .compare_exchange_weak(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(actual) => w = actual,
            }
        }
        false
    }

    fn probe_success(&self, epoch: u64) {
        self.failures.store(0, Ordering::Relaxed);
        if self.end_half_open(epoch, CLOSED) {
            tracing::info!(dependency = self.dependency, "circuit breaker closed");
            self.transitioned(State::Closed);
        }
    }

    fn probe_failure(&self, epoch: u64, now: u64) {
        if self.end_half_open(epoch, self.open_word(now)) {
            tracing::warn!(dependency = self.dependency, "circuit breaker re-opened");
            self.transitioned(State::Open);
        }
    }

    fn release_probe(&self, epoch: u64) {
        let mut w = self.word.load(Ordering::Acquire);
        while w & TAG == HALF_OPEN
            && w >> EPOCH_SHIFT == epoch
            && (w >> PROBE_SHIFT) & PROBE_MASK > 0
        {
            match self.word.compare_exchange_weak(
                w,
                w - PROBE_ONE,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => w = actual,
            }
        }
    }

    fn open_word(&self, now: u64) -> u64 {
        let cool_down = u64::try_from(self.policy.cool_down.as_millis()).unwrap_or(u64::MAX >> 20);
        OPEN | ((now + cool_down.max(1)) << 2)
    }

    fn transitioned(&self, to: State) {
        match to {
            State::Closed => &self.instruments.to_closed,
            State::HalfOpen => &self.instruments.to_half_open,
            State::Open => &self.instruments.to_open,
        }
        .inc();
        self.refresh_gauge();
        tracing::debug!(
            dependency = self.dependency,
            to = to.label(),
            "breaker transition"
        );
    }
}

impl Permit<'_> {
    pub fn success(mut self) {
        self.reported = true;
        match self.probe {
            None => self.breaker.closed_success(),
            Some(epoch) => self.breaker.probe_success(epoch),
        }
    }

    /// The dependency failed (timeout, connection error), not the request.
    pub fn failure(self) {
        let now = self.breaker.now_ms();
        self.failure_at(now);
    }

    fn failure_at(mut self, now: u64) {
        self.reported = true;
        match self.probe {
            None => self.breaker.closed_failure(now),
            Some(epoch) => self.breaker.probe_failure(epoch, now),
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let (false, Some(epoch)) = (self.reported, self.probe) {
            self.breaker.release_probe(epoch);
        }
    }
}

#[cfg(test)]
mod tests;
