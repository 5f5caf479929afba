//! Applying one signed webhook event, in one transaction (see `docs/payment.md`):
//!
//! 1. lock the payment row (the events of one payment are applied one at a time), answer a known `event_id`
//!    with its stored answer, refuse a payment/order mismatch or a wrong amount (nothing changes);
//! 2. `payment.succeeded`: lock the order row (admitting it the way order-writer does if it is not written
//!    yet), then, in a savepoint, take the sale's next `paid_count` and move the order `pending_payment → paid`
//!    only while `expires_at > clock_timestamp()`. If that fails (the deadline passed, or the order is expired
//!    or paid by another payment) the savepoint is rolled back, so no priority is skipped, and the payment
//!    becomes `refund_required`;
//! 3. store the event with its answer.
//!
//! The Redis step and the notification happen after the commit (`follow_up`), and again on every replay.
//! Events are applied in batches, one transaction each (`applier.rs`).

use crate::event::{Event, EventKind};
use crate::follow_up::{FollowUp, paid_message, refund_message};
use diesel::result::Error as DieselError;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use flashsale_domain::{OrderStatus, ReservationCreated};
use flashsale_store::admission::decide_and_write;
use flashsale_store::models::OrderRow;
use flashsale_store::payments::{self, PaymentRow, PaymentStatus};
use flashsale_store::{orders, paying};
use serde_json::{Value, json};

/// The answer to a webhook: what is stored with the event and sent again on a replay.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// What the transaction decided.
pub enum Applied {
    /// A first answer, stored with the event; `result` labels the metric.
    Answered {
        answer: Answer,
        follow_up: FollowUp,
        result: &'static str,
    },
    /// The event was processed before: its stored answer.
    Replayed(Answer),
}

/// Refusals: the transaction rolls back, nothing is stored, the provider may send a corrected event.
#[derive(Debug)]
pub enum Refusal {
    PaymentNotFound,
    OrderMismatch,
    AmountMismatch,
    /// The payment names a sale that does not exist.
    UnknownSale,
}

pub enum TxError {
    Refused(Refusal),
    Db(DieselError),
}

impl From<DieselError> for TxError {
    fn from(e: DieselError) -> Self {
        Self::Db(e)
    }
}

/// Applies one event inside the caller's transaction (a savepoint of the applier's batch).
pub async fn apply_once(conn: &mut AsyncPgConnection, event: &Event) -> Result<Applied, TxError> {
    let Some(payment) = payments::lock(conn, event.payment_id).await? else {
        return Err(TxError::Refused(Refusal::PaymentNotFound));
    };
    if let Some((status, body, _)) = payments::event_answer(conn, &event.event_id).await? {
        return Ok(Applied::Replayed(Answer {
            status: u16::try_from(status).unwrap_or(200),
            body,
        }));
    }
    if payment.order_id != event.order_id {
        return Err(TxError::Refused(Refusal::OrderMismatch));
    }
    if payment.amount_minor != event.amount.minor() {
        return Err(TxError::Refused(Refusal::AmountMismatch));
    }
    let (body, follow_up, result) = match event.kind {
        EventKind::Failed => failed(conn, &payment).await?,
        EventKind::Succeeded => succeeded(conn, &payment).await?,
    };
    let answer = Answer {
        status: 200,
        body: body.to_string(),
    };
    payments::record_event(
        conn,
        &event.event_id,
        payment.id,
        event.kind.as_str(),
        i32::from(answer.status),
        &answer.body,
    )
    .await?;
    Ok(Applied::Answered {
        answer,
        follow_up,
        result,
    })
}

type Decided = (Value, FollowUp, &'static str);

/// The buyer may check out again until the deadline; the order keeps its state.
async fn failed(conn: &mut AsyncPgConnection, payment: &PaymentRow) -> Result<Decided, TxError> {
    if payment.status() == Some(PaymentStatus::Pending) {
        payments::set_status(conn, payment.id, PaymentStatus::Failed).await?;
    }
    let order = orders::find(conn, flashsale_domain::OrderId::from_uuid(payment.order_id)).await?;
    let status = order.map_or(OrderStatus::PendingPayment, |o| o.status);
    Ok((
        json!({ "order_id": payment.order_id, "status": status }),
        FollowUp::Nothing,
        "failed",
    ))
}

async fn succeeded(conn: &mut AsyncPgConnection, payment: &PaymentRow) -> Result<Decided, TxError> {
    match payment.status() {
        // Another event of a payment already settled: the same outcome again, re-driven.
        Some(PaymentStatus::Succeeded) => {
            let order = lock_or_admit(conn, payment).await?;
            return Ok(paid(&order, payment));
        }
        Some(PaymentStatus::RefundRequired) => {
            let order = lock_or_admit(conn, payment).await?;
            return Ok(refund(payment, order.status));
        }
        // Money was taken (a provider may report success after a failure): try to apply it.
        Some(PaymentStatus::Pending | PaymentStatus::Failed) | None => {}
    }
    let order = lock_or_admit(conn, payment).await?;
    if order.status != OrderStatus::PendingPayment {
        payments::set_status(conn, payment.id, PaymentStatus::RefundRequired).await?;
        return Ok(refund(payment, order.status));
    }
    let taken = conn
        .transaction(async |conn| {
            let (priority, at) = paying::next_priority(conn, order.sale_id).await?;
            match paying::mark_paid(conn, order.id, at, priority).await? {
                1 => Ok((priority, at)),
                _ => Err(Late::Late),
            }
        })
        .await;
    match taken {
        Ok((priority, at)) => {
            payments::set_status(conn, payment.id, PaymentStatus::Succeeded).await?;
            let order = OrderRow {
                status: OrderStatus::Paid,
                paid_at: Some(at),
                shipping_priority: Some(priority),
                ..order
            };
            Ok(paid(&order, payment))
        }
        // The deadline passed: expiry will (or did) expire it; the money goes back.
        Err(Late::Late) => {
            payments::set_status(conn, payment.id, PaymentStatus::RefundRequired).await?;
            Ok(refund(payment, OrderStatus::Expired))
        }
        Err(Late::Db(e)) => Err(e.into()),
    }
}

enum Late {
    Late,
    Db(DieselError),
}

impl From<DieselError> for Late {
    fn from(e: DieselError) -> Self {
        Self::Db(e)
    }
}

fn paid(order: &OrderRow, payment: &PaymentRow) -> Decided {
    let body = json!({
        "order_id": order.id,
        "status": "paid",
        "shipping_priority": order.shipping_priority,
        "paid_at": order.paid_at.map(crate::routes::rfc3339),
    });
    (body, paid_message(order, payment), "paid")
}

fn refund(payment: &PaymentRow, order_status: OrderStatus) -> Decided {
    let body = json!({ "order_id": payment.order_id, "status": "refund_required" });
    (
        body,
        refund_message(payment, order_status),
        "refund_required",
    )
}

/// The order row, locked; written first the way order-writer writes it when order-writer is behind.
async fn lock_or_admit(
    conn: &mut AsyncPgConnection,
    payment: &PaymentRow,
) -> Result<OrderRow, TxError> {
    if let Some(order) = paying::lock_order(conn, payment.order_id).await? {
        return Ok(order);
    }
    let message = reservation_of(payment).ok_or(TxError::Refused(Refusal::UnknownSale))?;
    let decisions = decide_and_write(conn, &[&message]).await?;
    if !decisions.unknown_sale.is_empty() {
        return Err(TxError::Refused(Refusal::UnknownSale));
    }
    paying::lock_order(conn, payment.order_id)
        .await?
        .ok_or(TxError::Refused(Refusal::UnknownSale))
}

/// The reservation a payment was recorded from, as order-writer would have received it.
fn reservation_of(p: &PaymentRow) -> Option<ReservationCreated> {
    Some(ReservationCreated::new(
        flashsale_domain::OrderId::from_uuid(p.order_id),
        flashsale_domain::SaleId::new(p.sale_id).ok()?,
        flashsale_domain::UserId::parse(p.user_id.clone()).ok()?,
        u32::try_from(p.quantity).ok()?,
        flashsale_domain::Money::from_minor(p.amount_minor),
        p.reserved_at,
        p.expires_at,
    ))
}
