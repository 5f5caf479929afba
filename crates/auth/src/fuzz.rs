//! Fuzz targets (proptest) for token parsing: any string is a buyer or a 401, never a panic; only HS256 tokens
//! signed with our key, unexpired, naming a valid user and no audience get through, whatever the header says.

use super::{Auth, bearer};
use actix_web::test::TestRequest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flashsale_domain::UserId;
use flashsale_platform::settings::AuthSettings;
use jsonwebtoken::{Algorithm, EncodingKey, get_current_timestamp};
use proptest::prelude::*;
use serde_json::{Value, json};

const SECRET: &str = "fuzz-secret-0123456789abcdef0123";

fn auth(audience: &str) -> Auth {
    Auth::new(&AuthSettings {
        jwt_secret: SECRET.into(),
        admin_token: "fuzz-admin-token-0123456789abcdef".into(),
        jwt_audience: audience.into(),
    })
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The HS256 signature of `input` under our key: what a forger who knows the key format but lies in the
/// header would attach.
fn hs256(input: &str) -> String {
    jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(SECRET.as_bytes()),
        Algorithm::HS256,
    )
    .expect("HMAC signing cannot fail")
}

fn alg() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => Just(json!("HS256")),
        1 => prop::sample::select(vec![
            "none", "None", "NONE", "nOnE", "HS384", "HS512", "RS256", "ES256", "PS256", "EdDSA", "hs256", "",
        ])
        .prop_map(Value::from),
        1 => any::<String>().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => any::<i64>().prop_map(Value::from),
    ]
}

/// `exp` claims: only the first is valid now (an hour ahead, far from the 30 s leeway on either side).
fn exp() -> impl Strategy<Value = Option<Value>> {
    let now = i64::try_from(get_current_timestamp()).unwrap_or(i64::MAX);
    prop_oneof![
        3 => Just(Some(json!(now + 3600))),
        1 => Just(Some(json!(now - 3600))),
        1 => Just(None),
        1 => Just(Some(json!("tomorrow"))),
        1 => Just(Some(json!(-1))),
        1 => (i64::MIN..now - 60).prop_map(|e| Some(json!(e))),
    ]
}

fn sub() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        4 => "[a-z0-9_-]{1,64}".prop_map(|s| Some(json!(s))),
        2 => any::<String>().prop_map(|s| Some(json!(s))),
        1 => "[a-z]{65,80}".prop_map(|s| Some(json!(s))),
        1 => Just(None),
        1 => any::<u32>().prop_map(|n| Some(json!(n))),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Signature {
    Ours,
    Empty,
    Garbage,
}

fn signature() -> impl Strategy<Value = Signature> {
    prop_oneof![
        4 => Just(Signature::Ours),
        1 => Just(Signature::Empty),
        1 => Just(Signature::Garbage)
    ]
}

fn token(header: &Value, claims: &Value, sig: Signature) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = match sig {
        Signature::Ours => hs256(&input),
        Signature::Empty => String::new(),
        Signature::Garbage => URL_SAFE_NO_PAD.encode(b"not a signature at all, 32 bytes"),
    };
    format!("{input}.{sig}")
}

proptest! {
    #[test]
    fn any_string_is_refused(s in any::<String>()) {
        prop_assert!(auth("").buyer(&s).is_err());
        prop_assert!(auth("flashsale").buyer(&s).is_err());
    }

    #[test]
    fn jwt_shaped_junk_is_refused(parts in prop::collection::vec("[A-Za-z0-9_\\-=+/]{0,40}", 0..5)) {
        prop_assert!(auth("").buyer(&parts.join(".")).is_err());
    }

    #[test]
    fn only_signed_hs256_tokens_for_a_valid_user_pass(
        alg in alg(),
        sub in sub(),
        exp in exp(),
        aud in prop::option::of(prop_oneof![Just(json!("flashsale")), Just(json!(["other", "flashsale"])), Just(json!(42))]),
        sig in signature(),
        typ in prop::option::of(prop_oneof![Just(json!("JWT")), any::<String>().prop_map(Value::from)]),
    ) {
        let mut header = json!({ "alg": alg });
        if let Some(typ) = typ {
            header["typ"] = typ;
        }
        let mut claims = json!({});
        for (name, value) in [("sub", &sub), ("exp", &exp), ("aud", &aud)] {
            if let Some(value) = value {
                claims[name] = value.clone();
            }
        }
        let token = token(&header, &claims, sig);
        let valid_user = sub.as_ref().and_then(Value::as_str).and_then(|s| UserId::parse(s).ok());
        let now = i64::try_from(get_current_timestamp()).unwrap_or(i64::MAX);
        let trusted = alg == json!("HS256")
            && sig == Signature::Ours
            && exp.as_ref().and_then(Value::as_i64).is_some_and(|e| e > now);

        // No audience configured: a token with any `aud` is for someone else.
        let expected = valid_user.clone().filter(|_| trusted && aud.is_none());
        prop_assert_eq!(auth("").buyer(&token).ok(), expected, "{}", token);

        // An audience configured: the token must name it.
        let names_us = aud.as_ref().is_some_and(|a| a == "flashsale" || a.as_array().is_some_and(|l| l.contains(&json!("flashsale"))));
        let expected = valid_user.filter(|_| trusted && names_us);
        prop_assert_eq!(auth("flashsale").buyer(&token).ok(), expected, "{}", token);
    }

    #[test]
    fn the_authorization_header_yields_its_bearer_token_or_a_401(value in prop::collection::vec(any::<u8>(), 0..80), prefix in prop::sample::select(vec!["", "Bearer ", "bearer ", "Bearer", "Basic ", "Bearer  "])) {
        let mut bytes = prefix.as_bytes().to_vec();
        bytes.extend(value);
        // Bytes no HTTP header can carry never reach the parser.
        let Ok(header) = actix_web::http::header::HeaderValue::from_bytes(&bytes) else {
            return Ok(());
        };
        let req = TestRequest::default().insert_header(("Authorization", header)).to_http_request();
        let expected = std::str::from_utf8(&bytes)
            .ok()
            .filter(|s| s.bytes().all(|b| (32..127).contains(&b) || b == b'\t'))
            .and_then(|s| s.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        prop_assert_eq!(bearer(&req).ok(), expected);
    }
}

/// The generators above do reach the accepted case: a well-formed token built the same way passes.
#[test]
fn the_token_builder_makes_tokens_that_pass() {
    let now = get_current_timestamp();
    let claims = json!({ "sub": "alice", "exp": now + 3600 });
    let ok = token(
        &json!({ "alg": "HS256", "typ": "JWT" }),
        &claims,
        Signature::Ours,
    );
    assert_eq!(auth("").buyer(&ok).ok(), UserId::parse("alice").ok());
    let none = token(&json!({ "alg": "none" }), &claims, Signature::Empty);
    assert!(auth("").buyer(&none).is_err());
}
