//! Exact money: integer minor units inside (cents), a decimal string with two places in the API.
//! All arithmetic is checked (`checked_mul`): an amount too large to hold is an error, never a panic. The lint
//! below refuses any operator that could overflow, so a new `*` on `Decimal` or `i64` here fails `make lint`.
#![deny(clippy::arithmetic_side_effects)]

use rust_decimal::Decimal;
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

    fn from_str(s: &str) -> Result<Self, InvalidMoney> {
        let s = s.trim();
        // Plain decimal notation only: no exponent, no sign games.
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            return Err(InvalidMoney::NotADecimal);
        }
        let d = Decimal::from_str(s).map_err(|_| InvalidMoney::NotADecimal)?;
        if d.normalize().scale() > 2 {
            return Err(InvalidMoney::TooPrecise);
        }
        // Checked: `*` panics when the product leaves Decimal's range (any amount of 10^27 and up).
        let minor = d
            .checked_mul(Decimal::ONE_HUNDRED)
            .ok_or(InvalidMoney::OutOfRange)?;
        i64::try_from(minor.trunc())
            .map(Self)
            .map_err(|_| InvalidMoney::OutOfRange)
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
        // 10^27 parses as a Decimal, but 10^29 minor units do not fit one (its largest is about 7.9 * 10^28).
        for huge in [
            "1000000000000000000000000000",
            "-1000000000000000000000000000",
            "79228162514264337593543950335",
            "792281625142643375935439503.35",
            "92233720368547758.08",
        ] {
            assert_eq!(
                huge.parse::<Money>(),
                Err(InvalidMoney::OutOfRange),
                "{huge}"
            );
        }
        // Past Decimal's own range (29 digits and more) the string is not a number we can hold at all.
        assert!("79228162514264337593543950336".parse::<Money>().is_err());
        assert_eq!(
            "92233720368547758.07".parse::<Money>(),
            Ok(Money::from_minor(i64::MAX))
        );
    }
}
