//! The broker's side of the promise: a nack (of a message carrying several reservations) that is not "the broker
//! did not take it", confirms and returns that belong to their own publish under concurrency, and queue
//! arguments that changed under a running system.
//!
//! The nack test makes one queue of its own topology refuse publishes with a RabbitMQ policy, set and cleared
//! with `rabbitmqctl` (override the command with `FLASHSALE_TEST_RABBITMQCTL`).

mod in_flight;

use flashsale_broker::{Names, PublishError, Publisher};
use flashsale_platform::settings::QueueType;
use flashsale_testkit::env::DRAIN;
use flashsale_testkit::services::{spawn_gateway_with, spawn_order_writer_with};
use flashsale_testkit::{SaleSpec, TestEnv, eventually};
use prometheus::Registry;
use rand::Rng;
use reqwest::StatusCode;
use std::process::Command;
use std::time::{Duration, Instant};

fn rabbitmqctl(args: &[&str]) -> String {
    let program =
        std::env::var("FLASHSALE_TEST_RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".into());
    let out = Command::new(&program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (the local broker's CLI): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A policy that makes the test's expiry wait queues refuse every publish (max-length 0; the queues already
/// carry `x-overflow=reject-publish`). Cleared on drop, so a failing test leaves nothing behind.
struct RefusingPolicy {
    name: String,
    pattern: String,
}

impl RefusingPolicy {
    fn set(env: &TestEnv) -> Self {
        let policy = Self {
            name: format!("{}-refuse", env.name),
            pattern: format!(
                "^{}expiry\\.wait\\.",
                env.settings.amqp.prefix.replace('.', "\\.")
            ),
        };
        policy.apply(r#"{"max-length":0}"#);
        policy
    }

    /// Lifts the limit. Raised rather than cleared: RabbitMQ 3.10 tells a quorum queue's refused publishers to
    /// go on only when the queue is below a limit, so removing the limit outright leaves them refused.
    fn lift(&self) {
        self.apply(r#"{"max-length":1000000}"#);
    }

    fn apply(&self, definition: &str) {
        rabbitmqctl(&[
            "set_policy",
            "--apply-to",
            "queues",
            "--priority",
            "100",
            &self.name,
            &self.pattern,
            definition,
        ]);
    }
}

/// True once the broker applies policy `name` to `queue`.
fn policy_applies(name: &str, queue: &str) -> bool {
    rabbitmqctl(&["list_queues", "-q", "--no-table-headers", "name", "policy"])
        .lines()
        .any(|line| {
            let mut cols = line.split_whitespace();
            cols.next() == Some(queue) && cols.next() == Some(name)
        })
}

impl Drop for RefusingPolicy {
    fn drop(&mut self) {
        let _ = Command::new(
            std::env::var("FLASHSALE_TEST_RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".into()),
        )
        .args(["clear_policy", &self.name])
        .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nacked_batch_keeps_every_unit_held_and_the_relay_finishes_each_reservation() {
    // A linger long enough that the three reservations below share one message (group commit).
    let env = TestEnv::with(|s| s.gateway.group_commit_linger_us = 50_000).await;
    let gw = env.spawn_gateway().await;
    let _writer = env.spawn_order_writer().await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(10)).await;
    let wait_queue = Names::new(&env.settings.amqp.prefix).expiry_wait_queue(60);

    let policy = RefusingPolicy::set(&env);
    eventually(
        Duration::from_secs(20),
        || {
            let (name, queue) = (policy.name.clone(), wait_queue.clone());
            async move {
                tokio::task::spawn_blocking(move || policy_applies(&name, &queue))
                    .await
                    .unwrap_or(false)
            }
        },
        true,
    )
    .await;

    // A quorum queue refuses once it holds more than max-length: the first reservation fills it.
    let filler = gw.reserve(sale, &env.token("filler")).await;
    assert_eq!(filler.status, StatusCode::ACCEPTED, "{filler:?}");
    // Now the expiry wait queue refuses (nack) while order-writer's and payment's queues keep their copies:
    // the nack of the one message carrying three reservations is every one's answer.
    let buyers = ["nora", "olga", "pia"];
    let tokens: Vec<String> = buyers.iter().map(|b| env.token(b)).collect();
    let refused = futures_util::future::join_all(
        tokens
            .iter()
            .map(|t| gw.reserve_with_key(sale, t, "nacked-once")),
    )
    .await;
    for reply in &refused {
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
        assert!(reply.retry_after().is_some());
    }
    assert_eq!(
        gw.group_commit(),
        (2, 4),
        "the filler alone, then the three in one message"
    );
    assert_eq!(
        env.remaining(sale).await,
        Some(6),
        "a nack proves nothing: every unit of the batch stays held while a copy of the message may exist"
    );
    assert_eq!(env.outbox_len(sale).await, 3, "the relay owns them now");
    eventually(DRAIN, || env.order_count(sale), 4).await;

    policy.lift();
    eventually(DRAIN, || env.outbox_len(sale), 0).await;
    let rows = env.orders(sale).await;
    for buyer in buyers {
        let theirs: Vec<_> = rows.iter().filter(|r| r.1 == buyer).collect();
        assert_eq!(theirs.len(), 1, "exactly one order for {buyer}: {rows:?}");
    }
    assert_eq!(env.order_count(sale).await, 4);
    assert_eq!(
        env.remaining(sale).await.unwrap_or(-1) + env.held(sale).await,
        10,
        "no oversell: remaining + held = stock"
    );
    for (buyer, token) in buyers.iter().zip(&tokens) {
        let retry = gw.reserve_with_key(sale, token, "nacked-once").await;
        assert_eq!(retry.status, StatusCode::ACCEPTED, "{retry:?}");
        let row = rows.iter().find(|r| r.1 == *buyer).map(|r| r.0.as_str());
        assert_eq!(retry.body["order_id"].as_str(), row);
    }
    drop(policy);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishes_each_get_their_own_confirm() {
    const MESSAGES: usize = 3000;
    const TASKS: usize = 64;
    let env = TestEnv::with(|s| {
        s.amqp.confirm_timeout_ms = 20_000;
        s.outbox.relay_age_ms = 30_000;
    })
    .await;
    let publisher = Publisher::start(
        &env.settings.amqp,
        Names::new(&env.settings.amqp.prefix),
        "test",
        [],
        &Registry::new(),
    )
    .await
    .expect("publisher");
    let unroutable: Vec<bool> = {
        let mut rng = rand::rng();
        (0..MESSAGES).map(|_| rng.random_ratio(1, 3)).collect()
    };

    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let publisher = publisher.clone();
            let unroutable = unroutable.clone();
            tokio::spawn(async move {
                let mut results = Vec::new();
                for i in (t..MESSAGES).step_by(TASKS) {
                    let key = if unroutable[i] {
                        "nowhere.bound"
                    } else {
                        "reservation.created.w0"
                    };
                    let id = format!("m{i}");
                    let result = publisher.publish(key, &id, id.as_bytes()).await;
                    results.push((i, result));
                }
                results
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for task in tasks {
        for (i, result) in task.await.expect("task") {
            let fine = match result {
                Ok(()) => !unroutable[i],
                Err(PublishError::Unroutable) => unroutable[i],
                Err(_) => false,
            };
            if !fine {
                wrong.push((i, unroutable[i], result));
            }
        }
    }
    let rate = MESSAGES as f64 / started.elapsed().as_secs_f64();
    eprintln!("{MESSAGES} concurrent publishes: {rate:.0}/s");
    assert!(
        wrong.is_empty(),
        "{} of {MESSAGES} publishes got another publish's answer, e.g. (index, unroutable, answer) {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    publisher.close().await;
    env.cleanup().await;
}

/// The topology exists with `before`'s arguments; services start with `after`'s: they keep working.
async fn services_survive_changed_queue_arguments(
    before: impl FnOnce(&mut flashsale_platform::Settings),
    after: impl FnOnce(&mut flashsale_platform::Settings),
) {
    let env = TestEnv::with(before).await;
    let old = Publisher::start(
        &env.settings.amqp,
        Names::new(&env.settings.amqp.prefix),
        "old-release",
        [60],
        &Registry::new(),
    )
    .await
    .expect("the old topology");
    old.close().await;

    let mut changed = env.settings.clone();
    after(&mut changed);
    let gw = spawn_gateway_with(changed.clone()).await;
    let _writer = spawn_order_writer_with(changed).await;
    let sale = gw.create_sale(&env, &SaleSpec::stock(5)).await;
    for buyer in ["ada", "bo"] {
        let reply = gw.reserve(sale, &env.token(buyer)).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{reply:?}");
    }
    eventually(DRAIN, || env.order_count(sale), 2).await;
    let ready = gw.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{ready:?}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_delivery_limit_does_not_take_the_services_down() {
    services_survive_changed_queue_arguments(
        |s| s.amqp.delivery_limit = 20,
        |s| s.amqp.delivery_limit = 7,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_queue_type_does_not_take_the_services_down() {
    services_survive_changed_queue_arguments(
        |s| s.amqp.queue_type = QueueType::Classic,
        |s| s.amqp.queue_type = QueueType::Quorum,
    )
    .await;
}
