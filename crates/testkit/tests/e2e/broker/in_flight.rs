//! The consumer with several batches in hand: the next batch is handled while an earlier one still is, and
//! batches are acknowledged in the order they were collected, so the later one's `multiple` ack never covers
//! the earlier one's deliveries.

use flashsale_broker::{
    BatchHandler, ConsumeOptions, ConsumerMetrics, HandleError, Message, Names, RetryPolicy,
    Settle, consume_batches,
};
use flashsale_testkit::{TestEnv, eventually};
use prometheus::Registry;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
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

#[tokio::test(flavor = "multi_thread")]
async fn a_second_batch_is_handled_while_the_first_is_in_hand_and_acknowledged_only_after_it() {
    let env = TestEnv::new().await;
    let names = Names::new(&env.settings.amqp.prefix);
    let publisher = crate::poison::publisher(&env).await;
    for id in ["first", "second"] {
        publisher
            .publish("reservation.created.w60", id, b"{}")
            .await
            .expect("published");
    }
    let gate = Arc::new(Gate::default());
    let stop = CancellationToken::new();
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
    let consumer = tokio::spawn(consume_batches(
        env.settings.amqp.clone(),
        names,
        opts,
        Arc::clone(&gate),
        ConsumerMetrics::new(&registry),
        Arc::new(AtomicBool::new(false)),
        stop.clone(),
    ));

    // Each batch runs in a task of its own: they may reach the handler in either order.
    let handled = || async {
        let mut ids = gate.handled.lock().expect("lock").clone();
        ids.sort_unstable();
        ids
    };
    eventually(
        Duration::from_secs(10),
        handled,
        vec!["first".to_owned(), "second".to_owned()],
    )
    .await;
    // "second" is done, but its ack would cover "first": nothing is acknowledged while "first" is in hand.
    assert_eq!(acked(&registry), 0);
    gate.release.notify_one();
    eventually(Duration::from_secs(10), || async { acked(&registry) }, 2).await;
    let settled = || async {
        let q = env.queue_counts(&queue).await;
        (q.ready, q.unacked)
    };
    eventually(Duration::from_secs(10), settled, (0, 0)).await;

    stop.cancel();
    consumer.await.expect("consumer task");
    publisher.close().await;
    env.cleanup().await;
}
