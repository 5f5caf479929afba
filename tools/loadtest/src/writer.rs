//! `writer`: order-writer's own ceiling, which `sustain` cannot show when the gateway feeds it slower than it
//! writes. Publishes N `reservation.created` for one sale, group-committed as the gateway does, to queues of its
//! own (`<prefix>bench-<run>.`), starts order-writer in this process on that backlog (the service's library, with
//! the same settings), and times how long the rows take to reach PostgreSQL. Then it stops the writer and deletes
//! its queues.

use crate::report::{Report, Verification};
use crate::scenarios::Context;
use anyhow::Context as _;
use chrono::{Duration as ChronoDuration, Utc};
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use flashsale_broker::{Names, Publisher};
use flashsale_domain::{Money, OrderId, ReservationCreated, SaleId, UserId};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use secrecy::ExposeSecret;
use std::collections::BTreeMap;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::scenarios::PAYMENT_WINDOW_SECS as WINDOW_SECS;

pub async fn drain_backlog(ctx: &Context, orders: usize) -> anyhow::Result<Report> {
    let stock = i64::try_from(orders)?;
    let sale = ctx.create_sale("loadtest writer", stock).await?;
    let mut settings = ctx.settings.clone();
    settings.amqp.prefix = format!("{}bench-{}.", settings.amqp.prefix, ctx.run);
    // A backstop: if this run dies before deleting its queues, the broker drops them two minutes later.
    settings.amqp.queue_expires_ms = 120_000;
    settings.order_writer.listen = "127.0.0.1:0".into();
    settings.postgres.run_migrations = false;
    let names = Names::new(&settings.amqp.prefix);

    let app = flashsale_order_writer::App::build(settings.clone()).await?;
    let publisher = Publisher::start(
        &settings.amqp,
        names.clone(),
        "loadtest",
        [WINDOW_SECS],
        &prometheus::Registry::new(),
    )
    .await?;
    // The backlog in the messages the gateway makes: group-committed as its settings say.
    let group = flashsale_broker::GroupCommit::start(
        publisher.clone(),
        std::time::Duration::from_micros(settings.gateway.group_commit_linger_us),
        settings.gateway.group_commit_max,
        &prometheus::Registry::new(),
    );
    let published = Instant::now();
    let sale_id = SaleId::new(sale).context("sale id")?;
    stream::iter(0..orders)
        .map(|i| {
            let group = &group;
            let run = &ctx.run;
            async move {
                let now = Utc::now();
                let message = ReservationCreated::new(
                    OrderId::new_v7(),
                    sale_id,
                    UserId::parse(format!("lt-{run}-w{i}"))?,
                    1,
                    Money::from_minor(100),
                    now,
                    now + ChronoDuration::seconds(i64::from(WINDOW_SECS)),
                );
                let body = serde_json::to_vec(&message)?;
                group
                    .publish(message.routing_key(), message.order_id.to_string(), body)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(1000)
        .try_collect::<()>()
        .await
        .context("publishing the backlog")?;
    let publish_secs = published.elapsed().as_secs_f64();

    let stop = CancellationToken::new();
    let started = Instant::now();
    let writer = tokio::spawn(app.run_until(stop.clone()));
    let mut conn = AsyncPgConnection::establish(ctx.settings.postgres.url.expose_secret()).await?;
    let target = i64::try_from(orders)?;
    crate::scenarios::wait_for_held(&mut conn, sale, target).await?;
    let drain = started.elapsed();
    stop.cancel();
    writer.await??;
    let rows: i64 = diesel::select(diesel::dsl::sql::<BigInt>(&format!(
        "(SELECT count(*) FROM orders WHERE sale_id = {sale})"
    )))
    .get_result(&mut conn)
    .await?;

    if let Ok(conn) = flashsale_broker::connect(&settings.amqp, "loadtest-cleanup").await {
        if let Ok(ch) = conn.create_channel().await {
            flashsale_broker::topology::delete(&ch, &names, [WINDOW_SECS]).await;
        }
        let _ = conn.close(200, "loadtest done".into()).await;
    }
    publisher.close().await;

    let rate = rows as f64 / drain.as_secs_f64();
    let mut problems = Vec::new();
    if rows != target {
        problems.push(format!("{rows} rows for {orders} messages"));
    }
    let mut figures = BTreeMap::new();
    figures.insert("sale_id", sale.into());
    figures.insert("publish_s", publish_secs.into());
    figures.insert("batch_size", settings.order_writer.batch_size.into());
    figures.insert(
        "batches_in_flight",
        settings.order_writer.batches_in_flight.into(),
    );
    Ok(Report {
        scenario: "writer",
        mode: "backlog",
        concurrency: 0,
        rate: None,
        requests: orders as u64,
        seconds: drain.as_secs_f64(),
        req_per_s: rate,
        latency_ms: None,
        outcomes: BTreeMap::new(),
        latency_by_outcome_ms: BTreeMap::new(),
        figures,
        notes: vec![format!(
            "req/s is order-writer's rows/s: {rows} rows written from a standing backlog in {:.3} s",
            drain.as_secs_f64()
        )],
        verification: Some(Verification {
            clean: problems.is_empty(),
            checked: format!("rows {rows} (messages {orders})"),
            problems,
        }),
    })
}
