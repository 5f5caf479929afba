//! The payment service against the real services: the simulator end to end, priorities under concurrency,
//! the webhook's signature, replay and amount rules, payments after the deadline, checkout, and a SIGKILL.

mod batch;
mod checkout;
mod crash;
mod ops;

use chrono::{Duration as ChronoDuration, Utc};
use flashsale_domain::SaleId;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{GatewayHandle, PaymentClient, SaleSpec, TestEnv, eventually};
use reqwest::StatusCode;
use serde_json::Value;

/// Reserves one unit for `user` and checks the order out; returns the checkout answer.
pub async fn reserve_and_checkout(
    env: &TestEnv,
    gw: &GatewayHandle,
    pay: &PaymentClient,
    sale: SaleId,
    user: &str,
) -> Value {
    let token = env.token(user);
    let reserved = gw.reserve(sale, &token).await;
    assert_eq!(reserved.status, StatusCode::ACCEPTED, "{reserved:?}");
    let order = reserved.body["order_id"].as_str().unwrap_or_default();
    let checkout = pay.checkout(order, &token).await;
    assert_eq!(checkout.status, StatusCode::OK, "{checkout:?}");
    checkout.body
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_through_the_simulator_pays_with_priority_one() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let pay = env.spawn_payment().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(3)).await;
    let mut paid_events = env.probe_events("order.paid").await;

    let checkout = reserve_and_checkout(&env, &gw, &pay, sale, "ana").await;
    let order = checkout["order_id"].as_str().unwrap_or_default().to_owned();
    let payment = checkout["payment_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(checkout["amount"], "2990.00");
    assert!(
        checkout["checkout_url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/psp/checkout/{payment}"))),
        "{checkout}"
    );
    let page = pay.get(&format!("/psp/checkout/{payment}"), None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .as_str()
            .is_some_and(|html| html.contains("Pay") && html.contains(&order))
    );

    // The simulator sends the signed webhook over HTTP and answers with the webhook's answer.
    let done = pay.complete(&payment, "succeeded").await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert_eq!(done.body["status"], "paid");
    assert_eq!(done.body["shipping_priority"], 1);
    assert_eq!(done.body["order_id"], order.as_str());

    let seen = gw
        .get(&format!("/api/v1/orders/{order}"), Some(&env.token("ana")))
        .await;
    assert_eq!(seen.body["status"], "paid", "{seen:?}");
    assert_eq!(seen.body["shipping_priority"], 1);
    assert!(seen.body["paid_at"].is_string(), "{seen:?}");
    let status = gw.sale(sale).await;
    assert_eq!(status.body["sold"], 1, "{status:?}");
    assert_eq!(status.body["remaining"], 2, "{status:?}");
    let (id, body) = paid_events.next(DRAIN).await.expect("order.paid published");
    assert_eq!(id, order);
    assert_eq!(body["shipping_priority"], 1);
    assert_eq!(
        env.payments_of(&order).await,
        [(payment, "succeeded".to_owned())]
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_concurrent_payments_get_priorities_one_to_thirty_in_paid_order() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let pay = env.spawn_payment().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(30)).await;
    let mut bodies = Vec::new();
    for i in 0..30 {
        let checkout = reserve_and_checkout(&env, &gw, &pay, sale, &format!("buyer{i}")).await;
        bodies.push(TestEnv::webhook_body(
            &format!("evt-{i}"),
            "payment.succeeded",
            &checkout,
        ));
    }
    eventually(DRAIN, || env.order_count(sale), 30).await;
    let answers = futures_util::future::join_all(bodies.iter().map(|body| {
        let sig = env.sign_webhook(body);
        let pay = &pay;
        async move { pay.webhook(body, Some(&sig)).await }
    }))
    .await;
    for a in &answers {
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
        assert_eq!(a.body["status"], "paid", "{a:?}");
    }
    let rows = env.paid_orders(sale).await;
    let priorities: Vec<Option<i64>> = rows.iter().map(|r| r.2).collect();
    let expected: Vec<Option<i64>> = (1..=30).map(Some).collect();
    assert_eq!(
        priorities, expected,
        "ordered by paid_at, priorities are exactly 1..30"
    );
    assert!(rows.iter().all(|r| r.1 == "paid"));
    assert!(
        rows.windows(2).all(|w| w[0].3 < w[1].3),
        "paid_at strictly increases"
    );
    assert_eq!(env.payment_counters(sale).await.2, 30);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_signature_rules_refuse_with_401_and_change_nothing() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let pay = env.spawn_payment().await;
    let sale = gw.create_sale(&env, &SaleSpec::default()).await;
    let checkout = reserve_and_checkout(&env, &gw, &pay, sale, "ben").await;
    let order = checkout["order_id"].as_str().unwrap_or_default().to_owned();
    eventually(DRAIN, || env.order_count(sale), 1).await;
    let body = TestEnv::webhook_body("evt-sig", "payment.succeeded", &checkout);
    let now = Utc::now().timestamp();
    let wrong_key = flashsale_webhook::sign(&[b"another-secret-another-secret-xx"], now, &body);
    let mut tampered = body.clone();
    let at = tampered.len() - 3;
    tampered[at] = b'1';
    let before = env.payment_counters(sale).await;
    let cases: Vec<(&str, &[u8], Option<String>)> = vec![
        ("wrong key", &body, Some(wrong_key)),
        ("stale", &body, Some(env.sign_webhook_at(&body, now - 301))),
        ("future", &body, Some(env.sign_webhook_at(&body, now + 301))),
        ("no header", &body, None),
        ("garbage header", &body, Some("nonsense".to_owned())),
        ("tampered body", &tampered, Some(env.sign_webhook(&body))),
    ];
    for (case, sent, sig) in cases {
        let reply = pay.webhook(sent, sig.as_deref()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{case}: {reply:?}");
        assert_eq!(reply.code(), "INVALID_SIGNATURE", "{case}");
    }
    assert_eq!(env.payment_counters(sale).await, before, "nothing recorded");
    assert_eq!(env.paid_orders(sale).await[0].1, "pending_payment");

    // Two v1 entries (a provider mid-rotation), only one of them with our key: accepted.
    let secret = env.settings.payment.webhook_secret.clone();
    let both = flashsale_webhook::sign(
        &[
            b"old-provider-key-old-provider-key",
            secrecy::ExposeSecret::expose_secret(&secret).as_bytes(),
        ],
        now,
        &body,
    );
    let reply = pay.webhook(&body, Some(&both)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body["status"], "paid");
    assert_eq!(env.paid_orders(sale).await[0].0, order);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replays_answer_the_same_and_wrong_amounts_change_nothing() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let pay = env.spawn_payment().await;
    let sale = gw.create_sale(&env, &SaleSpec::default()).await;
    let checkout = reserve_and_checkout(&env, &gw, &pay, sale, "cleo").await;
    eventually(DRAIN, || env.order_count(sale), 1).await;

    let mut wrong = checkout.clone();
    wrong["amount"] = Value::from("2989.99");
    let body = TestEnv::webhook_body("evt-amount", "payment.succeeded", &wrong);
    let before = env.payment_counters(sale).await;
    let reply = pay.webhook(&body, Some(&env.sign_webhook(&body))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{reply:?}");
    assert_eq!(reply.code(), "INVALID_REQUEST");
    assert_eq!(env.payment_counters(sale).await, before);
    assert_eq!(env.paid_orders(sale).await[0].1, "pending_payment");

    let body = TestEnv::webhook_body("evt-replayed", "payment.succeeded", &checkout);
    let mut answers = Vec::new();
    for _ in 0..3 {
        let reply = pay.webhook(&body, Some(&env.sign_webhook(&body))).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        answers.push(reply.body);
    }
    assert_eq!(answers[0]["status"], "paid");
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    let (_, events, paid_count) = env.payment_counters(sale).await;
    assert_eq!((events, paid_count), (1, 1), "one transition, one event");
    assert_eq!(gw.sale(sale).await.body["sold"], 1);

    // An unknown payment, and a payment named with another order.
    let mut unknown = checkout.clone();
    unknown["payment_id"] = Value::from(uuid::Uuid::now_v7().to_string());
    let body = TestEnv::webhook_body("evt-unknown", "payment.succeeded", &unknown);
    let reply = pay.webhook(&body, Some(&env.sign_webhook(&body))).await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::NOT_FOUND, "PAYMENT_NOT_FOUND")
    );
    let mut mismatch = checkout.clone();
    mismatch["order_id"] = Value::from(uuid::Uuid::now_v7().to_string());
    let body = TestEnv::webhook_body("evt-mismatch", "payment.succeeded", &mismatch);
    let reply = pay.webhook(&body, Some(&env.sign_webhook(&body))).await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payment_after_the_deadline_is_refund_required_and_announced() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let pay = env.spawn_payment().await;
    let spec = SaleSpec {
        payment_window_secs: 1,
        ..SaleSpec::stock(2)
    };
    let sale = gw.create_sale(&env, &spec).await;
    let mut refunds = env.probe_events("payment.refund_required").await;
    let checkout = reserve_and_checkout(&env, &gw, &pay, sale, "dora").await;
    eventually(DRAIN, || env.order_count(sale), 1).await;
    // No expiry service runs here: the order stays pending_payment in PostgreSQL past its deadline.
    let deadline: chrono::DateTime<Utc> = checkout["expires_at"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .expect("rfc3339");
    let wait = (deadline - Utc::now() + ChronoDuration::milliseconds(50))
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait).await;

    let body = TestEnv::webhook_body("evt-late", "payment.succeeded", &checkout);
    let first = pay.webhook(&body, Some(&env.sign_webhook(&body))).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert_eq!(first.body["status"], "refund_required");
    let again = pay.webhook(&body, Some(&env.sign_webhook(&body))).await;
    assert_eq!(
        (again.status, &again.body),
        (first.status, &first.body),
        "the replay answers the same"
    );

    let rows = env.paid_orders(sale).await;
    assert_eq!((rows[0].1.as_str(), rows[0].2), ("pending_payment", None));
    assert_eq!(env.payment_counters(sale).await.2, 0, "no priority taken");
    assert_eq!(gw.sale(sale).await.body["sold"], 0, "the unit is not sold");
    let payment = checkout["payment_id"].as_str().unwrap_or_default();
    let (id, announced) = refunds
        .next(DRAIN)
        .await
        .expect("payment.refund_required published");
    assert_eq!(id, payment);
    assert_eq!(announced["order_status"], "expired");
    assert_eq!(
        env.payments_of(checkout["order_id"].as_str().unwrap_or_default())
            .await[0]
            .1,
        "refund_required"
    );
    // Checkout is refused once the deadline has passed.
    let late = pay
        .checkout(
            checkout["order_id"].as_str().unwrap_or_default(),
            &env.token("dora"),
        )
        .await;
    assert_eq!(
        (late.status, late.code()),
        (StatusCode::CONFLICT, "ORDER_NOT_PAYABLE")
    );
    env.cleanup().await;
}
