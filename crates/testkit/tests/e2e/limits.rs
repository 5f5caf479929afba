//! The per-buyer limit (in the reservation script) and the per-address limit (in the gateway, governor):
//! who is limited, who is not, and that an address is refused before any Redis work.

use flashsale_domain::SaleId;
use flashsale_testkit::services::spawn_gateway_with;
use flashsale_testkit::{GatewayHandle, Reply, SaleSpec, TcpProxy, TestEnv};
use futures_util::stream::{self, StreamExt};
use reqwest::StatusCode;
use secrecy::SecretString;

/// A reservation by `user` with `X-Forwarded-For: forwarded` (when given).
async fn reserve_from(
    gw: &GatewayHandle,
    env: &TestEnv,
    sale: SaleId,
    user: &str,
    forwarded: Option<&str>,
) -> Reply {
    let mut req = gw.reservation(sale, &env.token(user));
    if let Some(xff) = forwarded {
        req = req.header("X-Forwarded-For", xff);
    }
    gw.send(req).await
}

fn assert_rate_limited(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{reply:?}");
    assert_eq!(reply.code(), "RATE_LIMITED", "{reply:?}");
    assert!(
        reply.retry_after().is_some_and(|s| s >= 1),
        "Retry-After in whole seconds: {reply:?}"
    );
}

fn shed_by_address(gw: &GatewayHandle) -> u64 {
    gw.state.metrics.shed.with_label_values(&["address"]).get()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buyers_burst_is_limited_while_another_buyer_is_served() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(10)).await;
    // The default bucket: 5 a second, burst 5. The 6th attempt in a burst is over it.
    let mut replies = Vec::new();
    for _ in 0..6 {
        replies.push(reserve_from(&gw, &env, sale, "greedy", None).await);
    }
    assert_eq!(replies[0].status, StatusCode::ACCEPTED, "{:?}", replies[0]);
    assert_rate_limited(&replies[5]);
    // Same address, same instant: another buyer has a bucket of its own.
    let other = reserve_from(&gw, &env, sale, "patient", None).await;
    assert_eq!(other.status, StatusCode::ACCEPTED, "{other:?}");
    assert!(
        other.headers.get("strict-transport-security").is_none(),
        "HSTS is off by default"
    );
    assert_eq!(env.remaining(sale).await, Some(8));
    assert_eq!(shed_by_address(&gw), 0, "the address limit is off");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_address_limit_is_off_by_default_for_a_crowd_behind_one_address() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let buyers = 300;
    let sale = gw.create_sale(&env, &SaleSpec::stock(buyers)).await;
    let statuses: Vec<StatusCode> = stream::iter(0..buyers)
        .map(|i| {
            let (gw, env) = (&gw, &env);
            async move {
                reserve_from(gw, env, sale, &format!("crowd-{i}"), None)
                    .await
                    .status
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::ACCEPTED),
        "{:?}",
        statuses
            .iter()
            .filter(|s| **s != StatusCode::ACCEPTED)
            .collect::<Vec<_>>()
    );
    assert_eq!(env.remaining(sale).await, Some(0));
    assert_eq!(gw.state.address_limit.tracked(), 0, "no bucket is kept");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_forwarded_for_does_not_escape_the_address_limit_and_redis_is_never_asked() {
    let env = TestEnv::with(|s| {
        s.gateway.address_rate_per_sec = 1;
        s.gateway.address_rate_burst = 2;
    })
    .await;
    let redis = TcpProxy::start("127.0.0.1:6379").await.expect("proxy");
    let mut settings = env.settings.clone();
    settings.redis.url = SecretString::from(format!("redis://{}", redis.addr()));
    let gw = spawn_gateway_with(settings).await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;

    // No trusted proxy: every request comes from 127.0.0.1, whatever X-Forwarded-For claims.
    let first = reserve_from(&gw, &env, sale, "bot-1", Some("198.51.100.1")).await;
    let second = reserve_from(&gw, &env, sale, "bot-2", Some("198.51.100.2")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
    assert_eq!(second.status, StatusCode::ACCEPTED, "{second:?}");
    // With Redis unreachable, anything that asked it would be a 503: a 429 was decided before.
    redis.cut();
    let third = reserve_from(&gw, &env, sale, "bot-3", Some("198.51.100.3")).await;
    assert_rate_limited(&third);
    assert_eq!(shed_by_address(&gw), 1);
    let counted = gw
        .state
        .metrics
        .reservations
        .with_label_values(&["RATE_LIMITED"])
        .get();
    assert_eq!(counted, 1, "counted as a reservation outcome too");
    redis.pass();
    assert_eq!(env.remaining(sale).await, Some(3), "the 429 took nothing");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let env = TestEnv::with(|s| {
        s.gateway.address_rate_per_sec = 1;
        s.gateway.address_rate_burst = 1;
        s.gateway.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(10)).await;

    let a = reserve_from(&gw, &env, sale, "alice", Some("203.0.113.7")).await;
    let b = reserve_from(&gw, &env, sale, "bob", Some("203.0.113.8")).await;
    let proxy_itself = reserve_from(&gw, &env, sale, "carol", None).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{a:?}");
    assert_eq!(b.status, StatusCode::ACCEPTED, "separate bucket: {b:?}");
    assert_eq!(
        proxy_itself.status,
        StatusCode::ACCEPTED,
        "no header: the peer is the client: {proxy_itself:?}"
    );
    // The same client again is limited, whichever buyer it claims to be.
    assert_rate_limited(&reserve_from(&gw, &env, sale, "dave", Some("203.0.113.7")).await);
    // A client writing its own entry to the left is still known by the one the proxy appended.
    let forged = reserve_from(&gw, &env, sale, "erin", Some("192.0.2.99, 203.0.113.8")).await;
    assert_rate_limited(&forged);
    assert_eq!(shed_by_address(&gw), 2);
    assert_eq!(gw.state.address_limit.tracked(), 3);
    assert_eq!(env.remaining(sale).await, Some(7));
    env.cleanup().await;
}
