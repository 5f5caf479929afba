//! What the stock client takes and gives: requests, outcomes and reservations as Redis holds them.

use chrono::{DateTime, Utc};
use flashsale_domain::reservation::{Refusal, Reservation};
use flashsale_domain::{Money, OrderId, Sale, SaleId, UserId};
use std::str::FromStr;

/// The per-buyer, per-sale token bucket (`gateway.buyer_rate_*`; the per-address limit is the gateway's own,
/// in process) and how long an Idempotency-Key is remembered.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    pub buyer_per_sec: u32,
    pub buyer_burst: u32,
    pub idempotency_ttl_secs: u64,
    /// A reservation announces its sale's new counters at most this often (ms); the live feed re-reads once
    /// more this long after an announcement, so a change whose announcement was skipped is still seen.
    pub announce_every_ms: u64,
}

#[derive(Debug, Clone)]
pub struct ReserveRequest<'a> {
    pub sale: SaleId,
    pub order_id: OrderId,
    pub user: &'a UserId,
    pub quantity: u32,
    pub idempotency_key: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Units were taken now; the caller must publish and then confirm or cancel.
    Reserved(Reservation),
    /// A retry with a known Idempotency-Key: the first answer again, nothing taken.
    Replayed(Reservation),
    Refused(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    Released,
    /// A retry already got its 202, or the relay took the entry over: leave it to the relay.
    KeptForRelay,
    NotHeld,
}

/// The `state` field of a reservation hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationState {
    /// Units taken; the order is (or is about to be) `pending_payment`.
    Held,
    /// The database refused the order (Redis had lost writes); it blocks nobody and holds nothing.
    Rejected,
    /// Paid: the units count as `sold` and the buyer keeps their entry (an active order).
    Paid,
    /// The payment window ended unpaid: the units went back to the stock, the buyer's entry was cleared.
    Expired,
}

impl ReservationState {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Rejected => "rejected",
            Self::Paid => "paid",
            Self::Expired => "expired",
        }
    }
}

impl FromStr for ReservationState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "held" => Ok(Self::Held),
            "rejected" => Ok(Self::Rejected),
            "paid" => Ok(Self::Paid),
            "expired" => Ok(Self::Expired),
            other => Err(format!("unknown reservation state {other:?}")),
        }
    }
}

/// A reservation as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldReservation {
    pub order_id: OrderId,
    pub sale: SaleId,
    pub user: UserId,
    pub quantity: u32,
    pub amount: Money,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub state: ReservationState,
}

/// A sale and its live counters, read from Redis alone (what `GET /sales/{id}` shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleSnapshot {
    pub sale: Sale,
    pub remaining: i64,
    pub sold: i64,
}

/// Everything needed to make a sale live in Redis from PostgreSQL.
#[derive(Debug, Clone)]
pub struct SaleWarmup {
    pub sale: Sale,
    /// Units neither held by an active order nor in flight: `total_stock − held`.
    pub remaining: i64,
    /// The active orders (restored with the stock, so each can still be paid or expired exactly once).
    pub holds: Vec<ActiveHold>,
}

/// An active order as PostgreSQL records it, to rebuild its reservation after Redis lost the sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveHold {
    pub order_id: OrderId,
    pub user: UserId,
    pub quantity: u32,
    pub amount: Money,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Paid (counts as sold) rather than pending payment (held until its deadline).
    pub paid: bool,
}

/// What warming found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmed {
    /// The sale's state was written now.
    Written,
    /// The sale was already live; only missing fields and its place in the index were restored.
    AlreadyLive,
    /// Redis held state of an earlier database under this id; it was replaced.
    ReplacedStale,
    /// The stock is missing and may not be restored yet (a reservation may still be in flight).
    Waiting,
}
