//! Fuzz targets (proptest) for what the gateway reads from a request before any Redis work: the body (size,
//! content type, JSON), the `Idempotency-Key` header and the ids in the path. Each input is either accepted
//! with the value it spells or refused with INVALID_REQUEST / PAYLOAD_TOO_LARGE; never a panic, never a 500.

use crate::body::read_limited;
use crate::routes::reservations::{idempotency_key, quantity};
use crate::routes::{order_id, sale_id};
use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header::HeaderValue;
use actix_web::test::TestRequest;
use actix_web::web::{self, Bytes};
use actix_web::{FromRequest, HttpRequest};
use flashsale_domain::ErrorCode;
use futures_util::Stream;
use proptest::prelude::*;
use serde_json::Value;
use std::pin::Pin;

/// A request carrying `content_type` (when the bytes can be a header at all).
fn request(content_type: Option<&[u8]>) -> HttpRequest {
    let mut req = TestRequest::post();
    if let Some(value) = content_type.and_then(|v| HeaderValue::from_bytes(v).ok()) {
        req = req.insert_header(("Content-Type", value));
    }
    req.to_http_request()
}

/// What the contract says a reservation body means: `Some(quantity)` or `None` for a 400.
fn expected_quantity(content_type: Option<&str>, body: &[u8]) -> Option<u32> {
    // Only JSON's own whitespace (RFC 8259) makes an empty body.
    if body
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Some(1);
    }
    let mime = content_type?.split(';').next()?.trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    if object.keys().any(|k| k != "quantity") {
        return None;
    }
    match object.get("quantity") {
        None => Some(1),
        Some(q) => q
            .as_u64()
            .and_then(|q| u32::try_from(q).ok())
            .filter(|q| *q > 0),
    }
}

fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "application/json", "application/json; charset=utf-8", "APPLICATION/JSON", " application/json ",
            "application/json;", "text/plain", "application/jsonx", "application/x-www-form-urlencoded", "",
        ])
        .prop_map(|s| Some(s.as_bytes().to_vec())),
        1 => Just(None),
        1 => any::<Vec<u8>>().prop_map(Some),
    ]
}

/// Bodies near the accepted ones, and some far from them.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let number = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        Just("0".into()),
        Just("1".into()),
        Just("4294967295".into()),
        Just("4294967296".into()),
        Just("1.0".into()),
        Just("1e2".into()),
        Just("\"2\"".into()),
        Just("null".into()),
        Just("-0".into()),
    ];
    let key = prop_oneof![4 => Just("quantity".to_string()), 1 => "[a-zA-Z_]{0,10}"];
    let space = "[ \t\r\n\u{c}\u{b}]{0,3}";
    prop_oneof![
        (space, key, number, space)
            .prop_map(|(a, k, n, b)| format!("{a}{{\"{k}\":{n}}}{b}").into_bytes()),
        (space, space).prop_map(|(a, b)| format!("{a}{{}}{b}").into_bytes()),
        "[ \t\r\n\u{c}\u{b}]{0,4}".prop_map(String::into_bytes),
        "[\\[\\]{}\":,0-9a-z ]{0,30}".prop_map(String::into_bytes),
        any::<Vec<u8>>(),
    ]
}

/// Reads `chunks` as a request body streamed in those pieces, through the handler's own extractor.
fn read_chunks(
    chunks: Vec<Result<Vec<u8>, ()>>,
    limit: usize,
) -> Result<web::BytesMut, crate::error::ApiError> {
    let stream = futures_util::stream::iter(chunks.into_iter().map(|c| {
        c.map(Bytes::from)
            .map_err(|()| PayloadError::Incomplete(None))
    }));
    let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(stream);
    let mut payload = Payload::from(stream);
    let req = request(None);
    actix_web::rt::System::new().block_on(async {
        let payload = web::Payload::from_request(&req, &mut payload)
            .await
            .expect("infallible");
        read_limited(payload, limit).await
    })
}

proptest! {
    #[test]
    fn a_reservation_body_is_a_quantity_or_a_400(content_type in content_type(), body in body()) {
        let req = request(content_type.as_deref());
        // A content type no header can carry is no content type at all.
        let sent = content_type
            .and_then(|v| HeaderValue::from_bytes(&v).ok())
            .and_then(|v| v.to_str().map(String::from).ok());
        match quantity(&req, &body) {
            Ok(q) => prop_assert_eq!(Some(q), expected_quantity(sent.as_deref(), &body), "{:?}", String::from_utf8_lossy(&body)),
            Err(e) => {
                prop_assert_eq!(e.code, ErrorCode::InvalidRequest);
                prop_assert_eq!(None, expected_quantity(sent.as_deref(), &body), "{:?}", String::from_utf8_lossy(&body));
            }
        }
    }

    #[test]
    fn a_body_past_the_limit_is_413_whatever_its_chunks(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8),
        limit in 0usize..200,
        broken in any::<bool>(),
    ) {
        let total: usize = chunks.iter().map(Vec::len).sum();
        let whole = chunks.concat();
        let mut pieces: Vec<Result<Vec<u8>, ()>> = chunks.into_iter().map(Ok).collect();
        if broken {
            pieces.push(Err(()));
        }
        match read_chunks(pieces, limit) {
            Ok(body) => {
                prop_assert!(total <= limit && !broken);
                prop_assert_eq!(&body[..], &whole[..]);
            }
            Err(e) if total > limit => prop_assert_eq!(e.code, ErrorCode::PayloadTooLarge),
            Err(e) => {
                prop_assert!(broken);
                prop_assert_eq!(e.code, ErrorCode::InvalidRequest);
            }
        }
    }

    #[test]
    fn an_idempotency_key_is_accepted_iff_1_to_64_url_safe_characters(
        key in prop_oneof![
            "[A-Za-z0-9_\\-]{0,70}".prop_map(String::into_bytes),
            "[A-Za-z0-9_\\-]{0,30}[ -~\u{80}-\u{ff}][A-Za-z0-9_\\-]{0,30}".prop_map(String::into_bytes),
            any::<Vec<u8>>(),
        ],
    ) {
        let Ok(value) = HeaderValue::from_bytes(&key) else {
            return Ok(()); // no request can carry it
        };
        let req = TestRequest::post().insert_header(("Idempotency-Key", value)).to_http_request();
        let valid = (1..=64).contains(&key.len())
            && key.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
        match idempotency_key(&req) {
            Ok(found) => {
                prop_assert!(valid, "{:?} was accepted", String::from_utf8_lossy(&key));
                prop_assert_eq!(found.map(str::as_bytes), Some(&key[..]));
            }
            Err(e) => {
                prop_assert!(!valid, "{:?} was refused", String::from_utf8_lossy(&key));
                prop_assert_eq!(e.code, ErrorCode::InvalidRequest);
            }
        }
    }

    #[test]
    fn a_path_id_is_an_id_or_a_400(raw in prop_oneof![any::<String>(), "[0-9a-fA-F\\-+ {}]{0,40}"]) {
        match sale_id(&raw) {
            // Leading zeros name the same sale.
            Ok(id) => prop_assert_eq!(id.to_string(), raw.trim_start_matches('0')),
            Err(e) => prop_assert_eq!(e.code, ErrorCode::InvalidRequest),
        }
        match order_id(&raw) {
            Ok(id) => prop_assert_eq!(order_id(&id.to_string()).ok(), Some(id)),
            Err(e) => prop_assert_eq!(e.code, ErrorCode::InvalidRequest),
        }
    }
}

#[test]
fn no_idempotency_key_is_none() {
    let req = TestRequest::post().to_http_request();
    assert!(matches!(idempotency_key(&req), Ok(None)));
}

// Regression cases found by the targets above, named after what they found.

#[test]
fn fuzz_found_a_form_feed_body_was_taken_for_an_empty_one() {
    for body in [&b"\x0c"[..], b" \x0c\n", b"\x0c{}"] {
        for content_type in [Some(&b"application/json"[..]), Some(b"text/plain"), None] {
            let err = quantity(&request(content_type), body)
                .expect_err("a form feed is not JSON whitespace");
            assert_eq!(err.code, ErrorCode::InvalidRequest);
        }
    }
    // JSON's own whitespace still means "no body": one unit.
    assert_eq!(quantity(&request(None), b" \t\r\n").ok(), Some(1));
}
