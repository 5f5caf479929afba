//! Message contracts on the `events` exchange. Every message is persistent JSON with `v` (the schema version)
//! and `message_id` = the order id, so a consumer can dedupe redeliveries and relay re-publishes.

use crate::ids::{OrderId, SaleId, UserId};
use crate::money::Money;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const RESERVATION_CREATED: &str = "reservation.created";
pub const RESERVATION_REJECTED: &str = "reservation.rejected";
/// Notifications of an order's terminal transitions, published (confirmed, not mandatory) after the commit.
pub const ORDER_PAID: &str = "order.paid";
pub const ORDER_EXPIRED: &str = "order.expired";
pub const PAYMENT_REFUND_REQUIRED: &str = "payment.refund_required";

/// A buyer was answered 202: one unit block is held in Redis until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationCreated {
    pub v: u8,
    pub order_id: OrderId,
    pub sale_id: SaleId,
    pub user_id: UserId,
    pub quantity: u32,
    pub amount: Money,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub payment_window_secs: u32,
}

impl ReservationCreated {
    pub const VERSION: u8 = 1;

    /// The current version of the message; the payment window is the span from creation to deadline.
    pub fn new(
        order_id: OrderId,
        sale_id: SaleId,
        user_id: UserId,
        quantity: u32,
        amount: Money,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Self {
        let window_secs = (expires_at - created_at).num_seconds().max(0);
        Self {
            v: Self::VERSION,
            order_id,
            sale_id,
            user_id,
            quantity,
            amount,
            created_at,
            expires_at,
            payment_window_secs: u32::try_from(window_secs).unwrap_or(u32::MAX),
        }
    }

    /// `reservation.created.w<secs>`: consumers bind `reservation.created.#`; each expiry wait queue binds
    /// the one payment window whose TTL it carries, so windows never delay each other.
    pub fn routing_key(&self) -> String {
        routing_key_for_window(self.payment_window_secs)
    }
}

pub fn routing_key_for_window(payment_window_secs: u32) -> String {
    format!("{RESERVATION_CREATED}.w{payment_window_secs}")
}

/// The database's stock guard refused a reservation (Redis had lost writes); the order row says `rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationRejected {
    pub v: u8,
    pub order_id: OrderId,
    pub sale_id: SaleId,
    pub user_id: UserId,
    pub quantity: u32,
    pub reason: String,
    /// Which rule refused it; decides whether Redis gets the units back. Absent in older messages.
    #[serde(default)]
    pub cause: RejectCause,
    /// The buyer's active order when the cause is [`RejectCause::BuyerAlreadyActive`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_order_id: Option<OrderId>,
}

/// Why the database refused a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCause {
    /// The buyer already held an active order: Redis had lost the buyer's entry, not a stock decrement, so the
    /// units this reservation took were counted nowhere else and go back.
    BuyerAlreadyActive,
    /// The sale's recorded stock was exhausted: Redis had counted units twice, and this reservation took the
    /// surplus; nothing goes back.
    StockExhausted,
    /// Announced again after a restart, cause not recorded: treated like `StockExhausted` (never oversells).
    #[default]
    Unknown,
}

impl ReservationRejected {
    pub const VERSION: u8 = 1;
}

/// An order moved `pending_payment → paid` and received its shipping priority. `message_id` = the order id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaid {
    pub v: u8,
    pub order_id: OrderId,
    pub sale_id: SaleId,
    pub user_id: UserId,
    pub quantity: u32,
    pub amount: Money,
    pub payment_id: uuid::Uuid,
    pub paid_at: DateTime<Utc>,
    pub shipping_priority: i64,
}

impl OrderPaid {
    pub const VERSION: u8 = 1;
}

/// An order moved `pending_payment → expired`; its units are back on sale. `message_id` = the order id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderExpired {
    pub v: u8,
    pub order_id: OrderId,
    pub sale_id: SaleId,
    pub user_id: UserId,
    pub quantity: u32,
    pub expires_at: DateTime<Utc>,
    pub expired_at: DateTime<Utc>,
}

impl OrderExpired {
    pub const VERSION: u8 = 1;
}

/// A payment succeeded for an order that could no longer take it (expired, or paid by another payment): the
/// money must go back to the buyer. `message_id` = the payment id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefundRequired {
    pub v: u8,
    pub payment_id: uuid::Uuid,
    pub order_id: OrderId,
    pub sale_id: SaleId,
    pub user_id: UserId,
    pub amount: Money,
    /// The order's status when the payment arrived (`expired` or `paid`).
    pub order_status: crate::OrderStatus,
}

impl PaymentRefundRequired {
    pub const VERSION: u8 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_round_trips_with_version_and_string_money() {
        let now = Utc::now();
        let m = ReservationCreated {
            v: ReservationCreated::VERSION,
            order_id: OrderId::new_v7(),
            sale_id: SaleId::new(7).expect("positive"),
            user_id: UserId::parse("u1").expect("valid"),
            quantity: 2,
            amount: Money::from_minor(1999),
            created_at: now,
            expires_at: now,
            payment_window_secs: 60,
        };
        let json = serde_json::to_value(&m).expect("serialises");
        assert_eq!(json["v"], 1);
        assert_eq!(json["amount"], "19.99");
        assert_eq!(m.routing_key(), "reservation.created.w60");
        let back: ReservationCreated = serde_json::from_value(json).expect("parses");
        assert_eq!(back, m);
    }
}
