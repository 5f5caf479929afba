//! The group-commit message: several `reservation.created` members in one persistent, confirmed message.
//!
//! A gateway publishes the reservations its script accepted within a short linger as one message, so the
//! broker pays one enqueue, one replication round and one confirm for all of them. The message carries the
//! AMQP `type` property [`RESERVATION_BATCH_TYPE`]; its body is
//! `{"v": 1, "batch_id": "<uuid>", "reservations": [<reservation.created>, ...]}`, each member exactly the JSON
//! a single `reservation.created` carries. Consumers unpack it into its members and settle each on its own
//! (`flashsale_broker::consumer`); a batch of one is never sent: a lone reservation goes out as itself.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The AMQP `type` property of a batch message (its routing key is the members' own).
pub const RESERVATION_BATCH_TYPE: &str = "reservation.created.batch";

/// A batch as consumers read it: members stay raw, so one undecodable member is dead-lettered alone.
#[derive(Debug, Deserialize, Serialize)]
pub struct ReservationBatch {
    pub v: u8,
    pub batch_id: uuid::Uuid,
    pub reservations: Vec<Box<RawValue>>,
}

impl ReservationBatch {
    pub const VERSION: u8 = 1;

    /// The body of a batch whose members are already encoded (the gateway has each member's JSON in hand):
    /// concatenated, never parsed again. Every member must be one JSON value.
    pub fn encode(batch_id: uuid::Uuid, members: &[&[u8]]) -> Vec<u8> {
        let size = members.iter().map(|m| m.len() + 1).sum::<usize>() + 80;
        let mut body = Vec::with_capacity(size);
        body.extend_from_slice(br#"{"v":1,"batch_id":""#);
        body.extend_from_slice(
            batch_id
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .as_bytes(),
        );
        body.extend_from_slice(br#"","reservations":["#);
        for (i, member) in members.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(member);
        }
        body.extend_from_slice(b"]}");
        body
    }

    pub fn decode(body: &[u8]) -> Result<Self, String> {
        let batch: Self = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if batch.v != Self::VERSION {
            return Err(format!("unsupported batch version {}", batch.v));
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Money, OrderId, ReservationCreated, SaleId, UserId};
    use chrono::Utc;

    fn member(user: &str) -> ReservationCreated {
        let now = Utc::now();
        ReservationCreated::new(
            OrderId::new_v7(),
            SaleId::new(3).expect("positive"),
            UserId::parse(user).expect("valid"),
            1,
            Money::from_minor(500),
            now,
            now + chrono::Duration::seconds(60),
        )
    }

    #[test]
    fn encoded_members_decode_to_the_same_reservations() {
        let (a, b) = (member("a"), member("b"));
        let bodies = [
            serde_json::to_vec(&a).expect("encodes"),
            serde_json::to_vec(&b).expect("encodes"),
        ];
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        let id = uuid::Uuid::now_v7();
        let batch =
            ReservationBatch::decode(&ReservationBatch::encode(id, &refs)).expect("decodes");
        assert_eq!(batch.batch_id, id);
        let back: Vec<ReservationCreated> = batch
            .reservations
            .iter()
            .map(|r| serde_json::from_str(r.get()).expect("member decodes"))
            .collect();
        assert_eq!(back, vec![a, b]);
    }

    #[test]
    fn an_undecodable_member_leaves_its_neighbours_readable() {
        let body = br#"{"v":1,"batch_id":"0191b6a0-0000-7000-8000-000000000000","reservations":[{"v":1},"x"]}"#;
        let batch = ReservationBatch::decode(body).expect("the envelope decodes");
        assert_eq!(batch.reservations.len(), 2);
        assert!(serde_json::from_str::<ReservationCreated>(batch.reservations[0].get()).is_err());
    }

    #[test]
    fn another_version_or_a_broken_envelope_is_refused() {
        assert!(
            ReservationBatch::decode(
                br#"{"v":2,"batch_id":"0191b6a0-0000-7000-8000-000000000000","reservations":[]}"#
            )
            .is_err()
        );
        assert!(ReservationBatch::decode(b"[1,2]").is_err());
    }
}
