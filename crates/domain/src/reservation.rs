//! The outcomes of asking for a reservation, as the business names them.

use crate::ids::OrderId;
use crate::money::Money;
use chrono::{DateTime, Utc};

/// A held block of units: the answer to the buyer and the content of `reservation.created`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub order_id: OrderId,
    pub quantity: u32,
    pub amount: Money,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Why a reservation was refused. Every variant holds no stock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the sale's state is not in the cache")]
    SaleStateMissing,
    #[error("this Idempotency-Key was used with a different quantity")]
    IdempotencyKeyReused,
    #[error("too many attempts; retry later")]
    RateLimited { retry_after_ms: u64 },
    #[error("the sale has not started")]
    NotStarted,
    #[error("the sale has ended")]
    Ended,
    #[error("quantity exceeds the sale's per-user limit of {limit}")]
    QuantityAboveLimit { limit: u32 },
    #[error("you already hold an order in this sale")]
    LimitExceeded { order_id: OrderId },
    #[error("the sale is sold out")]
    SoldOut,
}
