//! Applying a batch of signed webhook events, in one transaction (see `docs/payment.md`), with a constant
//! number of statements whatever the batch's size:
//!
//! 1. lock the batch's payments (the events of one payment are applied one at a time), then answer each known
//!    `event_id` with its stored answer, and refuse unknown payments, payment/order mismatches and wrong amounts
//!    (nothing changes for those);
//! 2. lock the orders, admitting those not written yet the way order-writer does;
//! 3. `payment.succeeded` of a pending order: `pending_payment → paid` only while `expires_at >
//!    clock_timestamp()`, with the sale's next shipping priorities (`paying::pay`); an order that is no longer
//!    payable (expired, paid by another payment, or its deadline passed) makes the payment `refund_required`;
//!    `payment.failed` marks a pending payment `failed`;
//! 4. store the payments' new states and the events with their answers.
//!
//! The Redis step and the notification happen after the commit (`follow_up`), and again on every replay.
//! The applier (`applier.rs`) hands this only batches whose payments, orders and event ids are distinct.

use crate::event::{Event, EventKind};
use crate::follow_up::{FollowUp, paid_message, refund_message};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use flashsale_domain::{OrderStatus, ReservationCreated};
use flashsale_store::admission::{Stock, decide_and_write};
use flashsale_store::models::OrderRow;
use flashsale_store::paying;
use flashsale_store::payments::{self, NewEvent, PaymentRow, PaymentStatus};
use serde_json::{Value, json};
use std::collections::HashMap;
use uuid::Uuid;

/// The answer to a webhook: what is stored with the event and sent again on a replay.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// What the transaction decided for one event.
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

/// Refusals: nothing is stored, the provider may send a corrected event.
#[derive(Debug, Clone, Copy)]
pub enum Refusal {
    PaymentNotFound,
    OrderMismatch,
    AmountMismatch,
    /// The payment names a sale that does not exist.
    UnknownSale,
}

pub type Decision = Result<Applied, Refusal>;

/// An event still to decide, with its locked payment.
struct Live<'a> {
    at: usize,
    event: &'a Event,
    payment: PaymentRow,
}

/// Applies the batch inside the caller's transaction: one decision per event, in order. A database error
/// fails the whole batch (the caller rolls back).
pub async fn apply_batch(
    conn: &mut AsyncPgConnection,
    events: &[&Event],
) -> QueryResult<Vec<Decision>> {
    let mut decisions: Vec<Option<Decision>> = events.iter().map(|_| None).collect();
    let live = check(conn, events, &mut decisions).await?;
    let mut orders = lock_orders(conn, &live, &mut decisions).await?;

    let mut changes: Vec<(Uuid, PaymentStatus)> = Vec::new();
    let mut decided: Vec<(usize, &Event, Decided, Uuid)> = Vec::new();
    let mut to_pay: Vec<&Live> = Vec::new();
    for l in &live {
        if decisions[l.at].is_some() {
            continue;
        }
        let order = orders.get(&l.payment.order_id);
        let decision = match (l.event.kind, l.payment.status(), order) {
            (EventKind::Failed, status, order) => {
                if status == Some(PaymentStatus::Pending) {
                    changes.push((l.payment.id, PaymentStatus::Failed));
                }
                failed(
                    &l.payment,
                    order.map_or(OrderStatus::PendingPayment, |o| o.status),
                )
            }
            (EventKind::Succeeded, _, None) => {
                decisions[l.at] = Some(Err(Refusal::UnknownSale));
                continue;
            }
            // Another event of a payment already settled: the same outcome again, re-driven.
            (EventKind::Succeeded, Some(PaymentStatus::Succeeded), Some(order)) => {
                paid(order, &l.payment)
            }
            (EventKind::Succeeded, Some(PaymentStatus::RefundRequired), Some(order)) => {
                refund(&l.payment, order.status)
            }
            // Money was taken (a provider may report success after a failure): try to apply it.
            (EventKind::Succeeded, _, Some(order))
                if order.status == OrderStatus::PendingPayment =>
            {
                to_pay.push(l);
                continue;
            }
            (EventKind::Succeeded, _, Some(order)) => {
                changes.push((l.payment.id, PaymentStatus::RefundRequired));
                refund(&l.payment, order.status)
            }
        };
        decided.push((l.at, l.event, decision, l.payment.id));
    }

    let pairs: Vec<(Uuid, i64)> = to_pay
        .iter()
        .map(|l| (l.payment.order_id, l.payment.sale_id))
        .collect();
    let paid_now: HashMap<Uuid, paying::Paid> = paying::pay(conn, &pairs)
        .await?
        .into_iter()
        .map(|p| (p.order_id, p))
        .collect();
    for l in to_pay {
        let decision = match (
            paid_now.get(&l.payment.order_id),
            orders.remove(&l.payment.order_id),
        ) {
            (Some(p), Some(order)) => {
                changes.push((l.payment.id, PaymentStatus::Succeeded));
                let order = OrderRow {
                    status: OrderStatus::Paid,
                    paid_at: Some(p.paid_at),
                    shipping_priority: Some(p.shipping_priority),
                    ..order
                };
                paid(&order, &l.payment)
            }
            // The deadline passed: expiry will (or did) expire it; the money goes back.
            _ => {
                changes.push((l.payment.id, PaymentStatus::RefundRequired));
                refund(&l.payment, OrderStatus::Expired)
            }
        };
        decided.push((l.at, l.event, decision, l.payment.id));
    }
    payments::set_statuses(conn, &changes).await?;

    let answered: Vec<(usize, Answer, FollowUp, &'static str, &Event, Uuid)> = decided
        .into_iter()
        .map(|(at, event, (body, follow_up, result), payment)| {
            let answer = Answer {
                status: 200,
                body: body.to_string(),
            };
            (at, answer, follow_up, result, event, payment)
        })
        .collect();
    let rows: Vec<NewEvent> = answered
        .iter()
        .map(|(_, answer, _, _, event, payment)| NewEvent {
            event_id: &event.event_id,
            payment_id: *payment,
            event_type: event.kind.as_str(),
            status_code: i32::from(answer.status),
            answer: &answer.body,
        })
        .collect();
    payments::record_events(conn, &rows).await?;
    drop(rows);
    for (at, answer, follow_up, result, _, _) in answered {
        decisions[at] = Some(Ok(Applied::Answered {
            answer,
            follow_up,
            result,
        }));
    }
    Ok(decisions
        .into_iter()
        .map(|d| d.unwrap_or(Err(Refusal::PaymentNotFound)))
        .collect())
}

/// Locks the payments, answers replays and refuses what does not match; the rest is live.
async fn check<'a>(
    conn: &mut AsyncPgConnection,
    events: &[&'a Event],
    decisions: &mut [Option<Decision>],
) -> QueryResult<Vec<Live<'a>>> {
    let ids: Vec<Uuid> = events.iter().map(|e| e.payment_id).collect();
    let mut found: HashMap<Uuid, PaymentRow> = payments::lock_many(conn, &ids)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    // Read under the payments' locks: an event applied by another instance meanwhile is seen here.
    let event_ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let stored: HashMap<String, (i32, String)> = payments::event_answers(conn, &event_ids)
        .await?
        .into_iter()
        .map(|(id, status, body)| (id, (status, body)))
        .collect();
    let mut live = Vec::new();
    for (at, event) in events.iter().enumerate() {
        let Some(payment) = found.remove(&event.payment_id) else {
            decisions[at] = Some(Err(Refusal::PaymentNotFound));
            continue;
        };
        decisions[at] = if let Some((status, body)) = stored.get(&event.event_id) {
            Some(Ok(Applied::Replayed(Answer {
                status: u16::try_from(*status).unwrap_or(200),
                body: body.clone(),
            })))
        } else if payment.order_id != event.order_id {
            Some(Err(Refusal::OrderMismatch))
        } else if payment.amount_minor != event.amount.minor() {
            Some(Err(Refusal::AmountMismatch))
        } else {
            live.push(Live { at, event, payment });
            None
        };
    }
    Ok(live)
}

/// The live events' orders, locked; a successful payment's order that order-writer has not written yet is
/// admitted first, as order-writer would (a payment whose sale does not exist is refused).
async fn lock_orders(
    conn: &mut AsyncPgConnection,
    live: &[Live<'_>],
    decisions: &mut [Option<Decision>],
) -> QueryResult<HashMap<Uuid, OrderRow>> {
    let ids: Vec<Uuid> = live.iter().map(|l| l.payment.order_id).collect();
    let mut orders: HashMap<Uuid, OrderRow> = paying::lock_orders(conn, &ids)
        .await?
        .into_iter()
        .map(|o| (o.id, o))
        .collect();
    let mut missing: Vec<&Live> = Vec::new();
    let mut messages: Vec<ReservationCreated> = Vec::new();
    for l in live {
        if l.event.kind != EventKind::Succeeded || orders.contains_key(&l.payment.order_id) {
            continue;
        }
        match reservation_of(&l.payment) {
            Some(message) => {
                missing.push(l);
                messages.push(message);
            }
            None => decisions[l.at] = Some(Err(Refusal::UnknownSale)),
        }
    }
    if messages.is_empty() {
        return Ok(orders);
    }
    let refs: Vec<&ReservationCreated> = messages.iter().collect();
    let admitted = decide_and_write(conn, &refs, Stock::Locked).await?;
    for i in admitted.unknown_sale {
        decisions[missing[i].at] = Some(Err(Refusal::UnknownSale));
    }
    let ids: Vec<Uuid> = messages.iter().map(|m| m.order_id.as_uuid()).collect();
    orders.extend(
        paying::lock_orders(conn, &ids)
            .await?
            .into_iter()
            .map(|o| (o.id, o)),
    );
    Ok(orders)
}

type Decided = (Value, FollowUp, &'static str);

/// The buyer may check out again until the deadline; the order keeps its state.
fn failed(payment: &PaymentRow, order_status: OrderStatus) -> Decided {
    (
        json!({ "order_id": payment.order_id, "status": order_status }),
        FollowUp::Nothing,
        "failed",
    )
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
