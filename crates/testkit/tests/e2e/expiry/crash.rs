//! expiry SIGKILLed, or SIGTERMed, in the middle of a wave of expirations, then started again: every unit comes
//! back exactly once (the conditional update and the idempotent release script), none is left held. SIGTERM also
//! exits 0 within `expiry.shutdown_grace_ms`.

use super::{count_status, sale_with_window};
use flashsale_broker::Names;
use flashsale_stock::ReservationState;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::process::assert_stopping;
use flashsale_testkit::{TestEnv, eventually};
use futures_util::future::join_all;
use reqwest::StatusCode;
use std::time::Duration;
use tokio::time::Instant;

const ORDERS: usize = 150;
/// The readiness delay: `/readyz` answers 503 this long after SIGTERM before the ops port closes.
const DELAY: Duration = Duration::from_millis(1000);

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_expiry_returns_no_unit_twice_and_leaves_none_stuck() {
    stopped_mid_wave(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigtermed_expiry_exits_0_within_its_grace_and_returns_every_unit_once() {
    stopped_mid_wave(true).await;
}

async fn stopped_mid_wave(sigterm: bool) {
    // Small batches, so the wave takes long enough to be cut in the middle.
    let env = TestEnv::with(|s| {
        s.expiry.batch_size = 5;
        s.expiry.shutdown_delay_ms = DELAY.as_millis() as u64;
    })
    .await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let total = i64::try_from(ORDERS).unwrap_or(i64::MAX);
    let sale = gw.create_sale(&env, &sale_with_window(total, 2)).await;
    let tokens: Vec<String> = (0..ORDERS)
        .map(|i| env.token(&format!("buyer{i}")))
        .collect();
    let replies = join_all(tokens.iter().map(|t| gw.reserve(sale, t))).await;
    let orders: Vec<_> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
            super::order_id(r)
        })
        .collect();
    eventually(DRAIN, || env.held(sale), total).await;

    let expiry = env.start_expiry_process().await;
    // Kill as soon as the wave has started.
    let deadline = Instant::now() + Duration::from_secs(15);
    while count_status(&env, sale, "expired").await == 0 {
        assert!(Instant::now() < deadline, "no expiration within 15 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let queue = Names::new(&env.settings.amqp.prefix).expiry_due_queue();
    if sigterm {
        expiry.process().terminate();
        let sent = Instant::now();
        assert_stopping(&expiry.base).await;
        let grace = Duration::from_millis(env.settings.expiry.shutdown_grace_ms.min(5000));
        let status = expiry.process().exit_within(DELAY + grace).await;
        let took = sent.elapsed();
        assert!(
            status.is_some_and(|s| s.success()),
            "expiry exits 0 within its delay and grace after SIGTERM: {status:?} after {took:?}"
        );
        assert!(
            took >= DELAY,
            "/readyz answered for the whole delay: {took:?}"
        );
        // Nothing is held by the stopped consumer: what it did not finish is back in the queue.
        let held = || async {
            let q = env.queue_counts(&queue).await;
            (q.unacked, q.consumers)
        };
        eventually(DRAIN, held, (0, 0)).await;
    } else {
        expiry.kill().await;
    }
    let at_stop = count_status(&env, sale, "expired").await;
    eprintln!("expiry stopped (SIGTERM: {sigterm}) after {at_stop} of {ORDERS} expirations");

    // Started again: the unacknowledged due messages come back and the re-drive finishes what was cut short.
    let _again = env.spawn_expiry().await;
    eventually(DRAIN, || count_status(&env, sale, "expired"), ORDERS).await;
    let all_released = || async {
        let mut n = 0;
        for o in &orders {
            if env.reservation_state(sale, *o).await == Some(ReservationState::Expired) {
                n += 1;
            }
        }
        n
    };
    eventually(DRAIN, all_released, ORDERS).await;
    // Every record is expired now, so no release can run again: the count is final. Exactly the stock is
    // back (a unit returned twice would show more), and nothing is held in the database.
    assert_eq!(env.remaining(sale).await, Some(total));
    assert_eq!(env.held(sale).await, 0);
    let settled = || async {
        let q = env.queue_counts(&queue).await;
        (q.ready, q.unacked)
    };
    eventually(DRAIN, settled, (0, 0)).await;
    env.cleanup().await;
}
