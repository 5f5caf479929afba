//! The readiness delay under real signals: a second SIGTERM during it skips the rest and drains at once.

use flashsale_testkit::env::DRAIN;
use flashsale_testkit::process::assert_stopping;
use flashsale_testkit::{SaleSpec, TestEnv, eventually};
use reqwest::StatusCode;
use std::time::Duration;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigterm_during_the_readiness_delay_skips_the_rest_of_it() {
    // A delay far longer than the test may take: only the second signal can end it in time.
    const DELAY: Duration = Duration::from_secs(30);
    const GRACE: Duration = Duration::from_secs(40);
    let env = TestEnv::with(|s| {
        s.order_writer.shutdown_delay_ms = DELAY.as_millis() as u64;
        s.order_writer.shutdown_grace_ms = GRACE.as_millis() as u64;
    })
    .await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    let writer = env.start_order_writer_process();
    let first = gw.reserve(sale, &env.token("ana")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
    eventually(DRAIN, || env.order_count(sale), 1).await;

    writer.terminate();
    assert_stopping(&writer.base).await;
    assert!(writer.try_status().is_none(), "still serving its 503");
    writer.terminate();
    let sent = Instant::now();
    let status = writer.exit_within(Duration::from_secs(10)).await;
    let took = sent.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?} after {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the second signal ended the delay: {took:?}"
    );
    env.cleanup().await;
}
