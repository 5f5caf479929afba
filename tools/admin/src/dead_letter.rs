//! One message of the dead-letter queue: where it died (the newest `x-death` entry), where a replay sends it
//! (the exchange and routing key it had been published with before), and how it is printed.

use chrono::DateTime;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::{Acker, BasicProperties};

/// Headers RabbitMQ adds when it dead-letters a message; a replayed message starts without them.
const DEATH_HEADERS: [&str; 7] = [
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
];

pub struct DeadLetter {
    pub message_id: Option<String>,
    pub body: Vec<u8>,
    pub properties: BasicProperties,
    /// The queue that dead-lettered it, why (`rejected`, `expired`, `delivery_limit`, ...), how often, when.
    pub queue: String,
    pub reason: String,
    pub count: i64,
    pub died_at: Option<u64>,
    /// Where it had been published: a replay publishes it there again.
    pub exchange: String,
    pub routing_key: String,
    pub acker: Acker,
}

impl DeadLetter {
    pub fn new(d: Delivery) -> Self {
        let headers = d.properties.headers().clone().unwrap_or_default();
        let death = match headers.inner().get("x-death") {
            Some(AMQPValue::FieldArray(deaths)) => newest(deaths),
            _ => None,
        };
        let field = |name: &str| death.as_ref().and_then(|t| text(t.inner().get(name)?));
        let routing_key = death
            .as_ref()
            .and_then(|t| match t.inner().get("routing-keys")? {
                AMQPValue::FieldArray(keys) => keys.as_slice().first().and_then(text),
                _ => None,
            })
            // Without x-death (published straight to the dead exchange) the routing key is all there is.
            .unwrap_or_else(|| d.routing_key.to_string());
        let number = |name: &str| match death.as_ref().and_then(|t| t.inner().get(name)) {
            Some(AMQPValue::LongLongInt(n)) => Some(*n),
            Some(AMQPValue::LongInt(n)) => Some(i64::from(*n)),
            Some(AMQPValue::Timestamp(t)) => i64::try_from(*t).ok(),
            _ => None,
        };
        Self {
            message_id: d.properties.message_id().as_ref().map(|id| id.to_string()),
            queue: field("queue").unwrap_or_default(),
            reason: field("reason").unwrap_or_default(),
            count: number("count").unwrap_or(1),
            died_at: number("time").and_then(|t| u64::try_from(t).ok()),
            exchange: field("exchange").unwrap_or_default(),
            routing_key,
            body: d.data,
            properties: d.properties,
            acker: d.acker,
        }
    }

    /// The properties to republish with: the same `message_id`, content type and persistence, the
    /// headers the publisher set, without RabbitMQ's dead-letter bookkeeping.
    pub fn replay_properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        if let Some(old) = self.properties.headers() {
            for (k, v) in old.inner() {
                if !DEATH_HEADERS.contains(&k.as_str()) {
                    headers.insert(k.clone(), v.clone());
                }
            }
        }
        self.properties.clone().with_headers(headers)
    }

    pub fn id(&self) -> &str {
        self.message_id.as_deref().unwrap_or("-")
    }

    pub fn died_at(&self) -> String {
        self.died_at
            .and_then(|t| DateTime::from_timestamp(i64::try_from(t).ok()?, 0))
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "-".into())
    }

    /// One line of `dlq list`.
    pub fn line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{} -> {}",
            self.id(),
            self.queue,
            self.reason,
            self.count,
            self.died_at(),
            self.exchange,
            self.routing_key
        )
    }

    /// `dlq show`: everything, the body pretty-printed when it is JSON.
    pub fn details(&self) -> String {
        let body = serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned());
        let p = &self.properties;
        format!(
            "message_id:     {}\n\
             dead-lettered:  from {} ({}), {} time(s), last at {}\n\
             replays to:     exchange {:?}, routing key {:?}\n\
             content type:   {}\n\
             headers:        {:?}\n\
             body ({} bytes):\n{body}",
            self.id(),
            self.queue,
            self.reason,
            self.count,
            self.died_at(),
            self.exchange,
            self.routing_key,
            p.content_type()
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            p.headers()
                .as_ref()
                .map(|h| h.inner().clone())
                .unwrap_or_default(),
            self.body.len(),
        )
    }
}

/// RabbitMQ keeps the most recent death first.
fn newest(deaths: &FieldArray) -> Option<FieldTable> {
    match deaths.as_slice().first()? {
        AMQPValue::FieldTable(t) => Some(t.clone()),
        _ => None,
    }
}

fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}
