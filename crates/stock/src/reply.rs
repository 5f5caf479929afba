//! Parsing of script replies into domain outcomes.

use chrono::{DateTime, TimeZone, Utc};
use flashsale_domain::Money;
use flashsale_domain::reservation::{Refusal, Reservation};
use std::str::FromStr;

fn field<T: FromStr>(reply: &[String], i: usize) -> Result<T, String> {
    reply
        .get(i)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("script reply field {i} missing or malformed: {reply:?}"))
}

pub fn millis(ms: i64) -> Result<DateTime<Utc>, String> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| format!("timestamp {ms} out of range"))
}

pub fn reservation(reply: &[String]) -> Result<Reservation, String> {
    Ok(Reservation {
        order_id: field(reply, 1)?,
        quantity: field(reply, 2)?,
        amount: Money::from_minor(field(reply, 3)?),
        created_at: millis(field(reply, 4)?)?,
        expires_at: millis(field(reply, 5)?)?,
    })
}

pub fn refusal(reply: &[String]) -> Result<Refusal, String> {
    let code = reply.first().map(String::as_str).unwrap_or_default();
    Ok(match code {
        "NO_SALE" => Refusal::SaleStateMissing,
        "IDEMPOTENCY_MISMATCH" => Refusal::IdempotencyKeyReused,
        "RATE_LIMITED" => Refusal::RateLimited {
            retry_after_ms: field(reply, 1)?,
        },
        "SALE_NOT_STARTED" => Refusal::NotStarted,
        "SALE_ENDED" => Refusal::Ended,
        "QUANTITY_ABOVE_LIMIT" => Refusal::QuantityAboveLimit {
            limit: field(reply, 1)?,
        },
        "LIMIT_EXCEEDED" => Refusal::LimitExceeded {
            order_id: field(reply, 1)?,
        },
        "SOLD_OUT" => Refusal::SoldOut,
        other => return Err(format!("unknown script reply {other:?}")),
    })
}
