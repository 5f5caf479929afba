//! payment SIGKILLed, or SIGTERMed, in the middle of a burst of webhooks: every webhook answered 200 is applied
//! exactly once, and sending the rest again completes them with priorities exactly 1..N. SIGTERM also exits 0
//! within `payment.shutdown_grace_ms`.

use super::reserve_and_checkout;
use flashsale_broker::Names;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::process::assert_stopping;
use flashsale_testkit::{SaleSpec, TestEnv, eventually};
use reqwest::StatusCode;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

const ORDERS: usize = 40;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Kill,
    Term,
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_killed_mid_burst_applies_each_answered_webhook_once() {
    stopped_mid_burst(Stop::Kill).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn payment_sigtermed_mid_burst_exits_0_within_its_grace_and_loses_no_webhook() {
    stopped_mid_burst(Stop::Term).await;
}

/// The readiness delay of the SIGTERM case: the webhook burst is still answered while `/readyz` says 503.
const DELAY: Duration = Duration::from_millis(1000);

async fn stopped_mid_burst(stop: Stop) {
    let env = TestEnv::with(|s| s.payment.shutdown_delay_ms = DELAY.as_millis() as u64).await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let first = env.start_payment_process().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(ORDERS as i64)).await;
    let mut bodies = Vec::new();
    for i in 0..ORDERS {
        let checkout = reserve_and_checkout(&env, &gw, &first, sale, &format!("b{i}")).await;
        bodies.push(TestEnv::webhook_body(
            &format!("evt-{i}"),
            "payment.succeeded",
            &checkout,
        ));
    }
    eventually(DRAIN, || env.order_count(sale), ORDERS as i64).await;

    // The burst: raw requests (a connection reset is an answer too), killed once a quarter are answered.
    let answered = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::new();
    let url = format!("{}/webhooks/psp", first.base);
    let burst = bodies.iter().map(|body| {
        let (http, url, answered) = (http.clone(), url.clone(), Arc::clone(&answered));
        let sig = env.sign_webhook(body);
        let body = body.clone();
        async move {
            let res = http
                .post(url)
                .header(flashsale_webhook::HEADER, sig)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            answered.fetch_add(1, Ordering::SeqCst);
            match res {
                Ok(r) if r.status() == StatusCode::OK => r.json::<serde_json::Value>().await.ok(),
                _ => None,
            }
        }
    });
    let burst = tokio::spawn(futures_util::future::join_all(burst));
    eventually(
        DRAIN,
        || async { answered.load(Ordering::SeqCst) >= ORDERS / 4 },
        true,
    )
    .await;
    match stop {
        Stop::Kill => first.kill().await,
        Stop::Term => {
            let grace = Duration::from_millis(env.settings.payment.shutdown_grace_ms);
            first.process().terminate();
            let sent = Instant::now();
            assert_stopping(&first.base).await;
            let status = first.process().exit_within(DELAY + grace).await;
            let took = sent.elapsed();
            assert!(
                status.is_some_and(|s| s.success()),
                "payment exits 0 within its delay and grace after SIGTERM: {status:?} after {took:?}"
            );
            assert!(
                took >= DELAY,
                "HTTP was served for the whole delay: {took:?}"
            );
        }
    }
    let firsts: Vec<Option<serde_json::Value>> = burst.await.expect("burst");
    let ok: HashMap<usize, serde_json::Value> = firsts
        .into_iter()
        .enumerate()
        .filter_map(|(i, a)| a.map(|a| (i, a)))
        .collect();
    assert!(
        !ok.is_empty(),
        "some webhooks were answered before the kill"
    );

    // Every webhook answered 200 is applied.
    let rows = env.paid_orders(sale).await;
    for answer in ok.values() {
        let row = rows
            .iter()
            .find(|r| r.0 == answer["order_id"].as_str().unwrap_or_default());
        assert_eq!(
            row.map(|r| (r.1.as_str(), r.2)),
            Some(("paid", answer["shipping_priority"].as_i64()))
        );
    }

    // The provider retries everything: the answered ones answer the same, the rest complete.
    let second = env.start_payment_process().await;
    for (i, body) in bodies.iter().enumerate() {
        let reply = second.webhook(body, Some(&env.sign_webhook(body))).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.body["status"], "paid");
        if let Some(first_answer) = ok.get(&i) {
            assert_eq!(
                &reply.body, first_answer,
                "a replay answers what was answered first"
            );
        }
    }
    let rows = env.paid_orders(sale).await;
    let priorities: Vec<Option<i64>> = rows.iter().map(|r| r.2).collect();
    let expected: Vec<Option<i64>> = (1..=ORDERS as i64).map(Some).collect();
    assert_eq!(
        priorities, expected,
        "each applied exactly once, no gap, no repeat"
    );
    assert_eq!(env.payment_counters(sale).await.2, ORDERS as i64);
    eventually(
        DRAIN,
        || async { gw.sale(sale).await.body["sold"].as_i64() },
        Some(ORDERS as i64),
    )
    .await;
    // Nothing left unacknowledged on the payment queue: every reservation was recorded and acknowledged.
    let queue = Names::new(&env.settings.amqp.prefix).payment_queue();
    let counts = || async {
        let q = env.queue_counts(&queue).await;
        (q.ready, q.unacked)
    };
    eventually(DRAIN, counts, (0, 0)).await;
    env.cleanup().await;
}
