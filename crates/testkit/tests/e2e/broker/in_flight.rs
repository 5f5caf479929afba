//! The consumer with several batches in hand: the next batch is handled while an earlier one still is, and
//! batches are acknowledged in the order they were collected, so the later one's `multiple` ack never covers
//! the earlier one's deliveries; not even when a shutdown stops the earlier one in its retry backoff. A
//! handler that panics ends the session, not the consumer.

use flashsale_broker::{
    BatchHandler, ConsumeOptions, ConsumerMetrics, HandleError, Message, Names, RetryPolicy,
    Settle, consume_batches,
};
use flashsale_testkit::{TestEnv, eventually};
use prometheus::Registry;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Records the message ids it is handed; holds the batch of "first" until released.
#[derive(Default)]
struct Gate {
    handled: Mutex<Vec<String>>,
    release: Notify,
}

impl BatchHandler for Gate {
    async fn handle(&self, batch: &[Message]) -> Result<Vec<Settle>, HandleError> {
        let ids: Vec<String> = batch.iter().filter_map(|m| m.message_id.clone()).collect();
        let first = ids.iter().any(|id| id == "first");
        self.handled.lock().expect("lock").extend(ids);
        if first {
            self.release.notified().await;
        }
        Ok(vec![Settle::Ack; batch.len()])
    }
}

impl Gate {
    /// Waits until both "first" and "second" reached the handler, in either order (each batch runs in a task
    /// of its own).
    async fn handed_both(&self) {
        let handled = || async {
            let mut ids = self.handled.lock().expect("lock").clone();
            ids.sort_unstable();
            ids
        };
        let both = vec!["first".to_owned(), "second".to_owned()];
        eventually(Duration::from_secs(10), handled, both).await;
    }
}

/// `flashsale_messages_total{result="ack"}` of the consumer's registry.
fn acked(registry: &Registry) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "flashsale_messages_total")
        .flat_map(|f| f.get_metric())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "result" && l.value() == "ack")
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// A consumer of the test's order-writer queue: batches of one message, two in flight.
struct Running {
    consumer: JoinHandle<()>,
    registry: Registry,
    stop: CancellationToken,
    queue: String,
}

impl Running {
    fn start<H: BatchHandler>(env: &TestEnv, handler: Arc<H>) -> Self {
        let names = Names::new(&env.settings.amqp.prefix);
        let queue = names.order_writer_queue();
        let opts = ConsumeOptions {
            role: "test-in-flight".into(),
            queue: queue.clone(),
            batch_size: 1,
            linger: Duration::from_millis(1),
            retry: RetryPolicy::new(1),
            in_flight: 2,
        };
        let registry = Registry::new();
        let stop = CancellationToken::new();
        let consumer = tokio::spawn(consume_batches(
            env.settings.amqp.clone(),
            names,
            opts,
            handler,
            ConsumerMetrics::new(&registry),
            Arc::new(AtomicBool::new(false)),
            stop.clone(),
        ));
        Self {
            consumer,
            registry,
            stop,
            queue,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.consumer.await.expect("consumer task");
    }
}

async fn publish(env: &TestEnv, ids: &[&str]) -> flashsale_broker::Publisher {
    let publisher = crate::poison::publisher(env).await;
    for id in ids {
        publisher
            .publish("reservation.created.w60", id, b"{}")
            .await
            .expect("published");
    }
    publisher
}

/// (ready, unacknowledged) deliveries of `queue`.
async fn counts(env: &TestEnv, queue: &str) -> (u64, u64) {
    let q = env.queue_counts(queue).await;
    (q.ready, q.unacked)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_batch_is_handled_while_the_first_is_in_hand_and_acknowledged_only_after_it() {
    let env = TestEnv::new().await;
    let publisher = publish(&env, &["first", "second"]).await;
    let gate = Arc::new(Gate::default());
    let running = Running::start(&env, Arc::clone(&gate));
    let registry = &running.registry;

    gate.handed_both().await;
    // "second" is done, but its ack would cover "first": nothing is acknowledged while "first" is in hand.
    assert_eq!(acked(registry), 0);
    gate.release.notify_one();
    eventually(Duration::from_secs(10), || async { acked(registry) }, 2).await;
    let settled = || counts(&env, &running.queue);
    eventually(Duration::from_secs(10), settled, (0, 0)).await;

    running.stop().await;
    publisher.close().await;
    env.cleanup().await;
}

/// "first" meets an outage on every attempt (so it sits in its retry backoff); the rest are written at once.
#[derive(Default)]
struct Outage {
    attempts_on_first: AtomicU32,
    others: Mutex<Vec<String>>,
}

impl BatchHandler for Outage {
    async fn handle(&self, batch: &[Message]) -> Result<Vec<Settle>, HandleError> {
        let ids: Vec<String> = batch.iter().filter_map(|m| m.message_id.clone()).collect();
        if ids.iter().any(|id| id == "first") {
            self.attempts_on_first.fetch_add(1, Ordering::SeqCst);
            return Err(HandleError::Outage(anyhow::anyhow!("the database is down")));
        }
        self.others.lock().expect("lock").extend(ids);
        Ok(vec![Settle::Ack; batch.len()])
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shutdown_during_a_retry_backoff_leaves_the_later_batch_unacknowledged_too() {
    let env = TestEnv::new().await;
    let publisher = publish(&env, &["first", "second"]).await;
    let outage = Arc::new(Outage::default());
    let running = Running::start(&env, Arc::clone(&outage));
    let registry = running.registry.clone();

    // "second" is written while "first" waits out its outage.
    let progress = || async {
        let others = outage.others.lock().expect("lock").clone();
        (outage.attempts_on_first.load(Ordering::SeqCst) > 0, others)
    };
    eventually(
        Duration::from_secs(10),
        progress,
        (true, vec!["second".to_owned()]),
    )
    .await;
    // The shutdown stops "first" in its backoff, uncommitted. An ack of "second" (multiple, as every ack
    // is) would cover "first" too and lose it: both must stay unacknowledged and go back to the queue.
    running.stop().await;
    assert_eq!(acked(&registry), 0);
    // The next consumer is handed both.
    let next = Arc::new(Gate::default());
    next.release.notify_one();
    let running = Running::start(&env, Arc::clone(&next));
    next.handed_both().await;
    eventually(
        Duration::from_secs(10),
        || async { acked(&running.registry) },
        2,
    )
    .await;
    running.stop().await;

    publisher.close().await;
    env.cleanup().await;
}

/// Panics on its first call, then writes everything.
#[derive(Default)]
struct PanicsOnce {
    calls: AtomicU32,
}

impl BatchHandler for PanicsOnce {
    async fn handle(&self, batch: &[Message]) -> Result<Vec<Settle>, HandleError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("a handler bug");
        }
        Ok(vec![Settle::Ack; batch.len()])
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_that_panics_ends_the_session_and_the_redelivered_batch_is_handled() {
    let env = TestEnv::new().await;
    let publisher = publish(&env, &["only"]).await;
    let handler = Arc::new(PanicsOnce::default());
    let running = Running::start(&env, Arc::clone(&handler));

    // The panicking attempt settles nothing; the consumer reconnects and the broker redelivers the message.
    eventually(
        Duration::from_secs(15),
        || async { acked(&running.registry) },
        1,
    )
    .await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
    assert!(!running.consumer.is_finished(), "the consumer task ended");
    eventually(
        Duration::from_secs(10),
        || counts(&env, &running.queue),
        (0, 0),
    )
    .await;

    running.stop().await;
    publisher.close().await;
    env.cleanup().await;
}
