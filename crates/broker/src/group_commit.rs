//! Group commit: the reservations accepted within a short linger go out as one persistent, confirmed message.
//!
//! RabbitMQ pays per message (an enqueue per queue, a quorum replication round, a confirm), not per byte. A
//! collector task takes what callers hand it, waits at most `linger` after the first for more (never past
//! `max` members), and publishes each routing key's members as one [`ReservationBatch`]; a lone member goes
//! out as itself. Every member's caller gets that one message's outcome, exactly as if it had published
//! alone: a nack, a return or a missing confirm applies to every member, and the caller's rules for it
//! (release only what the broker certainly does not hold) stay the same.

use crate::publisher::{PublishError, Publisher};
use flashsale_domain::{RESERVATION_BATCH_TYPE, ReservationBatch};
use flashsale_platform::metrics::histogram_vec;
use prometheus::{Histogram, Registry};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// One member waiting for its message's confirm.
struct Member {
    routing_key: String,
    message_id: String,
    body: Vec<u8>,
    answer: oneshot::Sender<Result<(), PublishError>>,
}

/// Cheap to clone; the collector ends once every clone is dropped, after publishing what it holds.
#[derive(Clone)]
pub struct GroupCommit {
    publisher: Publisher,
    /// `None` when group commit is off (`max` 1): every publish goes out alone, as before.
    tx: Option<mpsc::UnboundedSender<Member>>,
}

impl GroupCommit {
    /// `linger`: the longest the first member of a message waits for company; `max`: members per message.
    pub fn start(publisher: Publisher, linger: Duration, max: usize, registry: &Registry) -> Self {
        if max <= 1 {
            return Self {
                publisher,
                tx: None,
            };
        }
        let sizes = histogram_vec(
            registry,
            "flashsale_publish_batch_reservations",
            "Reservations carried by one published message (group commit)",
            &[],
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
        )
        .with_label_values(&[] as &[&str]);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(collect(publisher.clone(), rx, linger, max, sizes));
        Self {
            publisher,
            tx: Some(tx),
        }
    }

    /// Publishes `body` (one `reservation.created`) together with whatever else arrives within the linger
    /// and answers once the message carrying it is confirmed (or failed).
    /// Takes what it sends by value: the reservation path builds each of them once for this call.
    pub async fn publish(
        &self,
        routing_key: String,
        message_id: String,
        body: Vec<u8>,
    ) -> Result<(), PublishError> {
        let Some(tx) = &self.tx else {
            return self
                .publisher
                .publish(&routing_key, &message_id, &body)
                .await;
        };
        let (answer, rx) = oneshot::channel();
        let member = Member {
            routing_key,
            message_id,
            body,
            answer,
        };
        if tx.send(member).is_err() {
            return Err(PublishError::NotSent(
                "the group-commit collector stopped".into(),
            ));
        }
        // The collector answers every member it took; a dropped answer means it never sent this one.
        rx.await.unwrap_or_else(|_| {
            Err(PublishError::Unconfirmed(
                "the group-commit collector dropped the reservation".into(),
            ))
        })
    }
}

async fn collect(
    publisher: Publisher,
    mut rx: mpsc::UnboundedReceiver<Member>,
    linger: Duration,
    max: usize,
    sizes: Histogram,
) {
    let mut buf = Vec::with_capacity(max);
    loop {
        if rx.recv_many(&mut buf, max).await == 0 {
            return;
        }
        let deadline = Instant::now() + linger;
        while buf.len() < max && !linger.is_zero() {
            let room = max - buf.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut buf, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let mut by_key: BTreeMap<String, Vec<Member>> = BTreeMap::new();
        for mut member in buf.drain(..) {
            let key = std::mem::take(&mut member.routing_key);
            by_key.entry(key).or_default().push(member);
        }
        for (routing_key, members) in by_key {
            sizes.observe(members.len() as f64);
            // Confirms are awaited in their own task: the next message is collected meanwhile.
            tokio::spawn(publish_members(publisher.clone(), routing_key, members));
        }
    }
}

async fn publish_members(publisher: Publisher, routing_key: String, members: Vec<Member>) {
    let result = match members.as_slice() {
        [one] => {
            publisher
                .publish(&routing_key, &one.message_id, &one.body)
                .await
        }
        many => {
            let batch_id = uuid::Uuid::now_v7();
            let bodies: Vec<&[u8]> = many.iter().map(|m| m.body.as_slice()).collect();
            let body = ReservationBatch::encode(batch_id, &bodies);
            publisher
                .publish_typed(
                    &routing_key,
                    &batch_id.to_string(),
                    &body,
                    RESERVATION_BATCH_TYPE,
                )
                .await
        }
    };
    for member in members {
        // A caller that stopped waiting (dropped request) leaves its entry to the relay, as before.
        let _ = member.answer.send(result.clone());
    }
}
