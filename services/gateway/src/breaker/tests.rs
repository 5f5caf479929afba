use super::*;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

fn breaker(threshold: u32, cool_down_ms: u64, probes: u16) -> Breaker {
    let gauge = IntGaugeVec::new(Opts::new("s", "s"), &["dependency"]).expect("gauge");
    let counter = IntCounterVec::new(Opts::new("t", "t"), &["to"]).expect("counter");
    Breaker::new(
        "test",
        Policy {
            failure_threshold: threshold,
            cool_down: Duration::from_millis(cool_down_ms),
            half_open_probes: probes,
        },
        Instruments {
            state: gauge.with_label_values(&["test"]),
            to_closed: counter.with_label_values(&["closed"]),
            to_half_open: counter.with_label_values(&["half_open"]),
            to_open: counter.with_label_values(&["open"]),
        },
    )
}

fn fail(b: &Breaker, now: u64) {
    b.acquire_at(now).expect("permitted").failure_at(now);
}

#[test]
fn opens_after_the_threshold_of_consecutive_failures_only() {
    let b = breaker(3, 1000, 1);
    fail(&b, 0);
    fail(&b, 0);
    b.acquire_at(0).expect("closed").success();
    fail(&b, 0);
    fail(&b, 0);
    assert_eq!(b.state(), State::Closed, "a success reset the count");
    fail(&b, 10);
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.instruments.state.get(), 2);
    assert_eq!(b.instruments.to_open.get(), 1);
}

#[test]
fn a_call_dropped_without_outcome_counts_as_nothing() {
    let b = breaker(2, 1000, 1);
    fail(&b, 0);
    drop(b.acquire_at(0).expect("closed"));
    fail(&b, 0);
    assert_eq!(
        b.state(),
        State::Open,
        "the dropped call neither reset nor added"
    );
}

#[test]
fn open_refuses_with_the_remaining_cool_down() {
    let b = breaker(1, 2500, 1);
    fail(&b, 100);
    let refused = b.acquire_at(600).err().expect("open refuses");
    assert_eq!(refused.retry_after, Duration::from_millis(2000));
    assert_eq!(refused.retry_after_secs(), 2);
    let late = b.acquire_at(2599).err().expect("still open");
    assert_eq!(late.retry_after_secs(), 1, "rounded up, at least 1 s");
    assert_eq!(b.open_for_at(600), Some(Duration::from_millis(2000)));
    assert_eq!(b.open_for_at(2600), None, "cool-down over");
}

#[test]
fn after_the_cool_down_a_limited_number_of_probes_go_through() {
    let b = breaker(1, 1000, 2);
    fail(&b, 0);
    let first = b.acquire_at(1000).expect("first probe");
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.instruments.state.get(), 1);
    let second = b.acquire_at(1001).expect("second probe");
    let refused = b.acquire_at(1002).err().expect("probes all in flight");
    assert_eq!(refused.retry_after_secs(), 1);
    // A probe that ends without an outcome frees its slot.
    drop(second);
    let third = b.acquire_at(1003).expect("slot freed");
    first.success();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.instruments.state.get(), 0);
    assert_eq!(b.instruments.to_closed.get(), 1);
    // The late probe's outcome belongs to a half-open period that is over: it moves nothing.
    third.failure_at(1004);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_failed_probe_reopens_for_a_full_cool_down() {
    let b = breaker(1, 1000, 1);
    fail(&b, 0);
    b.acquire_at(1500).expect("probe").failure_at(1600);
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.instruments.to_open.get(), 2);
    let refused = b.acquire_at(1600).err().expect("open again");
    assert_eq!(refused.retry_after, Duration::from_millis(1000));
    assert!(b.acquire_at(2600).is_ok(), "half-open again after it");
}

#[test]
fn a_stale_probe_never_moves_a_later_half_open_period() {
    let b = breaker(1, 1000, 2);
    fail(&b, 0);
    let stale = b.acquire_at(1000).expect("probe of period one");
    b.acquire_at(1000).expect("probe").failure_at(1000);
    // Period two begins; the stale probe's drop must not free one of its slots.
    let p1 = b.acquire_at(2000).expect("period two");
    let _p2 = b.acquire_at(2000).expect("period two");
    drop(stale);
    assert!(b.acquire_at(2000).is_err(), "still two probes in flight");
    p1.success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_closed_call_failing_late_does_not_reopen_a_half_open_breaker() {
    let b = breaker(1, 1000, 1);
    let slow = b.acquire_at(0).expect("closed");
    fail(&b, 0);
    let probe = b.acquire_at(1000).expect("probe");
    slow.failure_at(1000);
    assert_eq!(b.state(), State::HalfOpen);
    probe.success();
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn concurrent_failures_open_it_exactly_once() {
    let b = std::sync::Arc::new(breaker(10, 60_000, 1));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    if let Ok(p) = b.acquire() {
                        p.failure();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.instruments.to_open.get(), 1);
}
