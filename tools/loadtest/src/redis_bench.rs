//! `evalsha-args`: the arguments for `redis-benchmark` to run the reservation script by SHA, the cache's own
//! ceiling. The sale lives under a key prefix of its own (`<prefix>bench-<run>:`), which no gateway walks, so
//! the benchmark's reservations never reach an outbox relay, and the run's keys can be deleted by pattern.

use crate::scenarios::Context;
use chrono::{Duration as ChronoDuration, Utc};
use flashsale_domain::{Money, Sale, SaleId};
use flashsale_stock::{SaleWarmup, Stock};

/// One argument a line, `__rand_int__` where each call needs a fresh order, buyer and bucket.
pub async fn evalsha_args(ctx: &Context) -> anyhow::Result<Vec<String>> {
    let mut redis = ctx.settings.redis.clone();
    redis.key_prefix = format!("{}bench-{}:", redis.key_prefix, ctx.run);
    let stock = Stock::connect(&redis).await?;
    let sale = SaleId::new(1).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let now = Utc::now();
    let total = 10_000_000;
    let record = Sale {
        id: sale,
        product_name: "redis-benchmark".into(),
        price: Money::from_minor(100),
        total_stock: total,
        per_user_limit: 1,
        payment_window_secs: crate::scenarios::PAYMENT_WINDOW_SECS,
        starts_at: now - ChronoDuration::minutes(1),
        ends_at: now + ChronoDuration::hours(1),
        stock_shards: 1,
        created_at: now,
    };
    stock
        .warm(
            &SaleWarmup {
                sale: record,
                remaining: total,
                holds: Vec::new(),
            },
            true,
        )
        .await?;
    let k = stock.keys();
    let tagged = |suffix: &str| format!("{}{{sale:1}}:{suffix}", k.prefix());
    let limits = &ctx.settings.gateway;
    Ok(vec![
        "EVALSHA".into(),
        stock.reserve_script_sha().into(),
        "9".into(),
        k.sale(sale),
        k.stock(sale),
        k.buyers(sale),
        k.outbox(sale),
        tagged("res:__rand_int__"),
        tagged("rate:user:__rand_int__"),
        // No Idempotency-Key: the sale hash stands in (reserve.lua's KEYS[7]).
        k.sale(sale),
        k.deadlines(sale),
        // No lent units: the sale hash stands in for the received-transfers set (KEYS[9]).
        k.sale(sale),
        "__rand_int__".into(),
        "rb-__rand_int__".into(),
        "1".into(),
        limits.idempotency_ttl_secs.to_string(),
        limits.buyer_rate_per_sec.to_string(),
        limits.buyer_rate_burst.to_string(),
        k.counters_channel(),
        "1".into(),
        ctx.settings.sse.coalesce_ms.to_string(),
        String::new(),
        "0".into(),
    ])
}

/// `teardown`: deletes the queues and exchanges of `amqp.prefix` and every Redis key under `redis.key_prefix`.
/// `make bench` runs the stack under prefixes of its own and calls this at the end. Refuses the default
/// prefixes, which belong to `make run` and real deployments.
pub async fn teardown(ctx: &Context, payment_windows: &[u32]) -> anyhow::Result<()> {
    let s = &ctx.settings;
    anyhow::ensure!(
        s.amqp.prefix != "flashsale." && s.redis.key_prefix != "fs:",
        "teardown refuses the default prefixes (flashsale., fs:); set FLASHSALE__AMQP__PREFIX and FLASHSALE__REDIS__KEY_PREFIX"
    );
    let conn = flashsale_broker::connect(&s.amqp, "loadtest-teardown").await?;
    let ch = conn.create_channel().await?;
    let names = flashsale_broker::Names::new(&s.amqp.prefix);
    flashsale_broker::topology::delete(&ch, &names, payment_windows.iter().copied()).await;
    let _ = conn.close(200, "teardown".into()).await;

    let client = redis::Client::open(secrecy::ExposeSecret::expose_secret(&s.redis.url))?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{}*", s.redis.key_prefix);
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut redis)
            .await?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut redis)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
