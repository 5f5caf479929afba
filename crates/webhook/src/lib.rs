//! The `Psp-Signature` header of payment-provider webhooks: `t=<unix seconds>,v1=<hex>[,v1=<hex>...]`, where
//! each `v1` is HMAC-SHA256(secret, "<t>.<raw body>"). A provider rotating its secret sends one `v1` per key;
//! one valid entry suffices. The HMAC is checked on the raw bytes (before any JSON parsing), in constant time
//! (`hmac`'s `verify_slice`), and the timestamp must lie within the tolerance of now in both directions, so a
//! captured request cannot be replayed later.
//!
//! Used by the payment service (verify), its simulator, the load tool and the tests (sign).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header's name.
pub const HEADER: &str = "Psp-Signature";

/// Why a signature was refused. All of them answer 401 INVALID_SIGNATURE; the variant goes to logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Psp-Signature header is missing")]
    Missing,
    #[error("the Psp-Signature header is malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    #[error("no v1 entry matches")]
    Mismatch,
}

impl SignatureError {
    /// A short label for metrics.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Stale => "stale",
            Self::Mismatch => "mismatch",
        }
    }
}

/// The hex HMAC-SHA256 of `"<t>.<body>"` under `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
}

/// A complete header value with one `v1` entry per secret (the first is usually the current one).
pub fn sign(secrets: &[&[u8]], timestamp: i64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&signature(secret, timestamp, body));
    }
    header
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; this never fails.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks `header` (`None` when absent) against `body` and any of `secrets`, at `now` (unix seconds).
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[&[u8]],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" if timestamp.is_none() => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                )
            }
            "t" => return Err(SignatureError::Malformed),
            // Entries that are not hex cannot match; they are skipped like unknown schemes.
            "v1" => {
                if let Ok(bytes) = hex::decode(value) {
                    candidates.push(bytes);
                }
            }
            // Other schemes (v0, future ones) are ignored, as providers do.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if timestamp.abs_diff(now) > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    for secret in secrets {
        for candidate in &candidates {
            if mac(secret, timestamp, body).verify_slice(candidate).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OLD: &[u8] = b"fedcba9876543210fedcba9876543210";
    const BODY: &[u8] = br#"{"event_id":"e1","type":"payment.succeeded"}"#;
    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_signed_body_verifies() {
        let header = sign(&[KEY], NOW, BODY);
        assert_eq!(verify(Some(&header), BODY, &[KEY], NOW, 300), Ok(()));
    }

    #[test]
    fn matches_a_known_vector() {
        // echo -n '1800000000.{"a":1}' | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef
        assert_eq!(
            signature(KEY, NOW, br#"{"a":1}"#),
            "d40e555bc2c1dae21953757b24b165a171698880732ac310a5c8cf0ab751abf2"
        );
    }

    #[test]
    fn a_tampered_body_or_wrong_key_is_refused() {
        let header = sign(&[KEY], NOW, BODY);
        let tampered = br#"{"event_id":"e1","type":"payment.succeedeD"}"#;
        assert_eq!(
            verify(Some(&header), tampered, &[KEY], NOW, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), BODY, &[OLD], NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let old = sign(&[KEY], NOW - 301, BODY);
        assert_eq!(
            verify(Some(&old), BODY, &[KEY], NOW, 300),
            Err(SignatureError::Stale)
        );
        let future = sign(&[KEY], NOW + 301, BODY);
        assert_eq!(
            verify(Some(&future), BODY, &[KEY], NOW, 300),
            Err(SignatureError::Stale)
        );
        let edge = sign(&[KEY], NOW - 300, BODY);
        assert_eq!(verify(Some(&edge), BODY, &[KEY], NOW, 300), Ok(()));
    }

    #[test]
    fn one_valid_entry_among_several_suffices() {
        let header = sign(&[OLD, KEY], NOW, BODY);
        assert_eq!(verify(Some(&header), BODY, &[KEY], NOW, 300), Ok(()));
        // A rotation on our side: the previous key still accepts what the provider signs with it.
        let header = sign(&[OLD], NOW, BODY);
        assert_eq!(verify(Some(&header), BODY, &[KEY, OLD], NOW, 300), Ok(()));
        let header = format!("t={NOW},v1=zz-not-hex,v1={}", signature(KEY, NOW, BODY));
        assert_eq!(verify(Some(&header), BODY, &[KEY], NOW, 300), Ok(()));
    }

    #[test]
    fn missing_and_malformed_headers_are_refused() {
        assert_eq!(
            verify(None, BODY, &[KEY], NOW, 300),
            Err(SignatureError::Missing)
        );
        for bad in ["", "garbage", "t=abc,v1=00", "v1=00", &format!("t={NOW}")] {
            assert_eq!(
                verify(Some(bad), BODY, &[KEY], NOW, 300),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }
}

#[cfg(test)]
mod fuzz;
