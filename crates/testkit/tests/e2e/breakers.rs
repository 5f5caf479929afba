//! The circuit breakers around Redis and RabbitMQ and the request-rate bound: a dependency cut through a test
//! proxy opens its breaker, which then answers 503 with Retry-After at once, without a network call and holding
//! nothing, and closes again by itself once the dependency is back.

use crate::poison::metric;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::services::spawn_gateway_with;
use flashsale_testkit::{GatewayHandle, SaleSpec, TcpProxy, TestEnv, eventually};
use futures_util::future::join_all;
use reqwest::StatusCode;
use secrecy::SecretString;
use std::time::{Duration, Instant};

/// Long enough that the checks made while a breaker is open finish inside it on a busy machine.
const COOL_DOWN_MS: u64 = 6000;

async fn check(gw: &GatewayHandle, dependency: &str) -> String {
    gw.get("/readyz", None).await.body["checks"][dependency]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

async fn shed(gw: &GatewayHandle, reason: &str) -> f64 {
    metric(
        &gw.base,
        "flashsale_requests_shed_total",
        &format!("reason=\"{reason}\""),
    )
    .await
}

async fn breaker_state(gw: &GatewayHandle, dependency: &str) -> f64 {
    metric(
        &gw.base,
        "flashsale_breaker_state",
        &format!("dependency=\"{dependency}\""),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_redis_opens_the_breaker_which_answers_at_once_then_closes_by_itself() {
    let env = TestEnv::new().await;
    let proxy = TcpProxy::start("127.0.0.1:6379").await.expect("proxy");
    let mut settings = env.settings.clone();
    settings.redis.url = SecretString::from(format!("redis://{}", proxy.addr()));
    settings.redis.response_timeout_ms = 1500;
    settings.breaker.failure_threshold = 3;
    settings.breaker.cool_down_ms = COOL_DOWN_MS;
    let gw = spawn_gateway_with(settings).await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    let token = env.token("rita");
    assert_eq!(breaker_state(&gw, "redis").await, 0.0, "closed at start");

    proxy.cut();
    let opened = || async {
        let failed = gw.reserve(sale, &token).await;
        assert_eq!(failed.code(), "UNAVAILABLE", "{failed:?}");
        check(&gw, "redis").await
    };
    eventually(DRAIN, opened, "circuit open".to_owned()).await;
    let ready = gw.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{ready:?}");
    assert_eq!(ready.body["status"], "unavailable");
    assert_eq!(ready.body["checks"]["amqp"], "ok", "{ready:?}");
    assert_eq!(breaker_state(&gw, "redis").await, 2.0);

    // From now on any Redis call would hang for the whole response timeout: the answers below are fast only
    // because none is made.
    proxy.blackhole();
    let before = shed(&gw, "breaker_redis").await;
    for _ in 0..10 {
        let started = Instant::now();
        let refused = gw.reserve(sale, &token).await;
        let took = started.elapsed();
        assert_eq!(
            refused.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{refused:?}"
        );
        assert_eq!(refused.code(), "UNAVAILABLE");
        let retry = refused.retry_after().expect("Retry-After");
        assert!(
            (1..=COOL_DOWN_MS / 1000).contains(&retry),
            "the rest of the cool-down: {refused:?}"
        );
        assert!(
            took < Duration::from_millis(300),
            "an open breaker answers without calling Redis (timeout 1500 ms), took {took:?}"
        );
    }
    assert_eq!(shed(&gw, "breaker_redis").await - before, 10.0);

    // Back, without a restart: the first probe after the cool-down closes the breaker.
    proxy.pass();
    proxy.drop_connections();
    let reserved = || async {
        gw.reserve_with_key(sale, &token, "rita-after-recovery")
            .await
            .status
    };
    eventually(DRAIN, reserved, StatusCode::ACCEPTED).await;
    assert_eq!(check(&gw, "redis").await, "ok");
    assert_eq!(breaker_state(&gw, "redis").await, 0.0);
    assert_eq!(
        metric(
            &gw.base,
            "flashsale_breaker_transitions_total",
            "dependency=\"redis\",to=\"closed\""
        )
        .await,
        1.0
    );
    assert_eq!(env.remaining(sale).await, Some(4));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_broker_opens_its_breaker_before_the_script_so_nothing_is_held() {
    let env = TestEnv::new().await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await.expect("proxy");
    let mut settings = env.settings.clone();
    settings.amqp.url = SecretString::from(format!("amqp://guest:guest@{}/%2f", proxy.addr()));
    settings.breaker.failure_threshold = 2;
    settings.breaker.cool_down_ms = COOL_DOWN_MS;
    let gw = spawn_gateway_with(settings).await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;

    proxy.cut();
    eventually(DRAIN, || async { check(&gw, "amqp").await == "ok" }, false).await;
    let mut n = 0;
    let opened = || {
        n += 1;
        let token = env.token(&format!("early-{n}"));
        let gw = &gw;
        async move {
            let failed = gw.reserve(sale, &token).await;
            assert_eq!(failed.code(), "UNAVAILABLE", "{failed:?}");
            check(gw, "amqp").await
        }
    };
    eventually(DRAIN, opened, "circuit open".to_owned()).await;
    assert_eq!(env.remaining(sale).await, Some(5), "every 503 was released");

    // One buyer, twice the burst of the per-buyer limit, at once: had the script run for them, the buyer's
    // bucket would answer 429. Every one is the breaker's 503, so no script ran and nothing was held.
    let before = shed(&gw, "breaker_amqp").await;
    let token = env.token("amy");
    let started = Instant::now();
    let answers = join_all((0..10).map(|_| gw.reserve(sale, &token))).await;
    let took = started.elapsed();
    for refused in &answers {
        assert_eq!(
            refused.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{refused:?}"
        );
        assert_eq!(refused.code(), "UNAVAILABLE");
        assert!(refused.retry_after().is_some_and(|s| s >= 1), "{refused:?}");
    }
    assert!(took < Duration::from_millis(500), "took {took:?}");
    assert_eq!(shed(&gw, "breaker_amqp").await - before, 10.0);
    assert_eq!(env.remaining(sale).await, Some(5), "stock untouched");
    assert_eq!(env.outbox_len(sale).await, 0);
    assert_eq!(breaker_state(&gw, "amqp").await, 2.0);

    proxy.pass();
    let reserved = || async { gw.reserve_with_key(sale, &token, "amy-back").await.status };
    eventually(DRAIN, reserved, StatusCode::ACCEPTED).await;
    eventually(DRAIN, || check(&gw, "amqp"), "ok".to_owned()).await;
    assert_eq!(breaker_state(&gw, "amqp").await, 0.0);
    eventually(DRAIN, || env.order_count(sale), 1).await;
    assert_eq!(env.remaining(sale).await, Some(4));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_request_rate_the_api_answers_503_at_once_and_probes_still_answer() {
    let env = TestEnv::new().await;
    // The sale is made through another gateway, so the bounded one starts with a full bucket.
    let sale = env
        .spawn_gateway()
        .await
        .create_sale(&env, &SaleSpec::stock(100))
        .await;
    let mut settings = env.settings.clone();
    settings.gateway.max_requests_per_sec = 5;
    let gw = spawn_gateway_with(settings).await;
    let tokens: Vec<String> = (0..30).map(|i| env.token(&format!("rate-{i}"))).collect();

    let answers = join_all(tokens.iter().map(|t| gw.reserve(sale, t))).await;
    let accepted = answers
        .iter()
        .filter(|a| a.status == StatusCode::ACCEPTED)
        .count();
    let refused: Vec<_> = answers
        .iter()
        .filter(|a| a.status != StatusCode::ACCEPTED)
        .collect();
    assert!(
        (5..=10).contains(&accepted),
        "a burst of one second's worth passes, little more: {accepted}"
    );
    for r in &refused {
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
        assert_eq!(r.code(), "UNAVAILABLE");
        assert_eq!(r.retry_after(), Some(1), "{r:?}");
    }
    assert_eq!(shed(&gw, "rate").await, refused.len() as f64);
    for _ in 0..20 {
        assert_eq!(gw.get("/healthz", None).await.status, StatusCode::OK);
    }
    assert_eq!(gw.get("/readyz", None).await.status, StatusCode::OK);
    assert_eq!(
        env.remaining(sale).await,
        Some(100 - accepted as i64),
        "what was shed held nothing"
    );
    env.cleanup().await;
}

/// A shed request's body is read before the 503, so the keep-alive connection survives: a flood of refused
/// requests with bodies must not turn into a flood of reconnects.
#[tokio::test(flavor = "multi_thread")]
async fn a_shed_request_with_a_body_keeps_its_connection_open() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = TestEnv::new().await;
    let mut settings = env.settings.clone();
    settings.gateway.max_requests_per_sec = 1;
    let gw = spawn_gateway_with(settings).await;
    let addr = gw.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let token = env.token("shed-body");
    let body = format!("{{\"quantity\":1,\"note\":\"{}\"}}", "x".repeat(4000));
    let request = format!(
        "POST /api/v1/sales/1/reservations HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut statuses = Vec::new();
    for _ in 0..5 {
        socket.write_all(request.as_bytes()).await.expect("send");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = socket.read(&mut byte).await.expect("read");
            assert_eq!(n, 1, "the gateway closed the connection after {statuses:?}");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let mut rest = vec![0u8; length];
        socket.read_exact(&mut rest).await.expect("body");
        assert!(!head.contains("connection: close"), "{head}");
        statuses.push(head.lines().next().unwrap_or_default().to_owned());
    }
    assert!(
        statuses.iter().filter(|s| s.contains(" 503 ")).count() >= 3,
        "most of the five were shed: {statuses:?}"
    );
    env.cleanup().await;
}
