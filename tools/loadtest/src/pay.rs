//! `pay`: N orders paid at once through signed webhooks, as a payment provider would send them. Reserves N
//! units for N buyers, waits until the payment service has recorded a pending payment for every order, then
//! fires one signed `payment.succeeded` webhook per payment at `--payment`, C at a time. Reports webhooks/s and
//! the webhook latency, and verifies that every order is `paid` with shipping priorities exactly 1..N in
//! `paid_at` order, and that the sale's `sold` is N.

use crate::report::{Latency, Report, Verification};
use crate::scenarios::Context;
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use flashsale_domain::Money;
use futures_util::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use secrecy::ExposeSecret;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long the payment service may take to record the pending payments once the reservations are in.
const RECORDED_WITHIN: Duration = Duration::from_secs(60);

#[derive(diesel::QueryableByName)]
struct Pending {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    order_id: Uuid,
    #[diesel(sql_type = BigInt)]
    amount_minor: i64,
}

pub async fn pay(
    ctx: &Context,
    payment: &reqwest::Url,
    concurrency: usize,
    orders: usize,
) -> anyhow::Result<Report> {
    let stock = i64::try_from(orders)?;
    let sale = ctx.create_sale("loadtest pay", stock).await?;
    let reserved = ctx.reserve_each(sale, concurrency, orders).await?;
    let accepted = reserved.count("202");
    let mut conn = AsyncPgConnection::establish(ctx.settings.postgres.url.expose_secret()).await?;
    let payments = recorded(&mut conn, sale, accepted).await?;

    let url = payment.join("/webhooks/psp")?;
    let secret = ctx
        .settings
        .payment
        .webhook_secret
        .expose_secret()
        .to_owned();
    let started = Instant::now();
    let answers: Vec<(u16, Duration)> = stream::iter(payments.iter().enumerate())
        .map(|(i, p)| {
            let body = json!({
                "event_id": format!("lt-{}-{i}", ctx.run),
                "type": "payment.succeeded",
                "payment_id": p.id,
                "order_id": p.order_id,
                "amount": Money::from_minor(p.amount_minor),
            })
            .to_string();
            let header = flashsale_webhook::sign(
                &[secret.as_bytes()],
                Utc::now().timestamp(),
                body.as_bytes(),
            );
            let request = ctx
                .http
                .post(url.clone())
                .header(flashsale_webhook::HEADER, header)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            async move {
                let sent = Instant::now();
                let status = request.send().await.map_or(0, |r| r.status().as_u16());
                (status, sent.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();

    let mut report = Report::from_measured("pay", concurrency, None, &reserved);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for (status, took) in &answers {
        *outcomes.entry(status.to_string()).or_default() += 1;
        latency.record(u64::try_from(took.as_micros())?.clamp(1, 60_000_000))?;
    }
    // The report's main figures are the webhooks'; the reservations that set them up are figures of their own.
    report.requests = answers.len() as u64;
    report.seconds = elapsed.as_secs_f64();
    report.req_per_s = answers.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    report.latency_ms = (!answers.is_empty()).then(|| Latency {
        p50: ms(0.5),
        p90: ms(0.9),
        p99: ms(0.99),
        p99_9: ms(0.999),
        max: latency.max() as f64 / 1000.0,
    });
    report.figure("reservations_202", accepted);
    report.figure("reservations_per_s", reserved.rate());
    report.outcomes = outcomes;
    report.figure("sale_id", sale);
    report.figure("webhooks_per_s", report.req_per_s);
    report.verification = Some(verify_paid(ctx, &mut conn, sale, accepted).await?);
    Ok(report)
}

/// Waits until the payment service recorded a pending payment for each of the `accepted` orders of the sale.
async fn recorded(
    conn: &mut AsyncPgConnection,
    sale: i64,
    accepted: u64,
) -> anyhow::Result<Vec<Pending>> {
    let until = Instant::now() + RECORDED_WITHIN;
    loop {
        let pending: Vec<Pending> = diesel::sql_query(
            "SELECT id, order_id, amount_minor FROM payments WHERE sale_id = $1 AND status = 'pending'",
        )
        .bind::<BigInt, _>(sale)
        .load(conn)
        .await?;
        if pending.len() as u64 >= accepted {
            return Ok(pending);
        }
        anyhow::ensure!(
            Instant::now() < until,
            "the payment service recorded {} of {accepted} payments within {RECORDED_WITHIN:?} (is it running?)",
            pending.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every order paid, priorities exactly 1..N in `paid_at` order, `sold` = N.
async fn verify_paid(
    ctx: &Context,
    conn: &mut AsyncPgConnection,
    sale: i64,
    accepted: u64,
) -> anyhow::Result<Verification> {
    #[derive(diesel::QueryableByName)]
    struct Paid {
        #[diesel(sql_type = Nullable<BigInt>)]
        shipping_priority: Option<i64>,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        paid_at: Option<DateTime<Utc>>,
    }
    let paid: Vec<Paid> = diesel::sql_query(
        "SELECT shipping_priority, paid_at FROM orders WHERE sale_id = $1 AND status = 'paid' \
         ORDER BY paid_at, shipping_priority",
    )
    .bind::<BigInt, _>(sale)
    .load(conn)
    .await?;
    let sold = ctx.sale_counter(sale, "sold").await?;
    let mut problems = Vec::new();
    if paid.len() as u64 != accepted {
        problems.push(format!("{} orders paid of {accepted}", paid.len()));
    }
    let priorities: Vec<Option<i64>> = paid.iter().map(|p| p.shipping_priority).collect();
    let expected: Vec<Option<i64>> = (1..=i64::try_from(paid.len())?).map(Some).collect();
    if priorities != expected {
        problems.push("shipping priorities are not exactly 1..N in paid_at order".to_owned());
    }
    if paid.iter().any(|p| p.paid_at.is_none()) {
        problems.push("a paid order has no paid_at".to_owned());
    }
    if u64::try_from(sold)? != accepted {
        problems.push(format!("sold {sold}, expected {accepted}"));
    }
    Ok(Verification {
        clean: problems.is_empty(),
        checked: format!(
            "paid {} of {accepted}, priorities 1..{} in paid_at order, sold {sold}",
            paid.len(),
            paid.len()
        ),
        problems,
    })
}
