//! `sse`: N clients follow a sale's live stock feed (`GET /api/v1/sales/{id}/events`) while a race sells it
//! out; for each client, the time from the last 202 to its `sold_out` event (p50/p99/max; 0 when it came
//! before the last 202 was answered), the same from the first SOLD_OUT answer (the feed's own delay), and the
//! gateway's resident memory with the streams open (`/proc/<pid>/status` VmRSS when `--gateway-pid` is given,
//! else the gateway's `process_resident_memory_bytes`). Target: every client sees `sold_out` within 1 s.

use crate::engine::Plan;
use crate::report::Report;
use crate::scenarios::{Context, verify};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Streams being opened at once.
const OPENING: usize = 256;
/// How long a client may take to see `sold_out` after the last 202 before it counts as missed.
const GIVE_UP: Duration = Duration::from_secs(10);

/// Raises this process's open-file limit to its hard limit: each stream is a connection.
fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit).ok()?;
    limit.current
}

/// The gateway's resident memory in bytes.
async fn gateway_rss(ctx: &Context, pid: Option<u32>) -> Option<f64> {
    if let Some(pid) = pid {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        return Some(kib * 1024.0);
    }
    let text = ctx
        .http
        .get(ctx.url("/metrics").ok()?)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse().ok())
}

/// One client: opens the stream while holding `permit` (released, and counted in `open`, once its first event
/// arrived), then reads until an event says `sold_out`; returns when it saw it.
async fn follow(
    http: reqwest::Client,
    url: reqwest::Url,
    open: Arc<AtomicUsize>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Option<Instant> {
    let mut permit = permit;
    let mut res = http.get(url).send().await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    let mut tail = String::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        tail.push_str(&String::from_utf8_lossy(&chunk));
        if tail.contains("data: ") && permit.take().is_some() {
            open.fetch_add(1, Ordering::AcqRel);
        }
        if tail.contains("\"status\":\"sold_out\"") {
            return Some(Instant::now());
        }
        // Keep only what a marker split across chunks could start in.
        let keep = tail.len().saturating_sub(32);
        let cut = (keep..=tail.len())
            .find(|i| tail.is_char_boundary(*i))
            .unwrap_or(0);
        tail.drain(..cut);
    }
    None
}

pub async fn sse(
    ctx: &Context,
    plan: Plan,
    streams: usize,
    buyers: usize,
    stock: i64,
    gateway_pid: Option<u32>,
) -> anyhow::Result<Report> {
    let fd_limit = raise_fd_limit();
    let sale = ctx.create_sale("loadtest sse", stock).await?;
    let url = ctx.url(&format!("/api/v1/sales/{sale}/events"))?;
    // Streams hold their connections; a client of their own keeps them apart from the race's pool.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let open = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(OPENING));
    let mut clients = JoinSet::new();
    let opening = Instant::now();
    for _ in 0..streams {
        let (http, url, open, gate) = (http.clone(), url.clone(), open.clone(), gate.clone());
        clients.spawn(async move {
            let permit = gate.acquire_owned().await.ok();
            follow(http, url, open, permit).await
        });
    }
    // Wait (at most a minute) until every stream has its first event.
    let connect_deadline = Instant::now() + Duration::from_secs(60);
    while open.load(Ordering::Acquire) < streams && Instant::now() < connect_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connected = open.load(Ordering::Acquire);
    let connect_s = opening.elapsed().as_secs_f64();
    let rss_open = gateway_rss(ctx, gateway_pid).await;

    let auths = ctx.mint(buyers)?;
    let m = ctx.fire(plan, ctx.reservations(sale)?, Some(auths)).await;
    let last_202 = m.last_success;
    // The sale is sold out in Redis before the last winner's 202 (which waits for its broker confirm), so the
    // feed's own latency shows against the first SOLD_OUT answer.
    let first_refusal = m.first_by_outcome.get("409 SOLD_OUT").copied();
    let mut delays = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut after_refusal = Histogram::<u64>::new_from(&delays);
    let mut missed = 0usize;
    let since = |at: Instant, from: Instant| {
        u64::try_from(at.saturating_duration_since(from).as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    };
    let collect = tokio::time::timeout(GIVE_UP, async {
        while let Some(seen) = clients.join_next().await {
            match (seen.ok().flatten(), last_202) {
                (Some(at), Some(last)) => {
                    delays.saturating_record(since(at, last));
                    if let Some(first) = first_refusal {
                        after_refusal.saturating_record(since(at, first));
                    }
                }
                _ => missed += 1,
            }
        }
    })
    .await;
    if collect.is_err() {
        missed += clients.len();
        clients.abort_all();
    }
    let rss_after = gateway_rss(ctx, gateway_pid).await;

    let mut report = Report::from_measured("sse", plan.concurrency, plan.rate, &m);
    let ms = |q: f64| delays.value_at_quantile(q) as f64 / 1000.0;
    report.figure("sale_id", sale);
    report.figure("streams", streams);
    report.figure("streams_connected", connected);
    report.figure("connect_s", connect_s);
    report.figure("sold_out_seen", delays.len());
    report.figure("sold_out_missed", missed);
    report.figure("sold_out_after_last_202_p50_ms", ms(0.5));
    report.figure("sold_out_after_last_202_p99_ms", ms(0.99));
    report.figure(
        "sold_out_after_last_202_max_ms",
        delays.max() as f64 / 1000.0,
    );
    if let Some(rss) = rss_open {
        report.figure("gateway_rss_streams_open_mib", rss / (1024.0 * 1024.0));
    }
    if let Some(rss) = rss_after {
        report.figure("gateway_rss_after_mib", rss / (1024.0 * 1024.0));
    }
    if let Some(limit) = fd_limit {
        report.figure("client_fd_limit", limit);
    }
    let (mut verification, _) = verify(ctx, sale, stock, m.count("202")).await?;
    let late = delays.max() > 1_000_000;
    if connected < streams || missed > 0 || late {
        verification.clean = false;
        verification.problems.push(format!(
            "{connected} of {streams} streams connected, {missed} never saw sold_out, max {:.0} ms after the last 202",
            delays.max() as f64 / 1000.0
        ));
    }
    verification.checked = format!(
        "{}; {} of {streams} clients saw sold_out, the slowest {:.0} ms after the last 202",
        verification.checked,
        delays.len(),
        delays.max() as f64 / 1000.0
    );
    report.verification = Some(verification);
    Ok(report)
}
