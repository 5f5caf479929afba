//! Fuzz targets (proptest) for the `Psp-Signature` header: any header is accepted only when it carries a valid
//! HMAC of this very body at a timestamp within the tolerance; everything else is refused, never a panic.

use super::{SignatureError, sign, signature, verify};
use proptest::prelude::*;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const OLD: &[u8] = b"fedcba9876543210fedcba9876543210";
const NOW: i64 = 1_800_000_000;
const TOLERANCE: u64 = 300;

/// Entries a provider (or an attacker) may add beside the real ones: other schemes, junk, spaces.
fn extra_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        "v0=[0-9a-f]{0,64}",
        "v2=[ -+\\--~]{0,20}",
        "v1=[0-9a-f]{64}",
        "v1=[g-z]{1,10}",
        "x[a-z]{0,5}=[a-z0-9]{0,10}",
    ]
}

proptest! {
    #[test]
    fn any_header_is_refused_without_a_panic(header in any::<String>(), body in any::<Vec<u8>>()) {
        prop_assert!(verify(Some(&header), &body, &[KEY], NOW, TOLERANCE).is_err());
    }

    #[test]
    fn header_shaped_junk_is_refused(
        entries in prop::collection::vec("(t|v1|v0| t|v1 )=[0-9a-f\\-+ ]{0,70}", 0..5),
        body in any::<Vec<u8>>(),
    ) {
        let header = entries.join(",");
        prop_assert!(verify(Some(&header), &body, &[KEY], NOW, TOLERANCE).is_err(), "{}", header);
    }

    #[test]
    fn a_signed_body_verifies_among_extra_entries(
        body in any::<Vec<u8>>(),
        skew in -(TOLERANCE as i64)..=(TOLERANCE as i64),
        extras in prop::collection::vec(extra_entry(), 0..4),
        at in any::<prop::sample::Index>(),
        rotated in any::<bool>(),
    ) {
        let t = NOW + skew;
        let secrets: &[&[u8]] = if rotated { &[OLD, KEY] } else { &[KEY] };
        let mut entries: Vec<String> = sign(secrets, t, &body).split(',').map(String::from).collect();
        // The timestamp stays first or moves anywhere: order does not matter to the scheme.
        let place = at.index(entries.len() + extras.len());
        for (i, extra) in extras.into_iter().enumerate() {
            entries.insert((place + i).min(entries.len()), extra);
        }
        let header = entries.join(", ");
        prop_assert_eq!(verify(Some(&header), &body, &[KEY], NOW, TOLERANCE), Ok(()), "{}", header);
    }

    #[test]
    fn a_signature_covers_its_body_its_time_and_its_key(
        body in prop::collection::vec(any::<u8>(), 1..200),
        flip in any::<prop::sample::Index>(),
        late in (TOLERANCE as i64 + 1)..i64::from(i32::MAX),
    ) {
        let header = sign(&[KEY], NOW, &body);
        let mut tampered = body.clone();
        tampered[flip.index(body.len())] ^= 0x01;
        prop_assert_eq!(verify(Some(&header), &tampered, &[KEY], NOW, TOLERANCE), Err(SignatureError::Mismatch));
        prop_assert_eq!(verify(Some(&header), &body, &[OLD], NOW, TOLERANCE), Err(SignatureError::Mismatch));
        for t in [NOW - late, NOW + late] {
            let stale = sign(&[KEY], t, &body);
            prop_assert_eq!(verify(Some(&stale), &body, &[KEY], NOW, TOLERANCE), Err(SignatureError::Stale));
        }
        // The signature of another moment, carried under this moment's timestamp, does not match.
        let moved = format!("t={NOW},v1={}", signature(KEY, NOW - 1, &body));
        prop_assert_eq!(verify(Some(&moved), &body, &[KEY], NOW, TOLERANCE), Err(SignatureError::Mismatch));
    }

    #[test]
    fn extreme_timestamps_are_stale_not_a_panic(t in prop_oneof![Just(i64::MIN), Just(i64::MAX), any::<i64>()], now in any::<i64>()) {
        let body = b"{}";
        let result = verify(Some(&sign(&[KEY], t, body)), body, &[KEY], now, TOLERANCE);
        if t.abs_diff(now) > TOLERANCE {
            prop_assert_eq!(result, Err(SignatureError::Stale));
        } else {
            prop_assert_eq!(result, Ok(()));
        }
    }
}
