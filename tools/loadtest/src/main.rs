//! `flashsale-loadtest race`: the first second of a sale. Creates a sale of S units through the admin API, mints N
//! buyer tokens up front, fires one reservation per buyer at concurrency C over keep-alive connections, waits for
//! order-writer to drain, and verifies in PostgreSQL: rows = 202 answers, no buyer twice, remaining = S − 202s.
//! Exits non-zero when verification fails. Reads the same settings as the services (admin token, JWT secret,
//! PostgreSQL URL).
//!
//! Work in progress (issue 3): `flood`, `sustain`, `ceiling`, `--rate`, `--json` and the progress bar are next.

use anyhow::{Context, ensure};
use chrono::{Duration as ChronoDuration, Utc};
use clap::{Parser, Subcommand};
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use flashsale_platform::Settings;
use futures_util::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use jsonwebtoken::{EncodingKey, Header, encode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Load tool for flashsale")]
struct Cli {
    /// Base URL of the gateway.
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    gateway: String,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// N distinct buyers race for S units at concurrency C, then the result is verified.
    Race {
        #[arg(long, default_value_t = 7000)]
        buyers: usize,
        #[arg(long, default_value_t = 100)]
        stock: i64,
        #[arg(long, default_value_t = 500)]
        concurrency: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load()?;
    match cli.scenario {
        Scenario::Race {
            buyers,
            stock,
            concurrency,
        } => race(&cli.gateway, &settings, buyers, stock, concurrency).await,
    }
}

async fn race(
    gateway: &str,
    settings: &Settings,
    buyers: usize,
    stock: i64,
    concurrency: usize,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let now = Utc::now();
    let sale: Value = http
        .post(format!("{gateway}/api/v1/admin/sales"))
        .bearer_auth(settings.auth.admin_token.expose_secret())
        .json(&json!({
            "product_name": "loadtest race",
            "price": "1.00",
            "stock": stock,
            "per_user_limit": 1,
            "starts_at": now - ChronoDuration::minutes(1),
            "ends_at": now + ChronoDuration::hours(1),
            "payment_window_secs": 3600,
        }))
        .send()
        .await
        .context("creating the sale")?
        .error_for_status()?
        .json()
        .await?;
    let sale_id = sale["id"].as_i64().context("sale id")?;

    // Tokens are minted before the clock starts: the race measures the server, not the signer.
    let key = EncodingKey::from_secret(settings.auth.jwt_secret.expose_secret().as_bytes());
    let exp = (now + ChronoDuration::hours(1)).timestamp();
    let run = now.timestamp_millis();
    let tokens = (0..buyers)
        .map(|i| {
            encode(
                &Header::default(),
                &json!({"sub": format!("lt-{run}-{i}"), "exp": exp}),
                &key,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;

    let url = format!("{gateway}/api/v1/sales/{sale_id}/reservations");
    let started = Instant::now();
    let results: Vec<(Duration, String)> = stream::iter(tokens.iter().map(|token| {
        let req = http.post(&url).bearer_auth(token);
        async move {
            let sent = Instant::now();
            let outcome = match req.send().await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let body: Value = res.json().await.unwrap_or(Value::Null);
                    match body["error"]["code"].as_str() {
                        Some(code) => format!("{status} {code}"),
                        None => status.to_string(),
                    }
                }
                Err(e) => format!("transport error: {e}"),
            };
            (sent.elapsed(), outcome)
        }
    }))
    .buffer_unordered(concurrency)
    .collect()
    .await;
    let elapsed = started.elapsed();

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for (took, outcome) in &results {
        latency.saturating_record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        *outcomes.entry(outcome.clone()).or_default() += 1;
    }
    let accepted = outcomes.get("202").copied().unwrap_or(0);
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    println!("race: {buyers} buyers, {stock} units, concurrency {concurrency}, sale {sale_id}");
    println!(
        "  {:.0} req/s over {:.3} s",
        buyers as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        latency.max() as f64 / 1000.0
    );
    for (outcome, n) in &outcomes {
        println!("  {outcome}: {n}");
    }

    verify(gateway, &http, settings, sale_id, stock, accepted).await
}

/// Waits for order-writer to drain, then checks rows, buyers and remaining stock.
async fn verify(
    gateway: &str,
    http: &reqwest::Client,
    settings: &Settings,
    sale_id: i64,
    stock: i64,
    accepted: usize,
) -> anyhow::Result<()> {
    #[derive(diesel::QueryableByName)]
    struct Counts {
        #[diesel(sql_type = BigInt)]
        rows: i64,
        #[diesel(sql_type = BigInt)]
        buyers: i64,
    }
    let mut conn = AsyncPgConnection::establish(settings.postgres.url.expose_secret()).await?;
    let accepted = i64::try_from(accepted)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let c: Counts = diesel::sql_query(
            "SELECT count(*) AS rows, count(DISTINCT user_id) AS buyers FROM orders WHERE sale_id = $1",
        )
        .bind::<BigInt, _>(sale_id)
        .get_result(&mut conn)
        .await?;
        if c.rows >= accepted || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let status: Value = http
        .get(format!("{gateway}/api/v1/sales/{sale_id}"))
        .send()
        .await?
        .json()
        .await?;
    let remaining = status["remaining"].as_i64().context("remaining")?;
    println!(
        "  verify: rows {} (202s {accepted}), distinct buyers {}, remaining {remaining} (expected {})",
        counts.rows,
        counts.buyers,
        stock - accepted
    );
    ensure!(
        accepted <= stock,
        "OVERSOLD: {accepted} answers 202 for {stock} units"
    );
    ensure!(
        counts.rows == accepted,
        "rows {} != 202 answers {accepted}",
        counts.rows
    );
    ensure!(counts.buyers == counts.rows, "a buyer holds two orders");
    ensure!(
        remaining == stock - accepted,
        "remaining {remaining} != {}",
        stock - accepted
    );
    println!("  verification: clean");
    Ok(())
}
