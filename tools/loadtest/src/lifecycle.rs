//! The end of an order's life under load. `expiry`: N reservations with a short payment window, left unpaid;
//! every one must come back exactly once, and the release lag (when `order.expired` arrives here − deadline) is
//! reported. The notifications are read from a queue of this run bound to `order.expired`, so the figure
//! includes the expiry service's whole path: the wait queue's TTL, PostgreSQL, Redis and the publish.

use crate::report::{Report, Verification};
use crate::scenarios::{Context, EXPIRY_WINDOW_SECS};
use anyhow::Context as _;
use chrono::Utc;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use flashsale_broker::Names;
use flashsale_domain::OrderExpired;
use flashsale_domain::messages::ORDER_EXPIRED;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use secrecy::ExposeSecret;
use std::collections::HashSet;
use std::time::Duration;

/// How long after the window the last notification may take before the run gives up.
const GRACE: Duration = Duration::from_secs(60);

pub async fn expiry(
    ctx: &Context,
    concurrency: usize,
    reservations: usize,
) -> anyhow::Result<Report> {
    let stock = i64::try_from(reservations)?;
    let conn = flashsale_broker::connect(&ctx.settings.amqp, "loadtest-expiry").await?;
    let ch = conn.create_channel().await?;
    let queue = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let names = Names::new(&ctx.settings.amqp.prefix);
    ch.queue_bind(
        queue.name().clone(),
        names.events_exchange().into(),
        ORDER_EXPIRED.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .context("binding to order.expired (is the gateway running? it declares the exchange)")?;
    ch.basic_qos(1000, Default::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.name().clone(),
            "loadtest-expiry".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let sale = ctx
        .create_sale_with_window("loadtest expiry", stock, EXPIRY_WINDOW_SECS)
        .await?;
    let m = ctx.reserve_each(sale, concurrency, reservations).await?;
    let accepted = m.count("202");
    let mut report = Report::from_measured("expiry", concurrency, None, &m);
    report.figure("sale_id", sale);
    report.figure("payment_window_s", EXPIRY_WINDOW_SECS);

    // Release lag in milliseconds, measured on arrival (an upper bound of the service's own figure).
    let mut lag = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)?;
    let mut seen = HashSet::new();
    let mut duplicates = 0u64;
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(EXPIRY_WINDOW_SECS.into()) + GRACE;
    while (seen.len() as u64) < accepted {
        let next = tokio::time::timeout_at(deadline, consumer.next()).await;
        let Ok(Some(delivery)) = next else { break };
        let delivery = delivery?;
        delivery.ack(BasicAckOptions::default()).await?;
        let Ok(expired) = serde_json::from_slice::<OrderExpired>(&delivery.data) else {
            continue;
        };
        if expired.sale_id.get() != sale {
            continue;
        }
        if !seen.insert(expired.order_id) {
            duplicates += 1;
            continue;
        }
        let late = (Utc::now() - expired.expires_at).num_milliseconds().max(1);
        lag.record(u64::try_from(late)?.min(3_600_000))?;
    }
    let _ = conn.close(200, "expiry scenario done".into()).await;
    for (name, q) in [("release_lag_p50_ms", 0.5), ("release_lag_p99_ms", 0.99)] {
        report.figure(name, lag.value_at_quantile(q));
    }
    report.figure("release_lag_max_ms", lag.max());
    report.figure("expired_notifications", seen.len());
    report.figure("duplicate_notifications", duplicates);
    report.verification = Some(verify_all_back(ctx, sale, stock, accepted, seen.len()).await?);
    Ok(report)
}

/// Every unit is back exactly once: all orders `expired`, `held` 0, and `remaining` = the whole stock (a unit
/// returned twice would push it above the stock, a stuck one keep it below).
async fn verify_all_back(
    ctx: &Context,
    sale: i64,
    stock: i64,
    accepted: u64,
    notified: usize,
) -> anyhow::Result<Verification> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = Text)]
        status: String,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = AsyncPgConnection::establish(ctx.settings.postgres.url.expose_secret()).await?;
    let counts: Vec<Count> = diesel::sql_query(
        "SELECT status, count(*) AS n FROM orders WHERE sale_id = $1 GROUP BY status ORDER BY status",
    )
    .bind::<BigInt, _>(sale)
    .load(&mut conn)
    .await?;
    let held: i64 =
        diesel::sql_query("SELECT held AS n, 'held' AS status FROM sales WHERE id = $1")
            .bind::<BigInt, _>(sale)
            .get_result::<Count>(&mut conn)
            .await
            .map(|c| c.n)?;
    let remaining = ctx.sale_counter(sale, "remaining").await?;
    let expired = counts
        .iter()
        .find(|c| c.status == "expired")
        .map_or(0, |c| c.n);
    let mut problems = Vec::new();
    if u64::try_from(expired)? != accepted {
        problems.push(format!(
            "{expired} orders expired of {accepted} answered 202"
        ));
    }
    for c in counts.iter().filter(|c| c.status != "expired") {
        problems.push(format!("{} orders still {}", c.n, c.status));
    }
    if notified as u64 != accepted {
        problems.push(format!(
            "{notified} order.expired notifications for {accepted} reservations"
        ));
    }
    if held != 0 {
        problems.push(format!("sales.held is {held}, expected 0"));
    }
    if remaining != stock {
        problems.push(format!(
            "remaining {remaining}, expected {stock}: {}",
            if remaining > stock {
                "a unit came back twice"
            } else {
                "units are stuck"
            }
        ));
    }
    Ok(Verification {
        clean: problems.is_empty(),
        checked: format!(
            "expired {expired} of {accepted}, notifications {notified}, held {held}, remaining {remaining} of {stock}"
        ),
        problems,
    })
}
