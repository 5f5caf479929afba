//! Services as real processes under real signals: SIGTERM mid-burst or while a dependency hangs stops them
//! within their grace period and loses nothing; SIGKILL between script and confirm loses nothing either.

use flashsale_broker::Names;
use flashsale_domain::SaleId;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::process::assert_stopping;
use flashsale_testkit::{GatewayClient, SaleSpec, TcpProxy, TestEnv, eventually};
use futures_util::stream::{self, StreamExt};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

use super::AMQP;

/// Reserves one unit for each of `buyers` against `gw`, 16 at a time; returns the order ids answered 202.
/// `accepted` counts them as they come, so a test can act mid-burst. Requests that get no answer (the gateway
/// went away) are not 202s.
async fn burst(
    env: &TestEnv,
    gw: &GatewayClient,
    sale: SaleId,
    buyers: std::ops::Range<usize>,
    accepted: &AtomicUsize,
) -> HashSet<String> {
    let tokens: Vec<String> = buyers.map(|i| env.token(&format!("b{i}"))).collect();
    stream::iter(tokens.iter().map(|t| async move {
        let res = gw.reservation(sale, t).send().await.ok()?;
        if res.status() != StatusCode::ACCEPTED {
            return None;
        }
        let body: Value = res.json().await.ok()?;
        accepted.fetch_add(1, Ordering::SeqCst);
        body["order_id"].as_str().map(str::to_owned)
    }))
    .buffer_unordered(16)
    .filter_map(|id| async move { id })
    .collect()
    .await
}

/// How many of `ids` have an order row (each id is the row's primary key, so at most one each).
async fn rows_of(env: &TestEnv, sale: SaleId, ids: &HashSet<String>) -> usize {
    let rows = env.order_ids(sale).await;
    ids.intersection(&rows).count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_process_sigtermed_mid_burst_says_503_serves_on_for_its_delay_exits_0_and_every_202_is_one_order()
 {
    const DELAY: Duration = Duration::from_millis(1000);
    const GRACE: Duration = Duration::from_secs(6);
    // Enough that the burst outlasts the delay: with group commit 2,000 were all answered within it once.
    const BUYERS: usize = 5000;
    let env = TestEnv::with(|s| {
        s.gateway.shutdown_delay_ms = DELAY.as_millis() as u64;
        s.gateway.shutdown_grace_ms = GRACE.as_millis() as u64;
    })
    .await;
    let gw = env.start_gateway_process().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(BUYERS as i64)).await;

    let accepted = AtomicUsize::new(0);
    let term = async {
        while accepted.load(Ordering::SeqCst) < 200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        gw.process().terminate();
        let sent = Instant::now();
        let at_signal = accepted.load(Ordering::SeqCst);
        // Readiness first: a new connection is still accepted, and told the gateway is stopping.
        assert_stopping(&gw.base).await;
        let probed = sent.elapsed();
        let status = gw
            .process()
            .exit_within(DELAY + GRACE + Duration::from_secs(10))
            .await;
        (status, sent.elapsed(), probed, at_signal)
    };
    let (ids, (status, took, probed, at_signal)) =
        tokio::join!(burst(&env, &gw, sale, 0..BUYERS, &accepted), term);
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?} after {took:?}"
    );
    assert!(probed < DELAY, "the 503 came {probed:?} after the signal");
    assert!(
        took >= DELAY && took <= DELAY + GRACE,
        "stopped after {took:?}, delay {DELAY:?}, grace {GRACE:?}"
    );
    assert!(
        ids.len() > at_signal,
        "reservations were still answered 202 during the delay ({at_signal} at the signal, {} in all)",
        ids.len()
    );
    assert!(ids.len() < BUYERS, "the SIGTERM came mid-burst");
    eventually(DRAIN, || rows_of(&env, sale, &ids), ids.len()).await;
    assert!(env.order_count(sale).await <= BUYERS as i64, "no oversell");
    // Nothing left unacknowledged: the order-writer queue is empty and settled.
    let queue = Names::new(&env.settings.amqp.prefix).order_writer_queue();
    let settled = || async {
        let q = env.queue_counts(&queue).await;
        (q.ready, q.unacked)
    };
    eventually(DRAIN, settled, (0, 0)).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_writer_sigtermed_while_draining_says_503_exits_0_acks_only_what_it_wrote_and_a_restart_writes_the_rest()
 {
    const DELAY: Duration = Duration::from_millis(1000);
    const GRACE: Duration = Duration::from_secs(5);
    const BUYERS: usize = 1500;
    let env = TestEnv::with(|s| {
        s.order_writer.batch_size = 5;
        // One message per reservation, so the queue's message count is the count of unwritten reservations
        // (group-committed batches are covered by faults::an_order_writer_killed_mid_burst_loses_nothing).
        s.gateway.group_commit_max = 1;
        s.order_writer.shutdown_delay_ms = DELAY.as_millis() as u64;
        s.order_writer.shutdown_grace_ms = GRACE.as_millis() as u64;
    })
    .await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(BUYERS as i64)).await;
    // The backlog: every reservation confirmed by the broker, none written yet.
    let ids = burst(&env, &gw, sale, 0..BUYERS, &AtomicUsize::new(0)).await;
    assert_eq!(ids.len(), BUYERS);

    let writer = env.start_order_writer_process();
    let deadline = Instant::now() + DRAIN;
    while env.order_count(sale).await < 30 {
        assert!(Instant::now() < deadline, "order-writer never wrote");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.terminate();
    let sent = Instant::now();
    assert_stopping(&writer.base).await;
    let probed = sent.elapsed();
    let status = writer
        .exit_within(DELAY + GRACE + Duration::from_secs(10))
        .await;
    let took = sent.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?} after {took:?}"
    );
    assert!(probed < DELAY, "the 503 came {probed:?} after the signal");
    assert!(
        took >= DELAY && took <= DELAY + GRACE,
        "stopped after {took:?}, delay {DELAY:?}, grace {GRACE:?}"
    );
    let written = env.order_count(sale).await;
    assert!(
        written < BUYERS as i64,
        "stopped mid-backlog ({written} written)"
    );
    // Acknowledged exactly what it committed: every unwritten reservation is back in the queue, none is
    // still held by the stopped consumer, none was acknowledged unwritten.
    let queue = Names::new(&env.settings.amqp.prefix).order_writer_queue();
    let left = (BUYERS as u64 - written as u64, 0, 0);
    let counts = || async {
        let q = env.queue_counts(&queue).await;
        (q.ready, q.unacked, q.consumers)
    };
    eventually(DRAIN, counts, left).await;

    let _restarted = env.start_order_writer_process();
    eventually(DRAIN, || env.order_count(sale), BUYERS as i64).await;
    assert_eq!(
        rows_of(&env, sale, &ids).await,
        BUYERS,
        "every 202 has exactly one row"
    );
    assert_eq!(env.held(sale).await, BUYERS as i64);
    eventually(DRAIN, counts, (0, 0, 1)).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_process_killed_between_script_and_confirm_is_finished_by_another_gateways_relay()
{
    let env = TestEnv::new().await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await.expect("proxy");
    let mut through = env.settings.clone();
    through.amqp.url = SecretString::from(format!("amqp://guest:guest@{}/%2f", proxy.addr()));
    // Long enough that the doomed gateway is still waiting for its confirm when it is killed.
    through.amqp.confirm_timeout_ms = 10_000;
    through.outbox.relay_age_ms = 11_000;
    let doomed = flashsale_testkit::GatewayProcess::start(&through).await;
    let _writer = env.spawn_order_writer().await;
    let sale = doomed.create_sale(&env, &SaleSpec::stock(5)).await;
    let token = env.token("ida");

    // Everything the gateway sends the broker from now on is swallowed: its script runs, its publish never
    // arrives, no confirm comes back.
    proxy.blackhole();
    let request = doomed
        .reservation(sale, &token)
        .header("Idempotency-Key", "buy-once")
        .send();
    let pending = tokio::spawn(request);
    eventually(DRAIN, || env.outbox_len(sale), 1).await;
    doomed.kill().await;
    assert!(
        pending.await.expect("task").is_err(),
        "the buyer got no answer from the killed gateway"
    );
    assert_eq!(
        env.remaining(sale).await,
        Some(4),
        "the script took the unit"
    );
    assert_eq!(
        env.order_count(sale).await,
        0,
        "the message never reached the broker"
    );

    let survivor = env.spawn_gateway().await;
    eventually(DRAIN, || env.order_count(sale), 1).await;
    let rows = env.orders(sale).await;
    assert_eq!(rows[0].1, "ida");
    let retry = survivor.reserve_with_key(sale, &token, "buy-once").await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{retry:?}");
    assert_eq!(retry.body["order_id"], rows[0].0.as_str());
    eventually(DRAIN, || env.outbox_len(sale), 0).await;
    assert_eq!(env.order_count(sale).await, 1, "exactly one row");
    assert_eq!(
        env.remaining(sale).await,
        Some(4),
        "nothing released, nothing sold twice"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_process_sigtermed_while_the_broker_is_unreachable_exits_0_within_its_grace() {
    const GRACE: Duration = Duration::from_secs(5);
    let env = TestEnv::with(|s| s.gateway.shutdown_grace_ms = GRACE.as_millis() as u64).await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await.expect("proxy");
    let mut through = env.settings.clone();
    through.amqp.url = SecretString::from(format!("amqp://guest:guest@{}/%2f", proxy.addr()));
    let gw = flashsale_testkit::GatewayProcess::start(&through).await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;

    // A reservation waiting for a confirm that never comes when the SIGTERM arrives.
    proxy.blackhole();
    let pending = tokio::spawn(gw.reservation(sale, &env.token("jo")).send());
    eventually(DRAIN, || env.outbox_len(sale), 1).await;
    gw.process().terminate();
    let sent = Instant::now();
    let status = gw
        .process()
        .exit_within(GRACE + Duration::from_secs(20))
        .await;
    let took = sent.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?} after {took:?}"
    );
    assert!(took <= GRACE, "stopped after {took:?}, grace {GRACE:?}");
    let answer = pending.await.expect("task").expect("answered before exit");
    assert_eq!(
        answer.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "outcome unknown"
    );

    // Nothing lost: another gateway's relay finishes the reservation.
    proxy.pass();
    let _survivor = env.spawn_gateway().await;
    eventually(DRAIN, || env.order_count(sale), 1).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_writer_sigtermed_while_the_broker_is_unreachable_exits_0_within_its_grace() {
    const GRACE: Duration = Duration::from_secs(5);
    let env = TestEnv::with(|s| s.order_writer.shutdown_grace_ms = GRACE.as_millis() as u64).await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await.expect("proxy");
    let mut through = env.settings.clone();
    through.amqp.url = SecretString::from(format!("amqp://guest:guest@{}/%2f", proxy.addr()));
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    let writer = flashsale_testkit::OrderWriterProcess::start(&through);
    let first = gw.reserve(sale, &env.token("kai")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
    eventually(DRAIN, || env.order_count(sale), 1).await;

    proxy.blackhole();
    writer.terminate();
    let sent = Instant::now();
    let status = writer.exit_within(GRACE + Duration::from_secs(20)).await;
    let took = sent.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?} after {took:?}"
    );
    assert!(took <= GRACE, "stopped after {took:?}, grace {GRACE:?}");
    env.cleanup().await;
}

/// Ready messages in a queue (passive declare).
async fn ready_in(queue: &str) -> u32 {
    let conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let ch = conn.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .expect("queue exists");
    let _ = conn.close(200, "checked".into()).await;
    q.message_count()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_writer_stuck_on_the_database_at_sigterm_stops_at_its_grace_and_loses_nothing() {
    const GRACE: Duration = Duration::from_secs(3);
    let env = TestEnv::with(|s| s.order_writer.shutdown_grace_ms = GRACE.as_millis() as u64).await;
    let proxy = TcpProxy::start("127.0.0.1:5432").await.expect("proxy");
    let mut through = env.settings.clone();
    let pg = secrecy::ExposeSecret::expose_secret(&env.settings.postgres.url)
        .replace("127.0.0.1:5432", &proxy.addr().to_string());
    through.postgres.url = SecretString::from(pg);
    // A database that hangs rather than refuses: waiting for a connection outlasts the grace period.
    through.postgres.acquire_timeout_ms = 60_000;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    let writer = flashsale_testkit::OrderWriterProcess::start(&through);
    let first = gw.reserve(sale, &env.token("lou")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
    eventually(DRAIN, || env.order_count(sale), 1).await;

    // The next batch hangs on a database connection that no longer answers.
    proxy.blackhole();
    let second = gw.reserve(sale, &env.token("max")).await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{second:?}");
    let queue = Names::new(&env.settings.amqp.prefix).order_writer_queue();
    eventually(DRAIN, || ready_in(&queue), 0).await;
    writer.terminate();
    let sent = Instant::now();
    let status = writer.exit_within(GRACE + Duration::from_secs(20)).await;
    let took = sent.elapsed();
    assert!(
        took < GRACE + Duration::from_secs(1),
        "stopped after {took:?}, grace {GRACE:?}"
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "a shutdown cut short by its grace exits with an error"
    );

    // The unacknowledged batch went back to the queue: a new order-writer writes it.
    let _restarted = env.spawn_order_writer().await;
    eventually(DRAIN, || env.order_count(sale), 2).await;
    env.cleanup().await;
}
