//! Batch messages as their members: a handler sees every reservation of a group-committed message as a
//! [`Message`] of its own, and settles each on its own.
//!
//! A delivery is still acknowledged as one: once all its members are settled. A member the handler refuses
//! (`DeadLetter`) is published alone to the dead-letter exchange, with the `x-death` headers the broker would
//! have written for it (so `flashsale-admin dlq` shows and replays it like any other), and only after that
//! publish is confirmed is the delivery acknowledged. A crash in between redelivers the whole batch: its
//! members are idempotent, and the refused one is dead-lettered again (a copy more in the dead-letter queue,
//! never one fewer). A delivery whose envelope cannot be read is handed over whole, and dead-lettered whole.

use crate::message::Message;
use flashsale_domain::{RESERVATION_BATCH_TYPE, ReservationBatch};
use lapin::message::Delivery;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::{Acker, BasicProperties, Channel, Confirmation, Connection};
use std::ops::Range;
use std::time::Duration;

/// One delivery and where its members sit in the batch handed to the handler.
pub(crate) struct Delivered {
    pub(crate) acker: Acker,
    pub(crate) members: Range<usize>,
    /// Set when the delivery was a batch message, unpacked into its members.
    pub(crate) batch_id: Option<String>,
}

/// Appends the delivery's members (or the delivery itself) to `batch`.
pub(crate) fn unpack(d: Delivery, batch: &mut Vec<Message>) -> Delivered {
    let is_batch = d.properties.kind().as_ref().map(|k| k.as_str()) == Some(RESERVATION_BATCH_TYPE);
    let (message, acker) = Message::from_delivery(d);
    let start = batch.len();
    let decoded = if is_batch {
        ReservationBatch::decode(&message.body).ok()
    } else {
        None
    };
    let Some(decoded) = decoded else {
        batch.push(message);
        return Delivered {
            acker,
            members: start..start + 1,
            batch_id: None,
        };
    };
    for member in &decoded.reservations {
        let body = member.get().as_bytes().to_vec();
        batch.push(Message {
            message_id: order_id(&body).or_else(|| message.message_id.clone()),
            body,
            exchange: message.exchange.clone(),
            routing_key: message.routing_key.clone(),
            redelivered: message.redelivered,
            delivery_count: message.delivery_count,
        });
    }
    Delivered {
        acker,
        members: start..batch.len(),
        batch_id: Some(decoded.batch_id.to_string()),
    }
}

/// A member's `order_id`, its own `message_id` had it been published alone.
fn order_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        order_id: String,
    }
    serde_json::from_slice::<Id>(body)
        .ok()
        .map(|id| id.order_id)
}

/// Publishes refused members to the dead-letter exchange on a confirm channel opened the first time one is
/// needed (poison is rare; the consuming channel is never put in confirm mode).
pub(crate) struct MemberDeadLetters<'a> {
    conn: &'a Connection,
    exchange: String,
    queue: String,
    confirm_timeout: Duration,
    channel: Option<Channel>,
}

impl<'a> MemberDeadLetters<'a> {
    pub(crate) fn new(
        conn: &'a Connection,
        exchange: String,
        queue: String,
        confirm_timeout: Duration,
    ) -> Self {
        Self {
            conn,
            exchange,
            queue,
            confirm_timeout,
            channel: None,
        }
    }

    /// Returns once the dead-letter queue holds `member`; any doubt is an error (the delivery then stays
    /// unacknowledged and comes back).
    pub(crate) async fn publish(&mut self, member: &Message, batch_id: &str) -> anyhow::Result<()> {
        let channel = match &self.channel {
            Some(ch) if ch.status().connected() => ch.clone(),
            _ => {
                let ch = self.conn.create_channel().await?;
                ch.confirm_select(ConfirmSelectOptions::default()).await?;
                self.channel = Some(ch.clone());
                ch
            }
        };
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_headers(self.death_headers(member, batch_id));
        if let Some(id) = &member.message_id {
            props = props.with_message_id(id.as_str().into());
        }
        let confirm = channel
            .basic_publish(
                self.exchange.as_str().into(),
                member.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &member.body,
                props,
            )
            .await?;
        match tokio::time::timeout(self.confirm_timeout, confirm).await {
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(other)) => {
                anyhow::bail!("the dead-letter exchange did not take the member: {other:?}")
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => anyhow::bail!(
                "no confirm from the dead-letter exchange within {:?}",
                self.confirm_timeout
            ),
        }
    }

    /// What RabbitMQ writes when it dead-letters a message this queue rejected, plus the batch it came in.
    fn death_headers(&self, member: &Message, batch_id: &str) -> FieldTable {
        let text = |s: &str| AMQPValue::LongString(LongString::from(s));
        let mut death = FieldTable::default();
        death.insert("count".into(), AMQPValue::LongLongInt(1));
        death.insert("reason".into(), text("rejected"));
        death.insert("queue".into(), text(&self.queue));
        death.insert(
            "time".into(),
            AMQPValue::Timestamp(u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)),
        );
        death.insert("exchange".into(), text(&member.exchange));
        death.insert(
            "routing-keys".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![text(&member.routing_key)])),
        );
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        headers.insert("x-first-death-exchange".into(), text(&member.exchange));
        headers.insert("x-first-death-queue".into(), text(&self.queue));
        headers.insert("x-first-death-reason".into(), text("rejected"));
        headers.insert("x-flashsale-batch-id".into(), text(batch_id));
        headers
    }
}
