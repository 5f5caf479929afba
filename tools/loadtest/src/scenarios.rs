//! The scenarios that go through the gateway, and the verification in PostgreSQL.

use crate::buyers;
use crate::engine::{self, Measured, Plan, Target, Until};
use crate::report::{Report, Verification};
use anyhow::Context as _;
use chrono::{Duration as ChronoDuration, Utc};
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use flashsale_platform::Settings;
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Every sale the load tool creates has this payment window, except `expiry`'s (one expiry wait queue each to
/// clean up).
pub const PAYMENT_WINDOW_SECS: u32 = 3600;
/// The payment window of the `expiry` scenario's sale.
pub const EXPIRY_WINDOW_SECS: u32 = 5;

pub struct Context {
    pub gateway: reqwest::Url,
    pub http: reqwest::Client,
    pub settings: Settings,
    /// Tells this run's buyers and queues apart from earlier runs'.
    pub run: String,
    quiet: bool,
}

impl Context {
    pub fn new(gateway: &str, settings: Settings, json: bool) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(usize::MAX)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            gateway: reqwest::Url::parse(gateway).context("--gateway is not a URL")?,
            http,
            settings,
            run: Utc::now().timestamp_millis().to_string(),
            quiet: json || !std::io::stderr().is_terminal(),
        })
    }

    pub fn url(&self, path: &str) -> anyhow::Result<reqwest::Url> {
        Ok(self.gateway.join(path)?)
    }

    pub fn progress(&self, until: Until) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let (bar, template) = match until {
            Until::Requests(n) => (
                ProgressBar::new(n as u64),
                "{bar:40} {pos}/{len} requests, {per_sec}, {elapsed}",
            ),
            Until::Elapsed(_) => (
                ProgressBar::new_spinner(),
                "{spinner} {pos} requests, {per_sec}, {elapsed}",
            ),
        };
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// Creates a sale that is open now, for an hour, through the admin API.
    pub async fn create_sale(&self, name: &str, stock: i64) -> anyhow::Result<i64> {
        self.create_sale_with_window(name, stock, PAYMENT_WINDOW_SECS)
            .await
    }

    pub async fn create_sale_with_window(
        &self,
        name: &str,
        stock: i64,
        payment_window_secs: u32,
    ) -> anyhow::Result<i64> {
        let now = Utc::now();
        let sale: Value = self
            .http
            .post(self.url("/api/v1/admin/sales")?)
            .bearer_auth(self.settings.auth.admin_token.expose_secret())
            .json(&json!({
                "product_name": name,
                "price": "1.00",
                "stock": stock,
                "per_user_limit": 1,
                "starts_at": now - ChronoDuration::minutes(1),
                "ends_at": now + ChronoDuration::hours(1),
                "payment_window_secs": payment_window_secs,
            }))
            .send()
            .await
            .context("creating the sale (is the gateway running?)")?
            .error_for_status()?
            .json()
            .await?;
        sale["id"]
            .as_i64()
            .context("the gateway answered a sale without an id")
    }

    /// Tokens of `count` distinct buyers of this run (`lt-<run>-<i>`).
    pub fn mint(&self, count: usize) -> anyhow::Result<Arc<Vec<reqwest::header::HeaderValue>>> {
        self.mint_tagged("", count)
    }

    /// Tokens of buyers no other group of this run shares (`lt-<run><tag>-<i>`).
    fn mint_tagged(
        &self,
        tag: &str,
        count: usize,
    ) -> anyhow::Result<Arc<Vec<reqwest::header::HeaderValue>>> {
        let minted = buyers::mint(
            self.settings.auth.jwt_secret.expose_secret(),
            &self.settings.auth.jwt_audience,
            &format!("{}{tag}", self.run),
            count,
            Utc::now(),
        )?;
        Ok(Arc::new(minted))
    }

    pub async fn fire(
        &self,
        plan: Plan,
        target: Target,
        auths: Option<Arc<Vec<reqwest::header::HeaderValue>>>,
    ) -> Measured {
        let progress = self.progress(plan.until);
        let measured = engine::run(&self.http, plan, target, auths, &progress).await;
        progress.finish_and_clear();
        measured
    }

    /// One counter (`remaining`, `reserved`, `sold`) of the sale, as the gateway shows it.
    pub async fn sale_counter(&self, sale: i64, counter: &str) -> anyhow::Result<i64> {
        let view: Value = self
            .http
            .get(self.url(&format!("/api/v1/sales/{sale}"))?)
            .send()
            .await?
            .json()
            .await?;
        view[counter]
            .as_i64()
            .with_context(|| format!("the sale has no {counter}"))
    }

    /// `n` distinct buyers reserve one unit each, `concurrency` at a time (closed loop).
    pub async fn reserve_each(
        &self,
        sale: i64,
        concurrency: usize,
        n: usize,
    ) -> anyhow::Result<Measured> {
        let plan = Plan {
            concurrency,
            rate: None,
            until: Until::Requests(n),
        };
        Ok(self
            .fire(plan, self.reservations(sale)?, Some(self.mint(n)?))
            .await)
    }

    pub fn reservations(&self, sale: i64) -> anyhow::Result<Target> {
        Ok(Target {
            url: self.url(&format!("/api/v1/sales/{sale}/reservations"))?,
            post: true,
        })
    }
}

/// `/healthz` under `plan`: the ceiling (timed) or a burst (a number of requests).
pub async fn healthz(ctx: &Context, name: &'static str, plan: Plan) -> anyhow::Result<Report> {
    let target = Target {
        url: ctx.url("/healthz")?,
        post: false,
    };
    let m = ctx.fire(plan, target, None).await;
    Ok(Report::from_measured(name, plan.concurrency, plan.rate, &m))
}

pub async fn race(ctx: &Context, plan: Plan, buyers: usize, stock: i64) -> anyhow::Result<Report> {
    let sale = ctx.create_sale("loadtest race", stock).await?;
    let auths = ctx.mint(buyers)?;
    let m = ctx.fire(plan, ctx.reservations(sale)?, Some(auths)).await;
    let mut report = Report::from_measured("race", plan.concurrency, plan.rate, &m);
    report.figure("sale_id", sale);
    report.figure("buyers", buyers);
    report.figure("stock", stock);
    let (verification, _) = verify(ctx, sale, stock, m.count("202")).await?;
    report.verification = Some(verification);
    Ok(report)
}

pub async fn flood(ctx: &Context, plan: Plan, buyers: usize) -> anyhow::Result<Report> {
    let sale = ctx.create_sale("loadtest flood", 1).await?;
    // A buyer of its own takes the only unit before the clock starts; everyone else meets SOLD_OUT.
    let sweeper = ctx.mint_tagged("-sweeper", 1)?;
    let auths = ctx.mint(buyers)?;
    let first = ctx
        .http
        .post(ctx.reservations(sale)?.url)
        .header(reqwest::header::AUTHORIZATION, &sweeper[0])
        .send()
        .await?;
    anyhow::ensure!(
        first.status().as_u16() == 202,
        "the unit of the flood sale was not reserved: {}",
        first.status()
    );
    let m = ctx.fire(plan, ctx.reservations(sale)?, Some(auths)).await;
    let mut report = Report::from_measured("flood", plan.concurrency, plan.rate, &m);
    report.figure("sale_id", sale);
    ran_out(&mut report, plan, &m, buyers);
    let (mut verification, _) = verify(ctx, sale, 1, m.count("202") + 1).await?;
    let others = m.requests - m.count("409 SOLD_OUT");
    if others > 0 {
        verification
            .problems
            .push(format!("{others} answers other than 409 SOLD_OUT"));
        verification.clean = false;
    }
    report.verification = Some(verification);
    Ok(report)
}

pub async fn sustain(ctx: &Context, plan: Plan, buyers: usize) -> anyhow::Result<Report> {
    // The largest sale the admin API accepts: every request of the run reserves.
    let stock = 10_000_000;
    let sale = ctx.create_sale("loadtest sustain", stock).await?;
    let auths = ctx.mint(buyers)?;
    let memory = MemorySampler::start(ctx)?;
    let m = ctx.fire(plan, ctx.reservations(sale)?, Some(auths)).await;
    let peak_rss = memory.stop().await;
    let accepted = m.count("202");
    let mut report = Report::from_measured("sustain", plan.concurrency, plan.rate, &m);
    report.figure("sale_id", sale);
    ran_out(&mut report, plan, &m, buyers);
    let (verification, drained) = verify(ctx, sale, stock, accepted).await?;
    if let (Some(last), Some(drained)) = (m.last_success, drained) {
        let lag = drained.saturating_duration_since(last);
        report.figure("last_row_after_last_202_ms", lag.as_secs_f64() * 1000.0);
        let span = drained.duration_since(m.started).as_secs_f64();
        report.figure("order_writer_rows_per_s", accepted as f64 / span);
    }
    if let Some(bytes) = peak_rss {
        report.figure("gateway_peak_rss_mib", bytes / (1024.0 * 1024.0));
    }
    report.verification = Some(verification);
    Ok(report)
}

pub(crate) fn ran_out(report: &mut Report, plan: Plan, m: &Measured, buyers: usize) {
    if let Until::Elapsed(duration) = plan.until
        && m.requests as usize >= buyers
        && m.elapsed < duration
    {
        report.notes.push(format!(
            "all {buyers} minted buyers were used before the duration ended; pass --buyers for a longer run"
        ));
    }
}

/// Waits (at most a minute) for order-writer to write every accepted reservation of the sale, then checks rows,
/// buyers and remaining stock. Also returns when the last row was seen.
pub async fn verify(
    ctx: &Context,
    sale: i64,
    stock: i64,
    accepted: u64,
) -> anyhow::Result<(Verification, Option<Instant>)> {
    #[derive(diesel::QueryableByName)]
    struct Counts {
        #[diesel(sql_type = BigInt)]
        rows: i64,
        #[diesel(sql_type = BigInt)]
        buyers: i64,
    }
    let mut conn = AsyncPgConnection::establish(ctx.settings.postgres.url.expose_secret()).await?;
    let accepted = i64::try_from(accepted)?;
    let drained = wait_for_held(&mut conn, sale, accepted).await?;
    let counts: Counts = diesel::sql_query(
        "SELECT count(*) AS rows, count(DISTINCT user_id) AS buyers FROM orders WHERE sale_id = $1",
    )
    .bind::<BigInt, _>(sale)
    .get_result(&mut conn)
    .await?;
    let remaining = ctx.sale_counter(sale, "remaining").await?;
    let mut problems = Vec::new();
    if accepted > stock {
        problems.push(format!(
            "OVERSOLD: {accepted} answers 202 for {stock} units"
        ));
    }
    if counts.rows != accepted {
        problems.push(format!("{} rows for {accepted} answers 202", counts.rows));
    }
    if counts.buyers != counts.rows {
        problems.push(format!(
            "{} rows but {} distinct buyers: a buyer holds two orders",
            counts.rows, counts.buyers
        ));
    }
    if remaining != stock - accepted {
        problems.push(format!(
            "remaining {remaining}, expected {}",
            stock - accepted
        ));
    }
    let checked = format!(
        "rows {} (202s {accepted}), distinct buyers {}, remaining {remaining} (expected {})",
        counts.rows,
        counts.buyers,
        stock - accepted
    );
    Ok((
        Verification {
            clean: problems.is_empty(),
            checked,
            problems,
        },
        drained,
    ))
}

/// Waits until order-writer has written `units` held units of the sale (`sales.held`, updated in each batch's
/// transaction: a primary-key read, so polling it every 2 ms costs PostgreSQL nothing, unlike counting rows).
/// Gives up after five seconds without progress. Returns when the target was seen.
pub async fn wait_for_held(
    conn: &mut AsyncPgConnection,
    sale: i64,
    units: i64,
) -> anyhow::Result<Option<Instant>> {
    let mut last = (-1, Instant::now());
    loop {
        let held: i64 = diesel::select(diesel::dsl::sql::<BigInt>(&format!(
            "(SELECT held FROM sales WHERE id = {sale})"
        )))
        .get_result(conn)
        .await?;
        let now = Instant::now();
        if held >= units {
            return Ok(Some(now));
        }
        if held != last.0 {
            last = (held, now);
        } else if now.duration_since(last.1) > Duration::from_secs(5) {
            return Ok(None);
        }
        // Every poll is a query on the database being measured: at 2 ms they took 4% of its time in a
        // writer drain. 10 ms costs at most 10 ms of a drain of seconds.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Samples the gateway's `process_resident_memory_bytes` from `/metrics` while a run goes on.
struct MemorySampler {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Option<f64>>,
}

impl MemorySampler {
    fn start(ctx: &Context) -> anyhow::Result<Self> {
        let url = ctx.url("/metrics")?;
        let http = ctx.http.clone();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak: Option<f64> = None;
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = token.cancelled() => return peak,
                    _ = tick.tick() => {}
                }
                let Ok(res) = http.get(url.clone()).send().await else {
                    continue;
                };
                let Ok(text) = res.text().await else { continue };
                let rss = text
                    .lines()
                    .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
                    .and_then(|v| v.trim().parse::<f64>().ok());
                if let Some(rss) = rss {
                    peak = Some(peak.map_or(rss, |p| p.max(rss)));
                }
            }
        });
        Ok(Self { stop, task })
    }

    async fn stop(self) -> Option<f64> {
        self.stop.cancel();
        self.task.await.ok().flatten()
    }
}
