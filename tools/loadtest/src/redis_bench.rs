//! `evalsha-args`: the arguments for `redis-benchmark` to run the reservation script by SHA, the cache's own
//! ceiling. The sale lives under a key prefix of its own (`<prefix>bench-<run>:`), which no gateway walks, so
//! the benchmark's reservations never reach an outbox relay, and the run's keys can be deleted by pattern.

use crate::scenarios::Context;
use chrono::{Duration as ChronoDuration, Utc};
use flashsale_domain::{Money, SaleId};
use flashsale_stock::{SaleSnapshot, SaleWarmup, Stock};

/// One argument a line, `__rand_int__` where each call needs a fresh order, buyer and bucket.
pub async fn evalsha_args(ctx: &Context) -> anyhow::Result<Vec<String>> {
    let mut redis = ctx.settings.redis.clone();
    redis.key_prefix = format!("{}bench-{}:", redis.key_prefix, ctx.run);
    let stock = Stock::connect(&redis).await?;
    let sale = SaleId::new(1).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let now = Utc::now();
    let total = 10_000_000;
    stock
        .warm(&SaleWarmup {
            snapshot: SaleSnapshot {
                sale,
                product_name: "redis-benchmark".into(),
                price: Money::from_minor(100),
                total_stock: total,
                per_user_limit: 1,
                payment_window_secs: 3600,
                starts_at: now - ChronoDuration::minutes(1),
                ends_at: now + ChronoDuration::hours(1),
                remaining: total,
                sold: 0,
            },
            buyers: Vec::new(),
        })
        .await?;
    let k = stock.keys();
    let tagged = |suffix: &str| format!("{}{{sale:1}}:{suffix}", k.prefix());
    let limits = &ctx.settings.gateway;
    Ok(vec![
        "EVALSHA".into(),
        stock.reserve_script_sha().into(),
        "8".into(),
        k.sale(sale),
        k.stock(sale),
        k.buyers(sale),
        k.outbox(sale),
        tagged("res:__rand_int__"),
        tagged("rate:user:__rand_int__"),
        String::new(),
        String::new(),
        "__rand_int__".into(),
        "rb-__rand_int__".into(),
        "1".into(),
        limits.idempotency_ttl_secs.to_string(),
        limits.buyer_rate_per_sec.to_string(),
        limits.buyer_rate_burst.to_string(),
        "0".into(),
        "0".into(),
    ])
}
