//! Order status and the only transitions it allows.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `pending_payment → paid | expired` once; `rejected` is written directly when the database's stock guard
/// refuses a reservation (possible only after Redis lost writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Expired,
    Rejected,
}

impl OrderStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PendingPayment => "pending_payment",
            Self::Paid => "paid",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
        }
    }

    /// Active orders hold stock and count against the buyer's limit.
    pub const fn is_active(self) -> bool {
        matches!(self, Self::PendingPayment | Self::Paid)
    }

    pub const fn can_become(self, next: OrderStatus) -> bool {
        matches!(
            (self, next),
            (Self::PendingPayment, Self::Paid) | (Self::PendingPayment, Self::Expired)
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown order status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for OrderStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        Ok(match s {
            "pending_payment" => Self::PendingPayment,
            "paid" => Self::Paid,
            "expired" => Self::Expired,
            "rejected" => Self::Rejected,
            other => return Err(UnknownStatus(other.to_owned())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;

    #[test]
    fn one_terminal_transition() {
        assert!(PendingPayment.can_become(Paid));
        assert!(PendingPayment.can_become(Expired));
        for from in [Paid, Expired, Rejected] {
            for to in [PendingPayment, Paid, Expired, Rejected] {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn round_trips_through_text() {
        for s in [PendingPayment, Paid, Expired, Rejected] {
            assert_eq!(s.as_str().parse(), Ok(s));
        }
    }
}
