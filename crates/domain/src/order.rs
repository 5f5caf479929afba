//! Order status and the only transitions it allows.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `pending_payment → paid | expired` once; `rejected` is written directly when the database's stock guard
/// refuses a reservation (possible only after Redis lost writes).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(
    feature = "diesel",
    derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)
)]
#[cfg_attr(feature = "diesel", diesel(sql_type = diesel::sql_types::Text))]
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

/// `orders.status` is TEXT (with a CHECK listing the four values): the enum is written and read as its text.
#[cfg(feature = "diesel")]
mod sql {
    use super::OrderStatus;
    use diesel::deserialize::{self, FromSql};
    use diesel::pg::{Pg, PgValue};
    use diesel::serialize::{self, Output, ToSql};
    use diesel::sql_types::Text;

    impl ToSql<Text, Pg> for OrderStatus {
        fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
            <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
        }
    }

    impl FromSql<Text, Pg> for OrderStatus {
        fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
            Ok(<String as FromSql<Text, Pg>>::from_sql(bytes)?.parse()?)
        }
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
