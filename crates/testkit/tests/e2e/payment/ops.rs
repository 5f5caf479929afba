//! The payment service's operational promises: readiness names its dependencies, the simulator can be turned
//! off, and Redis failing after a webhook's commit answers 503 with Retry-After and loses nothing (the
//! provider's retry re-drives the Redis step).

use super::reserve_and_checkout;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{SaleSpec, TcpProxy, TestEnv, eventually};
use reqwest::StatusCode;
use secrecy::SecretString;

#[tokio::test(flavor = "multi_thread")]
async fn readiness_names_the_dependencies_and_the_simulator_can_be_turned_off() {
    let env = TestEnv::new().await;
    let pay = env
        .spawn_payment_with(|s| s.payment.simulator.enabled = false)
        .await;
    // The consumer attaches just after start; readiness waits for it.
    eventually(
        DRAIN,
        || async { pay.get("/readyz", None).await.status },
        StatusCode::OK,
    )
    .await;
    let ready = pay.get("/readyz", None).await;
    for dependency in ["redis", "amqp", "postgres"] {
        assert_eq!(ready.body["checks"][dependency], "ok", "{ready:?}");
    }
    let page = pay
        .get("/psp/checkout/01a229f6-62be-71de-9189-7dcd04fbfec7", None)
        .await;
    assert_eq!(
        page.status,
        StatusCode::NOT_FOUND,
        "simulator off: {page:?}"
    );
    let complete = pay
        .complete("01a229f6-62be-71de-9189-7dcd04fbfec7", "succeeded")
        .await;
    assert_eq!(
        complete.status,
        StatusCode::NOT_FOUND,
        "simulator off: {complete:?}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_failing_after_the_commit_answers_503_and_the_retry_finishes_the_payment() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let proxy = TcpProxy::start("127.0.0.1:6379").await.expect("proxy");
    let pay = env
        .spawn_payment_with(|s| {
            s.redis.url = SecretString::from(format!("redis://{}", proxy.addr()));
            s.redis.response_timeout_ms = 300;
        })
        .await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(2)).await;
    let checkout = reserve_and_checkout(&env, &gw, &pay, sale, "rita").await;
    eventually(DRAIN, || env.order_count(sale), 1).await;
    let body = TestEnv::webhook_body("evt-redis-down", "payment.succeeded", &checkout);

    proxy.cut();
    let first = pay.webhook(&body, Some(&env.sign_webhook(&body))).await;
    assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE, "{first:?}");
    assert_eq!(first.code(), "UNAVAILABLE");
    assert!(first.retry_after().is_some(), "{first:?}");
    // PostgreSQL committed: the order is paid, but Redis has not counted it yet.
    let rows = env.paid_orders(sale).await;
    assert_eq!(
        (rows[0].1.as_str(), rows[0].2),
        ("paid", Some(1)),
        "{rows:?}"
    );
    assert_eq!(gw.sale(sale).await.body["sold"], 0);

    proxy.pass();
    let retry = || async {
        pay.webhook(&body, Some(&env.sign_webhook(&body)))
            .await
            .status
    };
    eventually(DRAIN, retry, StatusCode::OK).await;
    let again = pay.webhook(&body, Some(&env.sign_webhook(&body))).await;
    assert_eq!(again.body["status"], "paid", "{again:?}");
    assert_eq!(
        again.body["shipping_priority"], 1,
        "the first answer, not a second payment"
    );
    assert_eq!(
        gw.sale(sale).await.body["sold"],
        1,
        "the retry re-drove the Redis step"
    );
    assert_eq!(env.payment_counters(sale).await.2, 1, "one priority taken");
    env.cleanup().await;
}
