//! Sales: what an admin may create, and how a sale's state is named.

use crate::ids::SaleId;
use crate::money::Money;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

pub const MAX_PRODUCT_NAME_CHARS: usize = 200;
pub const MAX_PRICE: Money = Money::from_minor(100_000_000_000); // 1,000,000,000.00
pub const MAX_STOCK: i64 = 10_000_000;
pub const MAX_PER_USER_LIMIT: u32 = 100;
pub const MAX_PAYMENT_WINDOW_SECS: u32 = 86_400;
pub const MAX_STOCK_SHARDS: u16 = 16;

/// A sale as an admin asks for it, before any rule is checked. The schema's bounds are the constants above
/// (a test in the gateway holds them together); `ends_at` after `starts_at`, `price` > 0 and integers written
/// without a fraction (`100`, not `100.0`) it cannot express: each is a 400.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "product_name": "Phone X", "price": "2990.00", "stock": 100, "per_user_limit": 1,
    "starts_at": "2026-11-23T10:00:00Z", "ends_at": "2026-11-23T11:00:00Z", "payment_window_secs": 600
})))]
#[serde(deny_unknown_fields)]
pub struct SaleDraft {
    /// Not only whitespace, and no NUL character.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"
        )
    )]
    pub product_name: String,
    /// A decimal string, > 0, at most two decimals, at most "1000000000.00".
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[0-9]{1,10}(\\.[0-9]{1,2})?$", example = "2990.00")
    )]
    pub price: String,
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10_000_000))]
    pub stock: i64,
    #[serde(default = "default_per_user_limit")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100, default = 1))]
    pub per_user_limit: i64,
    /// RFC 3339; may be in the past.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub starts_at: DateTime<Utc>,
    /// RFC 3339, after `starts_at`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub ends_at: DateTime<Utc>,
    #[serde(default = "default_payment_window_secs")]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 86_400, default = 3600)
    )]
    pub payment_window_secs: i64,
    /// Redis key groups the stock is split over, so one hot sale's reservations spread over several Redis
    /// Cluster primaries; at most `stock`. Fixed at creation.
    #[serde(default = "default_stock_shards")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 16, default = 1))]
    pub stock_shards: i64,
}

fn default_stock_shards() -> i64 {
    1
}

fn default_per_user_limit() -> i64 {
    1
}

fn default_payment_window_secs() -> i64 {
    3600
}

/// A sale that satisfies every admin rule; only this type can be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSale {
    pub product_name: String,
    pub price: Money,
    pub total_stock: i64,
    pub per_user_limit: u32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub payment_window_secs: u32,
    pub stock_shards: u16,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SaleRuleViolation(pub String);

fn bounded(name: &str, value: i64, min: i64, max: i64) -> Result<i64, SaleRuleViolation> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(SaleRuleViolation(format!(
            "{name} must be between {min} and {max}"
        )))
    }
}

impl TryFrom<SaleDraft> for NewSale {
    type Error = SaleRuleViolation;

    fn try_from(d: SaleDraft) -> Result<Self, SaleRuleViolation> {
        let name_len = d.product_name.chars().count();
        if name_len == 0 || name_len > MAX_PRODUCT_NAME_CHARS || d.product_name.trim().is_empty() {
            return Err(SaleRuleViolation(format!(
                "product_name must be 1 to {MAX_PRODUCT_NAME_CHARS} characters"
            )));
        }
        // PostgreSQL's text cannot hold NUL: refused here, or the insert fails as if the database were down.
        if d.product_name.contains('\0') {
            return Err(SaleRuleViolation(
                "product_name must not contain NUL characters".into(),
            ));
        }
        let price: Money = d
            .price
            .parse()
            .map_err(|e| SaleRuleViolation(format!("price: {e}")))?;
        if price.minor() <= 0 || price > MAX_PRICE {
            return Err(SaleRuleViolation(format!(
                "price must be greater than 0 and at most {MAX_PRICE}"
            )));
        }
        let total_stock = bounded("stock", d.stock, 1, MAX_STOCK)?;
        let per_user_limit = bounded(
            "per_user_limit",
            d.per_user_limit,
            1,
            MAX_PER_USER_LIMIT.into(),
        )?;
        let window = bounded(
            "payment_window_secs",
            d.payment_window_secs,
            1,
            MAX_PAYMENT_WINDOW_SECS.into(),
        )?;
        let shards = bounded("stock_shards", d.stock_shards, 1, MAX_STOCK_SHARDS.into())?;
        if shards > total_stock {
            return Err(SaleRuleViolation(
                "stock_shards must not exceed stock".into(),
            ));
        }
        if d.ends_at <= d.starts_at {
            return Err(SaleRuleViolation("ends_at must be after starts_at".into()));
        }
        Ok(NewSale {
            product_name: d.product_name,
            price,
            total_stock,
            // Both bounded above to small positive ranges, so the narrowing cannot fail.
            per_user_limit: u32::try_from(per_user_limit).unwrap_or(1),
            starts_at: d.starts_at,
            ends_at: d.ends_at,
            payment_window_secs: u32::try_from(window).unwrap_or(1),
            stock_shards: u16::try_from(shards).unwrap_or(1),
        })
    }
}

/// A sale as recorded: one type from the database row through Redis to the API answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub id: SaleId,
    pub product_name: String,
    pub price: Money,
    pub total_stock: i64,
    pub per_user_limit: u32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub payment_window_secs: u32,
    /// How many stock shards (Redis key groups) the sale's stock is split over; 1 for most sales.
    pub stock_shards: u16,
    /// When PostgreSQL recorded the sale. It tells this sale's Redis state apart from state that an earlier
    /// database left under the same id.
    pub created_at: DateTime<Utc>,
}

impl Sale {
    /// The last moment a reservation of this sale can still be held: `ends_at` plus one payment window.
    pub fn live_until(&self) -> DateTime<Utc> {
        self.ends_at + Duration::seconds(self.payment_window_secs.into())
    }

    /// True while the sale may still hold reservations.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        now < self.live_until()
    }

    pub fn status(&self, now: DateTime<Utc>, remaining: i64) -> SaleStatus {
        SaleStatus::at(now, self.starts_at, self.ends_at, remaining)
    }
}

/// What a buyer sees of a sale at this moment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleStatus {
    Upcoming,
    Active,
    SoldOut,
    Ended,
}

impl SaleStatus {
    pub fn at(
        now: DateTime<Utc>,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        remaining: i64,
    ) -> Self {
        if now < starts_at {
            Self::Upcoming
        } else if now >= ends_at {
            Self::Ended
        } else if remaining <= 0 {
            Self::SoldOut
        } else {
            Self::Active
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn draft() -> SaleDraft {
        let now = Utc::now();
        SaleDraft {
            product_name: "Phone".into(),
            price: "2990.00".into(),
            stock: 100,
            per_user_limit: 1,
            starts_at: now,
            ends_at: now + Duration::hours(1),
            payment_window_secs: 3600,
            stock_shards: 1,
        }
    }

    #[test]
    fn accepts_a_valid_draft() {
        let sale = NewSale::try_from(draft()).expect("valid");
        assert_eq!(sale.price, Money::from_minor(299_000));
    }

    #[test]
    fn refuses_each_broken_rule() {
        let cases: Vec<fn(&mut SaleDraft)> = vec![
            |d| d.product_name = String::new(),
            |d| d.product_name = "x".repeat(201),
            // Found by schemathesis: PostgreSQL refused the insert, answered as 503.
            |d| d.product_name = "Phone\0X".into(),
            |d| d.price = "0".into(),
            |d| d.price = "1.234".into(),
            |d| d.price = "1000000000.01".into(),
            |d| d.price = "1000000000000000000000000000".into(),
            |d| d.stock = 0,
            |d| d.stock = 10_000_001,
            |d| d.per_user_limit = 0,
            |d| d.per_user_limit = 101,
            |d| d.payment_window_secs = 0,
            |d| d.payment_window_secs = 86_401,
            |d| d.ends_at = d.starts_at,
            |d| d.stock_shards = 0,
            |d| d.stock_shards = 17,
            |d| {
                d.stock = 3;
                d.stock_shards = 4;
            },
        ];
        for (i, break_it) in cases.into_iter().enumerate() {
            let mut d = draft();
            break_it(&mut d);
            assert!(NewSale::try_from(d).is_err(), "case {i} must be refused");
        }
    }
}
