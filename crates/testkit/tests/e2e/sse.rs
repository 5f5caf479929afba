//! The live stock feed (`GET /api/v1/sales/{id}/events`) and the list of sales (`GET /api/v1/sales`) against
//! the real services: counters at once on connect, reservations, expiry and payments reflected within a second,
//! `Last-Event-ID` resumes with the current state, a slow client is dropped while a fast one keeps up, and the
//! refusals come as JSON before any stream starts.

use crate::expiry::{expires_at, sale_with_window};
use crate::payment::reserve_and_checkout;
use crate::poison::metric;
use flashsale_domain::{OrderId, SaleId, UserId};
use flashsale_stock::{RateLimits, ReserveOutcome, ReserveRequest};
use flashsale_testkit::{GatewayHandle, SaleSpec, SseItem, SseStream, TestEnv, eventually};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The contract's second, plus slack for scheduling on a loaded 2-core machine.
const WITHIN: Duration = Duration::from_millis(1500);

fn events_url(gw: &GatewayHandle, sale: impl std::fmt::Display) -> String {
    format!("{}/api/v1/sales/{sale}/events", gw.base)
}

async fn open(gw: &GatewayHandle, sale: SaleId, last: Option<&str>) -> SseStream {
    let stream = SseStream::open(&gw.http, &events_url(gw, sale), last).await;
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(
        stream.headers["content-type"].to_str().ok(),
        Some("text/event-stream")
    );
    stream
}

fn remaining_is(n: i64) -> impl Fn(&Value) -> bool {
    move |d| d["remaining"] == n
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_starts_with_the_counters_and_follows_reservations_expiry_and_payment_within_a_second()
 {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let _expiry = env.spawn_expiry().await;
    let pay = env.spawn_payment().await;
    let sale = gw.create_sale(&env, &sale_with_window(3, 4)).await;

    let mut stream = open(&gw, sale, None).await;
    assert_eq!(stream.next(WITHIN).await, Some(SseItem::Retry(1000)));
    let (id, first) = stream
        .next_event(WITHIN)
        .await
        .expect("counters on connect");
    assert!(id.is_some());
    assert_eq!(first["sale_id"], sale.get());
    assert_eq!(
        (&first["remaining"], &first["reserved"], &first["sold"]),
        (&Value::from(3), &Value::from(0), &Value::from(0)),
        "{first}"
    );
    assert_eq!(first["status"], "active");

    // A reservation.
    let held = gw.reserve(sale, &env.token("ada")).await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{held:?}");
    let (_, seen) = stream
        .until(WITHIN, remaining_is(2))
        .await
        .expect("the reservation within a second");
    assert_eq!(
        (&seen["reserved"], &seen["sold"]),
        (&Value::from(1), &Value::from(0))
    );

    // A payment (through the simulator's signed webhook).
    let checkout = reserve_and_checkout(&env, &gw, &pay, sale, "bea").await;
    let payment = checkout["payment_id"].as_str().unwrap_or_default();
    let done = pay.complete(payment, "succeeded").await;
    assert_eq!(done.body["status"], "paid", "{done:?}");
    let (_, seen) = stream
        .until(WITHIN, |d| d["sold"] == 1)
        .await
        .expect("the payment within a second");
    assert_eq!(
        (&seen["remaining"], &seen["reserved"]),
        (&Value::from(1), &Value::from(1))
    );

    // ada never pays: her unit comes back when her window ends (expiry's second), then the feed's second.
    let deadline = expires_at(&held);
    let left = (deadline - chrono::Utc::now()).to_std().unwrap_or_default();
    let (_, seen) = stream
        .until(left + Duration::from_secs(1) + WITHIN, remaining_is(2))
        .await
        .expect("the expiry within a second");
    assert_eq!(
        (&seen["reserved"], &seen["sold"]),
        (&Value::from(0), &Value::from(1))
    );
    assert!(
        chrono::Utc::now() < deadline + chrono::Duration::milliseconds(3000),
        "the expiry reached the stream late"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn last_event_id_resumes_with_the_current_state_and_never_repeats_an_older_one() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;

    let mut first = open(&gw, sale, None).await;
    let (id5, _) = first.until(WITHIN, remaining_is(5)).await.expect("connect");
    let id5 = id5.expect("events carry ids");
    drop(first);

    // Up to date: nothing is sent until something changes, and then the change.
    let mut current = open(&gw, sale, Some(&id5)).await;
    assert_eq!(
        gw.reserve(sale, &env.token("u1")).await.status,
        StatusCode::ACCEPTED
    );
    let (id4, seen) = current.next_event(WITHIN).await.expect("the change");
    assert_eq!(
        seen["remaining"], 4,
        "the resumed stream repeated a state: {seen}"
    );
    let id4 = id4.expect("id");
    assert_ne!(id4, id5);
    drop(current);

    // Changes while disconnected: the first event after resuming is the current state.
    for user in ["u2", "u3"] {
        assert_eq!(
            gw.reserve(sale, &env.token(user)).await.status,
            StatusCode::ACCEPTED
        );
    }
    let mut resumed = open(&gw, sale, Some(&id4)).await;
    let (_, seen) = resumed
        .next_event(WITHIN)
        .await
        .expect("the missed state at once");
    assert_eq!(seen["remaining"], 2, "{seen}");

    // An id this API never sent counts as none: the current state.
    let mut unknown = open(&gw, sale, Some("not-an-id")).await;
    let (_, seen) = unknown.next_event(WITHIN).await.expect("current state");
    assert_eq!(seen["remaining"], 2, "{seen}");

    // Another gateway resumes the same ids: versions live in Redis.
    let other = env.spawn_gateway().await;
    let mut elsewhere = open(&other, sale, Some(&id4)).await;
    let (_, seen) = elsewhere.next_event(WITHIN).await.expect("current state");
    assert_eq!(seen["remaining"], 2, "{seen}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_json_before_the_stream_and_streams_are_bounded_and_pinged() {
    let env = TestEnv::with(|s| {
        s.sse.max_streams = 1;
        s.sse.heartbeat_ms = 50;
    })
    .await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;

    for (path, status, code) in [
        ("999999", StatusCode::NOT_FOUND, "SALE_NOT_FOUND"),
        ("abc", StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
        ("0", StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
    ] {
        let refused = SseStream::open(&gw.http, &events_url(&gw, path), None).await;
        assert_eq!(refused.status, status, "{path}");
        assert_eq!(refused.error_body().await["error"]["code"], code, "{path}");
    }

    let mut only = open(&gw, sale, None).await;
    let full = SseStream::open(&gw.http, &events_url(&gw, sale), None).await;
    assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(full.headers.contains_key("retry-after"));
    assert_eq!(full.error_body().await["error"]["code"], "UNAVAILABLE");

    // An idle stream is pinged.
    only.next_event(WITHIN).await.expect("counters");
    assert_eq!(
        only.next(WITHIN).await,
        Some(SseItem::Comment(" ping".into()))
    );
    assert_eq!(metric(&gw.base, "flashsale_sse_streams", "").await, 1.0);

    // A closed stream gives its place back.
    drop(only);
    eventually(
        WITHIN,
        || async { metric(&gw.base, "flashsale_sse_streams", "").await },
        0.0,
    )
    .await;
    let mut again = open(&gw, sale, None).await;
    again.next_event(WITHIN).await.expect("counters");
    env.cleanup().await;
}

/// A raw connection that asks for the stream and then reads nothing: its receive buffer is tiny, so the
/// gateway's writes back up quickly.
async fn stalled_client(gw: &GatewayHandle, sale: SaleId) -> tokio::net::TcpStream {
    let addr: std::net::SocketAddr = gw
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("gateway address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(2048).expect("SO_RCVBUF");
    let mut conn = socket.connect(addr).await.expect("connect");
    let head = format!(
        "GET /api/v1/sales/{sale}/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.expect("request");
    conn
}

/// Reservations taken straight through the script (no broker), as fast as Redis goes: each one changes the
/// counters and announces them.
async fn churn(env: &TestEnv, sale: SaleId, from: usize, n: usize) {
    let limits = RateLimits {
        buyer_per_sec: 1000,
        buyer_burst: 1000,
        idempotency_ttl_secs: 60,
        announce_every_ms: 1,
    };
    let tasks: Vec<_> = (from..from + n)
        .map(|i| {
            let stock = env.stock.clone();
            tokio::spawn(async move {
                let user = UserId::parse(format!("churn{i}")).expect("user");
                let req = ReserveRequest {
                    sale,
                    order_id: OrderId::new_v7(),
                    user: &user,
                    quantity: 1,
                    idempotency_key: None,
                };
                let outcome = stock.reserve(&req, &limits).await.expect("script ran");
                assert!(
                    matches!(outcome, ReserveOutcome::Reserved(_)),
                    "{outcome:?}"
                );
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("reserve task");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_client_is_dropped_while_a_fast_one_keeps_up() {
    let env = TestEnv::with(|s| {
        s.sse.coalesce_ms = 1;
        s.sse.client_buffer = 2;
        s.sse.send_buffer_bytes = 4096;
        // Nothing re-publishes the broker-less reservations of `churn` meanwhile.
        s.outbox.relay_interval_ms = 60_000;
    })
    .await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(1_000_000)).await;
    let mut fast = open(&gw, sale, None).await;
    fast.until(WITHIN, remaining_is(1_000_000))
        .await
        .expect("connect");
    let mut slow = stalled_client(&gw, sale).await;
    eventually(
        WITHIN,
        || async { metric(&gw.base, "flashsale_sse_streams", "").await },
        2.0,
    )
    .await;

    // Change the counters until the stalled client has fallen behind; the fast one reads all along.
    let (seen_tx, seen) = tokio::sync::watch::channel(Value::Null);
    let events = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = events.clone();
    let reader = tokio::spawn(async move {
        while let Some((_, data)) = fast.next_event(Duration::from_secs(60)).await {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = seen_tx.send(data);
        }
    });
    let mut taken = 0;
    while metric(&gw.base, "flashsale_sse_dropped_total", "").await < 1.0 {
        assert!(
            taken < 60_000,
            "the stalled client was never dropped ({} events sent)",
            events.load(std::sync::atomic::Ordering::Relaxed)
        );
        churn(&env, sale, taken, 500).await;
        taken += 500;
    }
    assert_eq!(
        metric(&gw.base, "flashsale_sse_dropped_total", "").await,
        1.0
    );
    let expected = 1_000_000 - i64::try_from(taken).expect("small");
    let status = gw.sale(sale).await;
    assert_eq!(status.body["remaining"], expected, "{status:?}");
    // The fast client was not harmed: it reaches the final state within a second, and stays open.
    eventually(
        WITHIN,
        || {
            let seen = seen.borrow().clone();
            async move { seen["remaining"] == expected }
        },
        true,
    )
    .await;
    assert!(!reader.is_finished(), "the fast stream ended");
    reader.abort();

    // The stalled client, once it reads, finds its stream ended (the last chunk), without the final state.
    let mut got = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 65536];
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.ends_with(b"\r\n0\r\n\r\n") {
                        return true;
                    }
                }
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "the slow stream did not end");
    let text = String::from_utf8_lossy(&got);
    assert!(
        !text.contains(&format!("\"remaining\":{expected},")),
        "the dropped client got the final state"
    );
    // Its place is given back; the new fast stream is the only one.
    eventually(
        WITHIN,
        || async { metric(&gw.base, "flashsale_sse_streams", "").await },
        1.0,
    )
    .await;
    env.cleanup().await;
}
