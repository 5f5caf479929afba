//! Every outbound call is bounded by a setting: a PostgreSQL statement by `postgres.statement_timeout_ms`, an
//! AMQP connection by `amqp.connect_timeout_ms` (Redis: `redis.response_timeout_ms`, see breakers.rs).

use diesel_async::RunQueryDsl;
use flashsale_testkit::{TcpProxy, TestEnv};
use secrecy::SecretString;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn a_statement_longer_than_the_statement_timeout_is_cancelled() {
    let env = TestEnv::new().await;
    let mut settings = env.settings.postgres.clone();
    settings.statement_timeout_ms = 300;
    let pool = flashsale_store::connect(&settings).await.expect("pool");
    let mut conn = pool.get().await.expect("connection");
    let started = Instant::now();
    let slow = diesel::sql_query("SELECT pg_sleep(5)")
        .execute(&mut conn)
        .await;
    let err = slow.expect_err("cancelled by statement_timeout");
    assert!(err.to_string().contains("statement timeout"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(conn);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_amqp_handshake_that_never_answers_fails_after_the_connect_timeout() {
    let env = TestEnv::new().await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await.expect("proxy");
    proxy.blackhole();
    let mut settings = env.settings.amqp.clone();
    settings.url = SecretString::from(format!("amqp://guest:guest@{}/%2f", proxy.addr()));
    settings.connect_timeout_ms = 300;
    let started = Instant::now();
    let err = flashsale_broker::connect(&settings, "test-timeout")
        .await
        .expect_err("the handshake never completes");
    assert!(
        format!("{err:#}").contains("amqp.connect_timeout_ms"),
        "{err:#}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    env.cleanup().await;
}
