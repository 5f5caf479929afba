//! Redis, the fast admission ledger: key names, Lua scripts and the client that runs them.
//!
//! Reads `redis.url`, `redis.key_prefix`, `redis.response_timeout_ms`, `redis.connect_timeout_ms`.

pub mod client;
pub mod keys;
mod reply;

pub use client::{
    CancelOutcome, HeldReservation, RateLimits, ReserveOutcome, ReserveRequest, SaleSnapshot,
    SaleWarmup, Stock, StockError,
};
pub use keys::Keys;
