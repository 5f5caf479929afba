//! Redis, the fast admission ledger: key names, Lua scripts and the client that runs them, one file per job.
//!
//! Reads `redis.mode`, `redis.url`, `redis.key_prefix`, `redis.response_timeout_ms`, `redis.connect_timeout_ms` and
//! `redis.retention_secs`.

pub mod client;
mod conn;
pub mod keys;
pub mod live;
mod lookup;
mod model;
mod outbox;
mod probe;
mod reject;
mod reply;
mod reserve;
pub mod restock;
mod settle;
pub mod shards;
mod warm;

pub use client::{Stock, StockError};
pub use keys::{Keys, Tag};
pub use live::{Announcement, Counters};
pub use model::{
    ActiveHold, CancelOutcome, HeldReservation, RateLimits, ReservationState, ReserveOutcome,
    ReserveRequest, SaleSnapshot, SaleWarmup, Warmed,
};
pub use reject::RejectOutcome;
pub use restock::GoneView;
pub use settle::{PaidOutcome, ReleaseOutcome};
