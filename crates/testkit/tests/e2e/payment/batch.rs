//! Webhook events are applied in batches (one transaction of set-based statements): a refused event or a replay
//! in the same batch must leave its neighbours applied, priorities stay 1..N, and events that arrive together
//! for the same payment or order are decided one after the other, never both against the same state.

use super::reserve_and_checkout;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::{SaleSpec, TestEnv, eventually};
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn refused_and_replayed_events_in_a_batch_leave_their_neighbours_applied() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let pay = env.spawn_payment().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(20)).await;
    let mut good = Vec::new();
    let mut wrong_amount = Vec::new();
    for i in 0..20 {
        let checkout = reserve_and_checkout(&env, &gw, &pay, sale, &format!("batch{i}")).await;
        good.push(TestEnv::webhook_body(
            &format!("evt-{i}"),
            "payment.succeeded",
            &checkout,
        ));
        if i % 2 == 0 {
            let mut bad: Value = serde_json::from_slice(&good[i]).unwrap_or_default();
            bad["event_id"] = format!("evt-bad-{i}").into();
            bad["amount"] = "0.01".into();
            wrong_amount.push(serde_json::to_vec(&bad).unwrap_or_default());
        }
    }
    eventually(DRAIN, || env.order_count(sale), 20).await;
    // Interleaved: every good event, a refused one after every other, and each good one twice.
    let mut sent: Vec<(&str, &Vec<u8>)> = Vec::new();
    for (i, body) in good.iter().enumerate() {
        sent.push(("good", body));
        if let Some(bad) = wrong_amount.get(i / 2).filter(|_| i % 2 == 0) {
            sent.push(("bad", bad));
        }
        sent.push(("again", body));
    }
    let answers = join_all(sent.iter().map(|(kind, body)| {
        let sig = env.sign_webhook(body);
        let pay = &pay;
        async move { (*kind, pay.webhook(body, Some(&sig)).await) }
    }))
    .await;
    for (kind, reply) in &answers {
        match *kind {
            "bad" => assert_eq!(
                (reply.status, reply.code()),
                (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
                "{reply:?}"
            ),
            _ => {
                assert_eq!(reply.status, StatusCode::OK, "{kind}: {reply:?}");
                assert_eq!(reply.body["status"], "paid", "{kind}: {reply:?}");
            }
        }
    }
    // The two answers of each event are the same answer (one of them a replay).
    for pair in answers
        .iter()
        .filter(|(k, _)| *k != "bad")
        .collect::<Vec<_>>()
        .chunks(2)
    {
        assert_eq!(
            pair[0].1.body, pair[1].1.body,
            "a replay answers the first answer"
        );
    }
    let rows = env.paid_orders(sale).await;
    let priorities: Vec<Option<i64>> = rows.iter().map(|r| r.2).collect();
    assert_eq!(
        priorities,
        (1..=20).map(Some).collect::<Vec<_>>(),
        "{rows:?}"
    );
    assert_eq!(env.payment_counters(sale).await.2, 20);
    env.cleanup().await;
}

/// Two payments of one order (the buyer checked out again after a failed attempt) both report success, each
/// event three times, all at once: the order is paid once, by one of them, with priority 1; the other payment
/// is refund_required; every copy of an event answers what its first copy answered.
#[tokio::test(flavor = "multi_thread")]
async fn two_payments_of_one_order_and_repeated_events_arriving_together_settle_once() {
    let env = TestEnv::new().await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let pay = env.spawn_payment().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(1)).await;
    let first = reserve_and_checkout(&env, &gw, &pay, sale, "twice").await;
    let order = first["order_id"].as_str().unwrap_or_default().to_owned();
    let failed = TestEnv::webhook_body("evt-failed", "payment.failed", &first);
    let reply = pay.webhook(&failed, Some(&env.sign_webhook(&failed))).await;
    assert_eq!(reply.body["status"], "pending_payment", "{reply:?}");
    let second = pay.checkout(&order, &env.token("twice")).await;
    assert_eq!(second.status, StatusCode::OK, "{second:?}");
    assert_ne!(
        second.body["payment_id"], first["payment_id"],
        "a new attempt after a failure"
    );
    eventually(DRAIN, || env.order_count(sale), 1).await;

    let a = TestEnv::webhook_body("evt-a", "payment.succeeded", &first);
    let b = TestEnv::webhook_body("evt-b", "payment.succeeded", &second.body);
    let sent = [&a, &b, &a, &b, &a, &b];
    let answers = join_all(sent.iter().map(|body| {
        let sig = env.sign_webhook(body);
        let pay = &pay;
        async move { pay.webhook(body, Some(&sig)).await }
    }))
    .await;
    for reply in &answers {
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
    let (of_a, of_b): (Vec<_>, Vec<_>) = answers.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for copies in [&of_a, &of_b] {
        assert!(
            copies.iter().all(|(_, r)| r.body == copies[0].1.body),
            "every copy of an event answers the same: {copies:?}"
        );
    }
    let mut statuses = vec![
        of_a[0].1.body["status"].as_str().unwrap_or_default(),
        of_b[0].1.body["status"].as_str().unwrap_or_default(),
    ];
    statuses.sort_unstable();
    assert_eq!(statuses, ["paid", "refund_required"], "{answers:?}");
    let rows = env.paid_orders(sale).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].2, Some(1), "{rows:?}");
    let mut payments: Vec<String> = env
        .payments_of(&order)
        .await
        .into_iter()
        .map(|p| p.1)
        .collect();
    payments.sort_unstable();
    assert_eq!(
        payments,
        ["refund_required", "succeeded"],
        "the failed attempt succeeded after all, or not"
    );
    assert_eq!(env.payment_counters(sale).await.2, 1, "paid_count");
    env.cleanup().await;
}
