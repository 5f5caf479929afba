//! Exact money: integer minor units inside (cents), a decimal string with two places in the API.
//! All arithmetic is checked (`checked_mul`): an amount too large to hold is an error, never a panic. The lint
//! below refuses any operator that could overflow, so a new `*` on `i64` here fails `make lint`.
#![deny(clippy::arithmetic_side_effects)]

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An amount in minor units (1/100). Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidMoney {
    #[error("amount must be a decimal string such as \"2990.00\"")]
    NotADecimal,
    #[error("amount must have at most two decimal places")]
    TooPrecise,
    #[error("amount is out of range")]
    OutOfRange,
}

impl Money {
    pub const fn from_minor(minor: i64) -> Self {
        Self(minor)
    }

    pub const fn minor(self) -> i64 {
        self.0
    }

    pub fn checked_mul(self, factor: i64) -> Option<Self> {
        self.0.checked_mul(factor).map(Self)
    }
}

impl FromStr for Money {
    type Err = InvalidMoney;

    /// Exactly `digits[.d[d]]`: no sign, exponent, whitespace or digits past the cents, so every accepted
    /// string means one amount and `to_string` gives back an accepted string (for amounts of 0 and up).
    fn from_str(s: &str) -> Result<Self, InvalidMoney> {
        let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || !digits(frac) {
            return Err(InvalidMoney::NotADecimal);
        }
        if frac.len() > 2 {
            return Err(InvalidMoney::TooPrecise);
        }
        // Digits only, so the one way these parses fail is a number too large for i64.
        let units: i64 = int.parse().map_err(|_| InvalidMoney::OutOfRange)?;
        let cents: i64 = frac.parse().map_err(|_| InvalidMoney::OutOfRange)?;
        let cents = if frac.len() == 1 {
            cents.checked_mul(10)
        } else {
            Some(cents)
        };
        units
            .checked_mul(100)
            .zip(cents)
            .and_then(|(units, cents)| units.checked_add(cents))
            .map(Self)
            .ok_or(InvalidMoney::OutOfRange)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_two_places() {
        assert_eq!("2990.00".parse::<Money>(), Ok(Money::from_minor(299_000)));
        assert_eq!("0.5".parse::<Money>(), Ok(Money::from_minor(50)));
        assert_eq!("7".parse::<Money>(), Ok(Money::from_minor(700)));
        assert_eq!(Money::from_minor(299_000).to_string(), "2990.00");
        assert_eq!(Money::from_minor(5).to_string(), "0.05");
        assert_eq!(Money::from_minor(-5).to_string(), "-0.05");
    }

    #[test]
    fn refuses_floats_and_fractions_of_cents() {
        assert_eq!("1.001".parse::<Money>(), Err(InvalidMoney::TooPrecise));
        assert_eq!("1e3".parse::<Money>(), Err(InvalidMoney::NotADecimal));
        assert_eq!("abc".parse::<Money>(), Err(InvalidMoney::NotADecimal));
        assert_eq!("1.10".parse::<Money>(), Ok(Money::from_minor(110)));
    }

    #[test]
    fn huge_amounts_are_out_of_range_not_a_panic() {
        for huge in [
            "1000000000000000000000000000",
            "79228162514264337593543950335",
            "792281625142643375935439503.35",
            "92233720368547758.08",
            "9223372036854775808",
        ] {
            assert_eq!(
                huge.parse::<Money>(),
                Err(InvalidMoney::OutOfRange),
                "{huge}"
            );
        }
        assert_eq!(
            "92233720368547758.07".parse::<Money>(),
            Ok(Money::from_minor(i64::MAX))
        );
    }

    // Regression cases found by the fuzz targets (src/fuzz.rs), named after what they found.

    #[test]
    fn fuzz_found_whitespace_around_an_amount_was_accepted() {
        for s in [" 0.00", "\t0", "1.00\n", " 5 "] {
            assert_eq!(s.parse::<Money>(), Err(InvalidMoney::NotADecimal), "{s:?}");
        }
    }

    #[test]
    fn fuzz_found_zeros_past_the_cents_were_accepted() {
        for s in ["0.000", "1.000", "2990.0000"] {
            assert_eq!(s.parse::<Money>(), Err(InvalidMoney::TooPrecise), "{s:?}");
        }
    }

    #[test]
    fn fuzz_found_a_minus_sign_was_accepted() {
        for s in ["-0.00", "-5", "-1000000000000000000000000000"] {
            assert_eq!(s.parse::<Money>(), Err(InvalidMoney::NotADecimal), "{s:?}");
        }
    }

    #[test]
    fn fuzz_found_30_digit_amounts_were_not_a_decimal_instead_of_out_of_range() {
        assert_eq!(
            "100000000000000000000000000000".parse::<Money>(),
            Err(InvalidMoney::OutOfRange)
        );
    }

    #[test]
    fn half_written_amounts_are_not_decimals() {
        for s in ["", ".", "1.", ".5", "1.2.3", "1,00", "0x10", "١٢"] {
            assert_eq!(s.parse::<Money>(), Err(InvalidMoney::NotADecimal), "{s:?}");
        }
    }
}
