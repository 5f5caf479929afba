//! Identifiers. Each one parses rather than validates: holding a value proves it is well formed.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidId(pub &'static str);

/// A sale id: a positive 64-bit integer (PostgreSQL `BIGSERIAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct SaleId(i64);

impl SaleId {
    pub fn new(raw: i64) -> Result<Self, InvalidId> {
        if raw > 0 {
            Ok(Self(raw))
        } else {
            Err(InvalidId("sale id must be a positive integer"))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for SaleId {
    type Error = InvalidId;
    fn try_from(raw: i64) -> Result<Self, InvalidId> {
        Self::new(raw)
    }
}

impl From<SaleId> for i64 {
    fn from(id: SaleId) -> i64 {
        id.0
    }
}

impl FromStr for SaleId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        // Reject signs, spaces and leading "+" that i64::from_str would let through.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidId("sale id must be a positive integer"));
        }
        let raw = s
            .parse::<i64>()
            .map_err(|_| InvalidId("sale id must be a positive 64-bit integer"))?;
        Self::new(raw)
    }
}

impl fmt::Display for SaleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An order id, which is also the reservation id and the AMQP `message_id`: a UUIDv7, so ids sort by
/// creation time and index well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(Uuid);

impl OrderId {
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl FromStr for OrderId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        Uuid::try_parse(s)
            .map(Self)
            .map_err(|_| InvalidId("order id must be a UUID"))
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A buyer: the JWT `sub`, 1..=64 characters with no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidId> {
        let raw = raw.into();
        let chars = raw.chars().count();
        if chars == 0 || chars > Self::MAX_LEN {
            return Err(InvalidId("user id must be 1 to 64 characters"));
        }
        if raw.chars().any(char::is_control) {
            return Err(InvalidId("user id must not contain control characters"));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = InvalidId;
    fn try_from(raw: String) -> Result<Self, InvalidId> {
        Self::parse(raw)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> String {
        id.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sale_ids_are_positive_plain_integers() {
        assert_eq!("42".parse::<SaleId>().map(SaleId::get), Ok(42));
        for bad in [
            "0",
            "-1",
            "+1",
            " 1",
            "1.0",
            "abc",
            "",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<SaleId>().is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn user_ids_are_bounded() {
        assert!(UserId::parse("alice").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("x".repeat(65)).is_err());
        assert!(UserId::parse("x".repeat(64)).is_ok());
        assert!(UserId::parse("a\nb").is_err());
    }

    #[test]
    fn order_ids_are_uuids() {
        let id = OrderId::new_v7();
        assert_eq!(id.to_string().parse::<OrderId>(), Ok(id));
        assert!("not-a-uuid".parse::<OrderId>().is_err());
    }
}
