//! A reservation whose payment window has ended, whoever found it: a due message, an overdue order row, or an
//! overdue held reservation in Redis. Everything the expiry path needs to write the row if it is missing and
//! to announce `order.expired`.

use chrono::{DateTime, Utc};
use flashsale_domain::{Money, OrderId, OrderStatus, ReservationCreated, SaleId, UserId};
use flashsale_stock::HeldReservation;
use flashsale_store::expiry::OverdueRow;
use flashsale_store::models::NewOrderRow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub order_id: OrderId,
    pub sale_id: SaleId,
    pub user_id: UserId,
    pub quantity: u32,
    pub amount: Money,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl From<&ReservationCreated> for Due {
    fn from(m: &ReservationCreated) -> Self {
        Self {
            order_id: m.order_id,
            sale_id: m.sale_id,
            user_id: m.user_id.clone(),
            quantity: m.quantity,
            amount: m.amount,
            created_at: m.created_at,
            expires_at: m.expires_at,
        }
    }
}

impl From<&HeldReservation> for Due {
    fn from(r: &HeldReservation) -> Self {
        Self {
            order_id: r.order_id,
            sale_id: r.sale,
            user_id: r.user.clone(),
            quantity: r.quantity,
            amount: r.amount,
            created_at: r.created_at,
            expires_at: r.expires_at,
        }
    }
}

impl TryFrom<OverdueRow> for Due {
    type Error = String;

    /// The table's CHECK constraints keep every field valid; an error means a foreign writer.
    fn try_from(r: OverdueRow) -> Result<Self, String> {
        Ok(Self {
            order_id: OrderId::from_uuid(r.id),
            sale_id: SaleId::new(r.sale_id).map_err(|e| e.to_string())?,
            user_id: UserId::parse(r.user_id).map_err(|e| e.to_string())?,
            quantity: u32::try_from(r.quantity).map_err(|e| e.to_string())?,
            amount: Money::from_minor(r.amount_minor),
            created_at: r.created_at,
            expires_at: r.expires_at,
        })
    }
}

impl Due {
    /// The row to write when order-writer has not written it yet (inserted as `expired`).
    pub fn row(&self) -> NewOrderRow {
        NewOrderRow {
            id: self.order_id.as_uuid(),
            sale_id: self.sale_id.get(),
            user_id: self.user_id.as_str().to_owned(),
            quantity: i32::try_from(self.quantity).unwrap_or(i32::MAX),
            amount_minor: self.amount.minor(),
            status: OrderStatus::Expired,
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }
}
