//! A test leaves nothing behind: its services are stopped before its topology is deleted, and a test that
//! panics is torn down by the `TestEnv` guard. The database is prepared once per run.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use flashsale_broker::Names;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{SaleSpec, TestEnv, eventually};
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use reqwest::StatusCode;
use std::time::Duration;

use super::AMQP;

const ADMIN_PG: &str = "postgres://postgres@127.0.0.1:5432/flashsale_test";

/// Names of the queues and exchanges under `prefix` that exist now (passive declares: a missing one closes
/// the channel with 404, so each check gets a channel of its own).
async fn topology_left(prefix: &str, windows: &[u32]) -> Vec<String> {
    let names = Names::new(prefix);
    let conn = lapin::Connection::connect(AMQP, lapin::ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let mut queues = vec![
        names.order_writer_queue(),
        names.payment_queue(),
        names.expiry_due_queue(),
        names.dead_queue(),
    ];
    queues.extend(windows.iter().map(|w| names.expiry_wait_queue(*w)));
    let exchanges = [
        names.events_exchange(),
        names.dead_exchange(),
        names.expiry_exchange(),
    ];
    let mut left = Vec::new();
    for queue in queues {
        let ch = conn.create_channel().await.expect("channel");
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        if ch
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
            .is_ok()
        {
            left.push(queue);
        }
    }
    for exchange in exchanges {
        let ch = conn.create_channel().await.expect("channel");
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        if ch
            .exchange_declare(
                exchange.as_str().into(),
                lapin::ExchangeKind::Topic,
                passive,
                FieldTable::default(),
            )
            .await
            .is_ok()
        {
            left.push(exchange);
        }
    }
    let _ = conn.close(200, "checked".into()).await;
    left
}

/// Asserts that nothing of the topology under `prefix` exists, again and again for two seconds: a service
/// still running would re-declare it within its reconnect delay (50..400 ms in tests).
async fn assert_topology_stays_gone(prefix: &str, windows: &[u32]) {
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < until {
        let left = topology_left(prefix, windows).await;
        assert!(left.is_empty(), "left behind after cleanup: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn schema_exists(name: &str) -> bool {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut pg = AsyncPgConnection::establish(ADMIN_PG)
        .await
        .expect("connect to flashsale_test");
    diesel::sql_query("SELECT count(*) AS n FROM pg_namespace WHERE nspname = $1")
        .bind::<Text, _>(name)
        .get_result::<N>(&mut pg)
        .await
        .expect("query pg_namespace")
        .n
        > 0
}

async fn redis_keys(name: &str) -> Vec<String> {
    let client = redis::Client::open("redis://127.0.0.1:6379").expect("redis url");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    flashsale_testkit::prepare::scan(&mut redis, &format!("{name}:*"))
        .await
        .expect("scan")
}

/// A gateway and an order-writer, a sale (60 s window) and one order: what most tests leave running at cleanup.
async fn typical_test(
    env: &TestEnv,
) -> (
    flashsale_testkit::GatewayHandle,
    flashsale_testkit::OrderWriterHandle,
) {
    let gw = env.spawn_gateway().await;
    let writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(env, &SaleSpec::default()).await;
    let reply = gw.reserve(sale, &env.token("lea")).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    eventually(DRAIN, || env.order_count(sale), 1).await;
    assert!(
        !redis_keys(&env.name).await.is_empty(),
        "the probe sees the test's keys"
    );
    (gw, writer)
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_stops_the_services_before_deleting_what_they_declared() {
    let env = TestEnv::new().await;
    let (name, prefix) = (env.name.clone(), env.settings.amqp.prefix.clone());
    let (gw, writer) = typical_test(&env).await;
    assert_eq!(
        topology_left(&prefix, &[60]).await.len(),
        8,
        "the probe sees the whole topology"
    );

    // The handles are still alive, as in every test that calls cleanup() as its last line.
    env.cleanup().await;
    assert_topology_stays_gone(&prefix, &[60]).await;
    assert!(!schema_exists(&name).await, "schema {name} dropped");
    assert_eq!(redis_keys(&name).await, Vec::<String>::new());
    drop((gw, writer));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_test_that_panics_still_drops_its_schema_keys_and_queues() {
    let (named, name) = tokio::sync::oneshot::channel();
    let scenario = tokio::spawn(async move {
        let env = TestEnv::new().await;
        let _services = typical_test(&env).await;
        assert!(schema_exists(&env.name).await);
        let _ = named.send((env.name.clone(), env.settings.amqp.prefix.clone()));
        panic!("the scenario fails before its cleanup");
    });
    let failed = scenario.await.expect_err("the scenario panicked");
    assert!(failed.is_panic(), "{failed:?}");
    let (name, prefix) = name.await.expect("the scenario named its environment");

    assert!(
        !schema_exists(&name).await,
        "schema {name} dropped by the guard"
    );
    assert_eq!(redis_keys(&name).await, Vec::<String>::new());
    assert_topology_stays_gone(&prefix, &[60]).await;
}

#[test]
fn under_nextest_the_setup_script_prepared_the_database_for_the_whole_run() {
    // A plain `cargo test` has no setup script: there each test process prepares the database itself.
    if std::env::var_os("NEXTEST").is_none() {
        return;
    }
    assert!(
        flashsale_testkit::prepare::prepared_by_runner(),
        "the prepare-test-db setup script of .config/nextest.toml did not run for this test"
    );
}
