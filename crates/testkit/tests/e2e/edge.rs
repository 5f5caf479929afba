//! What load, floods and a failover do to the edge: the in-flight bound never leaks, unknown things cost no
//! query per request, and readiness tells the truth when Redis turned read-only.

use chrono::{Duration as ChronoDuration, Utc};
use flashsale_testkit::services::spawn_gateway_with;
use flashsale_testkit::{LocalRedis, SaleSpec, TcpProxy, TestEnv, eventually};
use futures_util::stream::{self, StreamExt};
use rand::Rng;
use reqwest::StatusCode;
use secrecy::SecretString;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread")]
async fn clients_that_vanish_mid_request_never_leak_the_in_flight_bound() {
    let env = TestEnv::new().await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await.expect("proxy");
    let mut settings = env.settings.clone();
    settings.amqp.url = SecretString::from(format!("amqp://guest:guest@{}/%2f", proxy.addr()));
    settings.gateway.max_in_flight = 8;
    settings.amqp.confirm_timeout_ms = 20_000;
    settings.outbox.relay_age_ms = 25_000;
    let gw = spawn_gateway_with(settings).await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(1000)).await;

    // Every reservation now waits for a confirm that does not come. Each client resets its connection
    // (RST) while its request is in the handler, as a phone losing its network does.
    proxy.blackhole();
    let host = gw.base.trim_start_matches("http://").to_owned();
    let mut resets = 0;
    for i in 0..200 {
        let token = env.token(&format!("gone-{i}"));
        let request = format!(
            "POST /api/v1/sales/{sale}/reservations HTTP/1.1\r\nHost: {host}\r\n\
             Authorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n"
        );
        let mut conn = tokio::net::TcpStream::connect(&host)
            .await
            .expect("connect");
        conn.write_all(request.as_bytes()).await.expect("send");
        let mut first = [0u8; 12];
        // Answered at once means refused at capacity; silence means the handler is waiting.
        if tokio::time::timeout(Duration::from_millis(50), conn.read(&mut first))
            .await
            .is_err()
        {
            resets += 1;
        }
        #[allow(deprecated)] // SO_LINGER 0 is the point here: close with a reset, not a FIN.
        conn.set_linger(Some(Duration::ZERO)).expect("linger");
        drop(conn);
    }
    assert!(
        resets >= 8,
        "a full bound of clients left mid-request ({resets})"
    );

    // Their handlers were still waiting for the confirm when the clients left; whatever they held must be
    // free again at once, not after the confirm timeout (the broker is still silent).
    let full_bound = || {
        stream::iter(0..8)
            .map(|_| {
                let gw = &gw;
                async move { gw.get(&format!("/api/v1/sales/{sale}"), None).await.status }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
    };
    eventually(
        Duration::from_secs(5),
        || async { full_bound().await.iter().all(|s| *s == StatusCode::OK) },
        true,
    )
    .await;
    let served = full_bound().await;
    assert!(
        served.iter().all(|s| *s == StatusCode::OK),
        "a full bound is served again: {served:?}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_unknown_sales_costs_no_query_per_request() {
    let env = TestEnv::with(|s| {
        s.postgres.pool_size = 1;
        s.postgres.acquire_timeout_ms = 50;
    })
    .await;
    let gw = env.spawn_gateway().await;
    let known = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    let token = env.token("prober");
    let replies = stream::iter(0..400)
        .map(|i| {
            let id = rand::rng().random_range(1_000_000_000_i64..i64::MAX / 2);
            let gw = &gw;
            let token = &token;
            async move {
                if i % 2 == 0 {
                    gw.get(&format!("/api/v1/sales/{id}"), None).await
                } else {
                    gw.send(
                        gw.http
                            .post(format!("{}/api/v1/sales/{id}/reservations", gw.base))
                            .bearer_auth(token),
                    )
                    .await
                }
            }
        })
        .buffer_unordered(200)
        .map(|r| (r.status, r.code().to_owned()))
        .collect::<Vec<_>>()
        .await;
    let not_found = replies
        .iter()
        .filter(|(s, c)| *s == StatusCode::NOT_FOUND && c == "SALE_NOT_FOUND")
        .count();
    assert_eq!(
        not_found,
        400,
        "every unknown sale is a 404 from memory, none waits for the pool: {:?}",
        replies
            .iter()
            .filter(|(s, _)| *s != StatusCode::NOT_FOUND)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(gw.sale(known).await.status, StatusCode::OK);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_lookup_never_walks_every_sale_ever_created() {
    let redis = LocalRedis::start().await;
    let env = TestEnv::with(|s| s.redis.url = SecretString::from(redis.url())).await;
    let gw = env.spawn_gateway().await;
    let long_ago = Utc::now() - ChronoDuration::hours(3);
    for _ in 0..30 {
        let spec = SaleSpec {
            starts_at: long_ago,
            ends_at: long_ago + ChronoDuration::hours(1),
            payment_window_secs: 1,
            ..SaleSpec::stock(5)
        };
        gw.create_sale(&env, &spec).await;
    }
    redis.cmd(&["CONFIG", "RESETSTAT"]).await;
    let unknown = uuid::Uuid::now_v7();
    let r = gw
        .get(&format!("/api/v1/orders/{unknown}"), Some(&env.token("x")))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    let stats = redis.info("commandstats").await;
    let hgetall = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_hgetall:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(hgetall < 5, "looked for the order in {hgetall} ended sales");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_failover_readiness_fails_on_the_replica_and_the_gateway_reconnects() {
    let primary = LocalRedis::start().await;
    let standby = LocalRedis::start().await;
    let proxy = TcpProxy::start(&primary.addr()).await.expect("proxy");
    let env = TestEnv::with(|s| {
        s.redis.url = SecretString::from(format!("redis://{}", proxy.addr()));
    })
    .await;
    let gw = env.spawn_gateway().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    let first = gw.reserve(sale, &env.token("before")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");

    // Failover: the standby takes over with the data; the old primary becomes its read-only replica.
    let port = primary.port.to_string();
    standby.cmd(&["REPLICAOF", "127.0.0.1", &port]).await;
    eventually(
        Duration::from_secs(10),
        || async {
            standby
                .info("replication")
                .await
                .contains("master_link_status:up")
        },
        true,
    )
    .await;
    standby.cmd(&["REPLICAOF", "NO", "ONE"]).await;
    let port = standby.port.to_string();
    primary.cmd(&["REPLICAOF", "127.0.0.1", &port]).await;

    // Still pointed at the old primary: writes fail, and readiness must say so.
    let refused = gw.reserve(sale, &env.token("during")).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    let ready = gw.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{ready:?}");
    assert_ne!(ready.body["checks"]["redis"], "ok", "{ready:?}");

    // The stable address now leads to the new primary: the gateway must reconnect by itself.
    proxy.redirect(standby.addr().parse().expect("address"));
    eventually(
        Duration::from_secs(10),
        || async { gw.get("/readyz", None).await.status },
        StatusCode::OK,
    )
    .await;
    let after = gw.reserve(sale, &env.token("after")).await;
    assert_eq!(after.status, StatusCode::ACCEPTED, "{after:?}");
    assert_eq!(env.remaining(sale).await, Some(3));
    env.cleanup().await;
}
