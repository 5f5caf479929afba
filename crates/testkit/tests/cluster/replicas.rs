//! Replicas of every service at once on a Redis Cluster: two gateways, two order-writers and two expiry
//! services compete for the same queues and sweep the same sales. Every order is written once, every unpaid
//! reservation expires once and its units come back once: the sale can be sold out again, exactly.

use super::burst::race;
use super::redis_race::env_on;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{RedisCluster, SaleSpec, eventually};
use reqwest::StatusCode;

const STOCK: i64 = 200;

#[tokio::test(flavor = "multi_thread")]
async fn two_of_each_service_write_every_order_once_and_release_every_unit_once() {
    let cluster = RedisCluster::start().await;
    let env = env_on(&cluster).await;
    let gateways = [env.spawn_gateway().await, env.spawn_gateway().await];
    let writers = [
        env.spawn_order_writer().await,
        env.spawn_order_writer().await,
    ];
    let expiries = [env.spawn_expiry().await, env.spawn_expiry().await];
    let spec = SaleSpec {
        stock: STOCK,
        payment_window_secs: 2,
        ..SaleSpec::default()
    };
    let sale = gateways[0].create_sale(&env, &spec).await;

    let wave = |first: usize| {
        let gateways = &gateways;
        let env = &env;
        async move {
            race(env, gateways, sale, "buyer", first..first + 3 * 200, 100)
                .await
                .iter()
                .filter(|r| r.status == StatusCode::ACCEPTED)
                .count()
        }
    };
    assert_eq!(wave(0).await, 200, "the first wave sells the stock");
    eventually(DRAIN, || env.order_count(sale), STOCK).await;

    // Nobody pays: every order expires once, between the two expiry services (message or sweeper).
    let expired = || async {
        let mut total = 0.0;
        for e in &expiries {
            for source in ["message", "sweeper"] {
                total += e
                    .metric(&format!(
                        r#"flashsale_expirations_total{{source="{source}"}}"#
                    ))
                    .await;
            }
        }
        total
    };
    eventually(DRAIN, expired, 200.0).await;
    let status = gateways[1].sale(sale).await;
    assert_eq!(status.body["remaining"], STOCK, "{status:?}");
    let rows = env.orders(sale).await;
    assert_eq!(rows.len(), 200);
    assert!(rows.iter().all(|(_, _, s)| s == "expired"));
    assert_eq!(env.held(sale).await, 0);

    // The units came back once (`remaining` is the stock, not more): later waves sell them again. (A gateway
    // may answer SOLD_OUT from memory for up to a second after units came back.)
    let mut again = 0;
    let mut first = 1000;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while again < 200 && tokio::time::Instant::now() < deadline {
        again += wave(first).await;
        first += 1000;
    }
    assert_eq!(again, 200, "the returned units sell again");
    eventually(DRAIN, || env.order_count(sale), 2 * STOCK).await;

    // The two writers competed for the queue; together they inserted each row once.
    let mut inserted = 0.0;
    for w in &writers {
        let text = flashsale_testkit::metrics_text(&w.base).await;
        let mine: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(r#"flashsale_orders_written_total{status="pending_payment"} "#)
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        eprintln!("writer {} inserted {mine}", w.base);
        inserted += mine;
    }
    assert_eq!(inserted, 400.0, "every order inserted once");
    assert_eq!(env.held(sale).await, STOCK);
    env.cleanup().await;
}
