//! The consumer's own view of a delivery: everything a handler needs to decide, in plain types, so a service
//! handles messages without importing lapin. The acknowledgement handle stays inside the consumer loop.

use lapin::Acker;
use lapin::message::Delivery;
use lapin::types::AMQPValue;

/// One delivered message, as a [`BatchHandler`](crate::BatchHandler) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub body: Vec<u8>,
    /// The `message_id` property (the order id for reservations); `None` when the publisher set none.
    pub message_id: Option<String>,
    /// The exchange and routing key it was published with.
    pub exchange: String,
    pub routing_key: String,
    /// The broker handed it out before without an acknowledgement (a crash, a closed channel).
    pub redelivered: bool,
    /// `x-delivery-count` (quorum queues): earlier deliveries that ended without an acknowledgement.
    pub delivery_count: Option<u64>,
}

impl Message {
    /// Splits a delivery into what the handler reads and the handle the consumer settles it with.
    pub(crate) fn from_delivery(d: Delivery) -> (Self, Acker) {
        let delivery_count = d
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-delivery-count"))
            .and_then(unsigned);
        let message = Self {
            message_id: d.properties.message_id().as_ref().map(|id| id.to_string()),
            exchange: d.exchange.to_string(),
            routing_key: d.routing_key.to_string(),
            redelivered: d.redelivered,
            delivery_count,
            body: d.data,
        };
        (message, d.acker)
    }
}

/// An integer header as RabbitMQ may encode it.
fn unsigned(v: &AMQPValue) -> Option<u64> {
    match v {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some((*n).into()),
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some((*n).into()),
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortShortUInt(n) => Some((*n).into()),
        _ => None,
    }
}
