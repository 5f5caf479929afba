//! Fuzz targets (proptest) for what the payment service reads from a webhook after its signature checks out
//! (the JSON body) and from its paths (UUIDs): the event it spells, or INVALID_REQUEST; never a panic.

use crate::event::{Event, EventKind};
use crate::routes::uuid_in_path;
use flashsale_domain::{ErrorCode, Money};
use proptest::prelude::*;
use serde_json::{Value, json};
use uuid::Uuid;

const FIELDS: [&str; 5] = ["event_id", "type", "payment_id", "order_id", "amount"];

/// One field's value, and whether the contract accepts it there.
fn value_for(field: &'static str) -> BoxedStrategy<(Value, bool)> {
    let uuid = prop_oneof![
        3 => any::<[u8; 16]>().prop_map(|b| (json!(Uuid::from_bytes(b).to_string()), true)),
        1 => any::<[u8; 16]>().prop_map(|b| (json!(Uuid::from_bytes(b).simple().to_string()), true)),
        1 => "[0-9a-f\\-]{0,40}".prop_map(|s| { let ok = Uuid::parse_str(&s).is_ok(); (json!(s), ok) }),
        1 => any::<u64>().prop_map(|n| (json!(n), false)),
    ];
    match field {
        "event_id" => prop_oneof![
            3 => "[ -~]{1,200}".prop_map(|s| (json!(s), true)),
            1 => any::<String>().prop_map(|s| { let ok = (1..=200).contains(&s.len()); (json!(s), ok) }),
            1 => Just((json!(""), false)),
            1 => "[a-z]{201,220}".prop_map(|s| (json!(s), false)),
            1 => any::<i64>().prop_map(|n| (json!(n), false)),
        ]
        .boxed(),
        "type" => prop_oneof![
            3 => prop::sample::select(vec!["payment.succeeded", "payment.failed"]).prop_map(|s| (json!(s), true)),
            1 => prop::sample::select(vec!["payment.SUCCEEDED", "payment.refunded", "", " payment.failed"])
                .prop_map(|s| (json!(s), false)),
            1 => Just((Value::Null, false)),
        ]
        .boxed(),
        "amount" => prop_oneof![
            3 => (0..=i64::MAX).prop_map(|m| (json!(Money::from_minor(m).to_string()), true)),
            1 => "[ \\-+]?[0-9]{0,20}(\\.[0-9]{0,3})?".prop_map(|s| { let ok = s.parse::<Money>().is_ok(); (json!(s), ok) }),
            1 => any::<f64>().prop_map(|f| (json!(f), false)),
        ]
        .boxed(),
        _ => uuid.boxed(),
    }
}

/// A value the contract accepts for `field` (no filtering: a filter rejects too often over many cases).
fn valid_for(field: &'static str) -> BoxedStrategy<Value> {
    match field {
        "event_id" => "[ -~]{1,200}".prop_map(Value::from).boxed(),
        "type" => prop::sample::select(vec!["payment.succeeded", "payment.failed"])
            .prop_map(Value::from)
            .boxed(),
        "amount" => (0..=i64::MAX)
            .prop_map(|m| json!(Money::from_minor(m).to_string()))
            .boxed(),
        _ => any::<[u8; 16]>()
            .prop_map(|b| json!(Uuid::from_bytes(b).to_string()))
            .boxed(),
    }
}

/// A webhook body: the five fields (each maybe missing, maybe repeated), extra fields, in any order, written
/// as an object or (which the contract refuses) as an array. Returns the bytes and whether they are valid.
fn webhook_body() -> impl Strategy<Value = (Vec<u8>, bool)> {
    // Mostly one valid value, so that about a third of the bodies are valid and the rest are one step off.
    let field = |name: &'static str| {
        let valid = valid_for(name).prop_map(|v| (v, true));
        let values = prop_oneof![
            12 => valid.prop_map(|v| vec![v]),
            1 => value_for(name).prop_map(|v| vec![v]),
            1 => Just(vec![]),
            1 => prop::collection::vec(value_for(name), 2),
        ];
        (values, Just(name))
    };
    (
        (
            field("event_id"),
            field("type"),
            field("payment_id"),
            field("order_id"),
            field("amount"),
        ),
        prop::collection::vec(("[a-z_]{1,12}", any::<i32>()), 0..3),
        prop::bool::weighted(0.15),
        any::<prop::sample::Index>(),
    )
        .prop_map(|((a, b, c, d, e), extras, as_array, rotate)| {
            let mut entries: Vec<(String, Value)> = Vec::new();
            let mut valid = !as_array;
            for (values, name) in [a, b, c, d, e] {
                valid &= values.len() == 1 && values[0].1;
                entries.extend(values.into_iter().map(|(v, _)| (name.to_string(), v)));
            }
            for (name, n) in extras {
                // An extra field that happens to be a known name is a repeat or a wrong value: invalid.
                valid &= !FIELDS.contains(&name.as_str());
                entries.push((name, json!(n)));
            }
            if !entries.is_empty() {
                let by = rotate.index(entries.len());
                entries.rotate_left(by);
            }
            let body = if as_array {
                Value::Array(entries.into_iter().map(|(_, v)| v).collect()).to_string()
            } else {
                let fields: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", json!(k)))
                    .collect();
                format!("{{{}}}", fields.join(","))
            };
            (body.into_bytes(), valid)
        })
}

proptest! {
    #[test]
    fn any_bytes_are_an_event_or_a_400(body in prop_oneof![any::<Vec<u8>>(), "[\\[\\]{}\":,0-9a-z. ]{0,60}".prop_map(String::into_bytes)]) {
        if let Err(e) = Event::parse(&body) {
            prop_assert_eq!(e.code, ErrorCode::InvalidRequest);
        }
    }

    #[test]
    fn a_webhook_body_is_accepted_iff_every_field_is_valid((body, valid) in webhook_body()) {
        let text = String::from_utf8_lossy(&body).into_owned();
        match Event::parse(&body) {
            Ok(event) => {
                prop_assert!(valid, "accepted: {}", text);
                // What was parsed is what was written.
                let written: Value = serde_json::from_slice(&body).expect("valid JSON");
                prop_assert_eq!(json!(event.event_id), written["event_id"].clone());
                prop_assert_eq!(json!(event.kind.as_str()), written["type"].clone());
                prop_assert_eq!(Some(event.amount), written["amount"].as_str().and_then(|s| s.parse::<Money>().ok()));
                prop_assert_eq!(Some(event.order_id), written["order_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()));
                prop_assert!(matches!(event.kind, EventKind::Succeeded | EventKind::Failed));
            }
            Err(e) => {
                prop_assert!(!valid, "refused ({}): {}", e.message, text);
                prop_assert_eq!(e.code, ErrorCode::InvalidRequest);
            }
        }
    }

    #[test]
    fn a_path_uuid_is_a_uuid_or_a_400(raw in prop_oneof![any::<String>(), "[0-9a-fA-F\\-{}:urn]{0,45}"]) {
        match uuid_in_path(&raw, "payment id") {
            Ok(id) => prop_assert_eq!(Uuid::parse_str(&id.to_string()).ok(), Some(id)),
            Err(e) => prop_assert_eq!(e.code, ErrorCode::InvalidRequest),
        }
    }
}

/// The generator does reach the accepted case (a third of its bodies), so the property tests both sides.
#[test]
fn the_body_generator_makes_valid_bodies() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let valid = (0..300)
        .filter(|_| {
            webhook_body()
                .new_tree(&mut runner)
                .expect("a value")
                .current()
                .1
        })
        .count();
    assert!(valid > 30, "only {valid} of 300 generated bodies are valid");
}

// Regression cases found by the targets above, named after what they found.

#[test]
fn fuzz_found_a_webhook_body_written_as_an_array_was_accepted() {
    let zero = "00000000-0000-0000-0000-000000000000";
    let array = json!(["A", "payment.succeeded", zero, zero, "0.00"]).to_string();
    let err = Event::parse(array.as_bytes()).expect_err("an array is not the webhook object");
    assert_eq!(err.code, ErrorCode::InvalidRequest);
    // The same values as an object, with JSON whitespace before it, are an event.
    let object = json!({"event_id": "A", "type": "payment.succeeded", "payment_id": zero, "order_id": zero, "amount": "0.00"});
    assert!(Event::parse(format!(" \n{object}").as_bytes()).is_ok());
}
