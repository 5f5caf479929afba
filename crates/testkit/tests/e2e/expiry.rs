//! The expiry service against the real stores: an unpaid reservation ends `expired` within a second of its
//! deadline and its units go back on sale exactly once, whatever the other windows, crashes, lost messages or a
//! stopped order-writer.

mod crash;
mod sweeper;

use chrono::{DateTime, Utc};
use flashsale_domain::{OrderId, SaleId};
use flashsale_stock::ReservationState;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{GatewayClient, Reply, SaleSpec, TestEnv, eventually};
use reqwest::StatusCode;
use std::time::Duration;

/// Slack for polling and scheduling on a loaded 2-core machine, on top of the 1 s the contract allows.
const ON_TIME: Duration = Duration::from_millis(1000);

pub(crate) fn sale_with_window(stock: i64, payment_window_secs: i64) -> SaleSpec {
    SaleSpec {
        stock,
        payment_window_secs,
        ..SaleSpec::default()
    }
}

pub(crate) fn order_id(reply: &Reply) -> OrderId {
    reply.body["order_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no order_id in {reply:?}"))
}

pub(crate) fn expires_at(reply: &Reply) -> DateTime<Utc> {
    reply.body["expires_at"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("no expires_at in {reply:?}"))
}

/// Time left until `deadline + ON_TIME` (zero once it has passed: one last look, then fail).
pub(crate) fn until_late(deadline: DateTime<Utc>) -> Duration {
    (deadline - Utc::now()).to_std().unwrap_or_default() + ON_TIME
}

/// The order row's status, `None` while it is not written.
pub(crate) async fn row_status(env: &TestEnv, sale: SaleId, order: OrderId) -> Option<String> {
    let id = order.to_string();
    env.orders(sale)
        .await
        .into_iter()
        .find(|(o, _, _)| *o == id)
        .map(|(_, _, status)| status)
}

/// Orders of a sale in `status`.
pub(crate) async fn count_status(env: &TestEnv, sale: SaleId, status: &str) -> usize {
    env.orders(sale)
        .await
        .iter()
        .filter(|(_, _, s)| s == status)
        .count()
}

async fn order_view_status(gw: &GatewayClient, order: OrderId, token: &str) -> String {
    let reply = gw
        .get(&format!("/api/v1/orders/{order}"), Some(token))
        .await;
    reply.body["status"].as_str().unwrap_or("").to_owned()
}

/// Reserves until the gateway takes it, for at most 2 s: units that come back are on sale again on every
/// gateway within 1 s (a gateway may answer SOLD_OUT from memory until then).
pub(crate) async fn reserve_returned_unit(gw: &GatewayClient, sale: SaleId, token: &str) -> Reply {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let reply = gw.reserve(sale, token).await;
        if reply.status == StatusCode::ACCEPTED || tokio::time::Instant::now() >= deadline {
            return reply;
        }
        assert_eq!(reply.code(), "SOLD_OUT", "{reply:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unpaid_reservation_expires_on_time_and_its_unit_is_sold_again() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let expiry = env.spawn_expiry().await;
    let sale = gw.create_sale(&env, &sale_with_window(2, 3)).await;
    let (alice, bob, carol) = (env.token("alice"), env.token("bob"), env.token("carol"));

    let a = gw.reserve(sale, &alice).await;
    let b = gw.reserve(sale, &bob).await;
    assert_eq!(
        (a.status, b.status),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED)
    );
    let sold_out = gw.reserve(sale, &carol).await;
    assert_eq!(sold_out.code(), "SOLD_OUT", "{sold_out:?}");
    eventually(DRAIN, || env.held(sale), 2).await;

    // Expired in the buyer's order view (and so in PostgreSQL) within 1 s after the deadline.
    for (reply, token) in [(&a, &alice), (&b, &bob)] {
        let order = order_id(reply);
        eventually(
            until_late(expires_at(reply)),
            || order_view_status(&gw, order, token),
            "expired".to_owned(),
        )
        .await;
        assert_eq!(
            row_status(&env, sale, order).await.as_deref(),
            Some("expired")
        );
        assert_eq!(
            env.reservation_state(sale, order).await,
            Some(ReservationState::Expired)
        );
    }
    // Units back exactly once, in Redis and in the database's count.
    eventually(DRAIN, || env.remaining(sale), Some(2)).await;
    assert_eq!(gw.sale(sale).await.body["remaining"], 2);
    assert_eq!(env.held(sale).await, 0);
    eventually(
        DRAIN,
        || expiry.metric(r#"flashsale_expirations_total{source="message"}"#),
        2.0,
    )
    .await;

    // The same buyer may reserve again, and another buyer takes the other returned unit.
    let again = reserve_returned_unit(&gw, sale, &alice).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{again:?}");
    let other = reserve_returned_unit(&gw, sale, &carol).await;
    assert_eq!(other.status, StatusCode::ACCEPTED, "{other:?}");
    eventually(DRAIN, || env.held(sale), 2).await;
    assert_eq!(env.remaining(sale).await, Some(0));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_window_never_waits_behind_a_long_one() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let _expiry = env.spawn_expiry().await;
    let long = gw.create_sale(&env, &sale_with_window(10, 120)).await;
    let short = gw.create_sale(&env, &sale_with_window(10, 2)).await;

    // Interleaved, so every short reservation's message is published behind a long one's.
    let mut shorts = Vec::new();
    for i in 0..5 {
        let l = gw.reserve(long, &env.token(&format!("long{i}"))).await;
        assert_eq!(l.status, StatusCode::ACCEPTED, "{l:?}");
        let s = gw.reserve(short, &env.token(&format!("short{i}"))).await;
        assert_eq!(s.status, StatusCode::ACCEPTED, "{s:?}");
        shorts.push(s);
    }
    let last_deadline = shorts.iter().map(expires_at).max().unwrap_or_else(Utc::now);
    eventually(
        until_late(last_deadline),
        || count_status(&env, short, "expired"),
        5,
    )
    .await;
    eventually(DRAIN, || env.remaining(short), Some(10)).await;
    assert_eq!(env.held(short).await, 0);

    // The long window's orders are untouched.
    assert_eq!(count_status(&env, long, "pending_payment").await, 5);
    assert_eq!(env.held(long).await, 5);
    assert_eq!(env.remaining(long).await, Some(5));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_reports_its_dependencies_and_refuses_bad_settings() {
    let env = TestEnv::new().await;
    let expiry = env.spawn_expiry().await;
    let http = reqwest::Client::new();
    let ready = eventually(
        DRAIN,
        || async {
            let r = http.get(format!("{}/readyz", expiry.base)).send().await;
            r.map(|r| r.status()).unwrap_or(StatusCode::BAD_GATEWAY)
        },
        StatusCode::OK,
    )
    .await;
    assert_eq!(ready, StatusCode::OK);
    let body: serde_json::Value = http
        .get(format!("{}/readyz", expiry.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("readyz: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("readyz body: {e}"));
    for dependency in ["redis", "amqp", "postgres"] {
        assert_eq!(body["checks"][dependency], "ok", "{body}");
    }

    for (adjust, name) in [
        (
            (|s: &mut flashsale_platform::Settings| s.expiry.sweep_interval_ms = 10) as fn(&mut _),
            "expiry.sweep_interval_ms",
        ),
        (|s| s.expiry.batch_size = 0, "expiry.batch_size"),
        (
            |s| s.expiry.failed_batch_attempts = 0,
            "expiry.failed_batch_attempts",
        ),
    ] {
        let mut s = env.settings.clone();
        adjust(&mut s);
        let error = s
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains(name), "{name}: {error:?}");
    }
    env.cleanup().await;
}
