//! Fuzz targets (proptest) for the domain's parsers: money and the ids that arrive in URL paths.
//! `make test` runs each with proptest's default case count; `make fuzz` with many more (`PROPTEST_CASES`).

use crate::money::{InvalidMoney, Money};
use crate::{OrderId, SaleId};
use proptest::prelude::*;

/// The only accepted spelling of an amount: digits, then optionally a point and one or two digits.
fn is_plain_amount(s: &str) -> bool {
    let (int, frac) = s.split_once('.').unwrap_or((s, "00"));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    !int.is_empty() && digits(int) && (1..=2).contains(&frac.len()) && digits(frac)
}

/// The minor units a plain amount spells, computed apart from the parser (`None` when it is not plain).
fn written_minor(s: &str) -> Option<i128> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let int: i128 = int.parse().ok()?;
    let frac: i128 = format!("{frac:0<2}").parse().ok()?;
    int.checked_mul(100)?.checked_add(frac)
}

/// Strings that look like amounts: digits, points, signs, exponents, spaces, and the odd stray character.
fn amount_like() -> impl Strategy<Value = String> {
    proptest::string::string_regex(
        r"[ \t+\-]?[0-9]{0,22}(\.[0-9]{0,4})?([eE][+\-]?[0-9]{1,3})?[ \t\n]?",
    )
    .expect("a valid regex")
}

proptest! {
    #[test]
    fn money_formats_and_parses_back(minor in 0..=i64::MAX) {
        let money = Money::from_minor(minor);
        let text = money.to_string();
        prop_assert!(is_plain_amount(&text), "{text:?} is not plain");
        prop_assert_eq!(text.parse::<Money>(), Ok(money));
    }

    #[test]
    fn money_accepts_only_plain_amounts(s in amount_like()) {
        match s.parse::<Money>() {
            Ok(m) => {
                prop_assert!(is_plain_amount(&s), "{s:?} was accepted as {m}");
                prop_assert_eq!(Some(i128::from(m.minor())), written_minor(&s), "{:?}", s);
            }
            Err(e) => prop_assert!(
                !is_plain_amount(&s) || e == InvalidMoney::OutOfRange,
                "{s:?} was refused: {e}"
            ),
        }
    }

    #[test]
    fn money_never_panics_on_any_string(s in any::<String>()) {
        if s.parse::<Money>().is_ok() {
            prop_assert!(is_plain_amount(&s), "{s:?} was accepted");
        }
    }

    #[test]
    fn money_refuses_more_than_two_decimals(int in 0..1_000_000u32, frac in "[0-9]{3,8}") {
        prop_assert_eq!(format!("{int}.{frac}").parse::<Money>(), Err(InvalidMoney::TooPrecise));
    }

    #[test]
    fn money_refuses_signs_exponents_and_whitespace(
        minor in 0..1_000_000_000i64,
        (prefix, suffix) in prop_oneof![
            Just(("-", "")), Just(("+", "")), Just((" ", "")), Just(("", " ")),
            Just(("\t", "")), Just(("", "\n")), Just(("", "e0")), Just(("", "E2")),
        ],
    ) {
        let s = format!("{prefix}{}{suffix}", Money::from_minor(minor));
        prop_assert_eq!(s.parse::<Money>(), Err(InvalidMoney::NotADecimal), "{:?}", s);
    }

    #[test]
    fn money_refuses_huge_values(int in "[1-9][0-9]{17,40}", frac in "(\\.[0-9]{1,2})?") {
        prop_assert_eq!(format!("{int}{frac}").parse::<Money>(), Err(InvalidMoney::OutOfRange));
    }

    #[test]
    fn sale_ids_are_plain_positive_integers(s in prop_oneof![any::<String>(), "[+\\- ]?[0-9]{0,21}"]) {
        let expected = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && s.parse::<i64>().is_ok_and(|n| n > 0);
        match s.parse::<SaleId>() {
            Ok(id) => {
                prop_assert!(expected, "{s:?} was accepted");
                prop_assert_eq!(id.get(), s.parse::<i64>().unwrap_or_default());
            }
            Err(_) => prop_assert!(!expected, "{s:?} was refused"),
        }
    }

    #[test]
    fn order_ids_round_trip_and_refuse_the_rest(
        bytes in any::<[u8; 16]>(),
        junk in any::<String>(),
        cut in 0usize..36,
    ) {
        let id = OrderId::from_uuid(uuid::Uuid::from_bytes(bytes));
        let text = id.to_string();
        prop_assert_eq!(text.parse::<OrderId>(), Ok(id));
        prop_assert_eq!(text.to_uppercase().parse::<OrderId>(), Ok(id));
        // A truncated id is never some other id.
        prop_assert!(text[..cut].parse::<OrderId>().is_err());
        if let Ok(parsed) = junk.parse::<OrderId>() {
            prop_assert_eq!(junk.to_lowercase().replace(['{', '}'], "").len() >= 32, true);
            prop_assert_eq!(parsed.to_string().parse::<OrderId>(), Ok(parsed));
        }
    }
}
