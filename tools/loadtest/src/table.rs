//! `table`: the one table `make bench` prints, from the JSON reports of one run, with the ratios and targets of
//! docs/performance.md.

use anyhow::Context as _;
use serde_json::Value;
use std::path::Path;

fn load(dir: &Path, name: &str) -> anyhow::Result<Value> {
    let path = dir.join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn num(v: &Value, path: &[&str]) -> f64 {
    path.iter()
        .try_fold(v, |v, p| v.get(*p))
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN)
}

fn check(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT MET" }
}

fn clean(v: &Value) -> &'static str {
    match v["verification"]["clean"].as_bool() {
        Some(true) => "clean",
        Some(false) => "FAILED",
        None => "-",
    }
}

pub fn print(dir: &Path, evalsha_per_s: f64) -> anyhow::Result<()> {
    let ceiling = load(dir, "ceiling")?;
    let race = load(dir, "race")?;
    let flood = load(dir, "flood")?;
    let sustain = load(dir, "sustain")?;
    let sustain_open = load(dir, "sustain-open")?;
    let writer = load(dir, "writer")?;
    // The lifecycle scenarios need all four services; a run without them prints the rest.
    let expiry = load(dir, "expiry").ok();
    let pay = load(dir, "pay").ok();
    let sse = load(dir, "sse").ok();
    // The race's yardstick: a burst of the same shape against /healthz.
    let burst = load(dir, "burst").ok();
    let shed = load(dir, "shed").ok();
    let rps = |v: &Value| num(v, &["req_per_s"]);
    let p = |v: &Value, q: &str| num(v, &["latency_ms", q]);

    println!(
        "{:<16} {:>10} {:>8} {:>8} {:>8} {:>8}  {:<8}",
        "scenario", "req/s", "p50 ms", "p99 ms", "p99.9", "max ms", "verify"
    );
    let mut rows = vec![("ceiling", &ceiling)];
    if let Some(burst) = &burst {
        rows.push(("burst /healthz", burst));
    }
    let mut refused = vec![("race", &race), ("flood", &flood)];
    if let Some(shed) = &shed {
        refused.push(("shed (503)", shed));
    }
    for (name, v) in rows
        .into_iter()
        .chain(refused)
        .chain([("sustain", &sustain), ("sustain (open)", &sustain_open)])
    {
        println!(
            "{:<16} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {:<8}",
            name,
            rps(v),
            p(v, "p50"),
            p(v, "p99"),
            p(v, "p99_9"),
            p(v, "max"),
            clean(v)
        );
    }
    println!(
        "{:<16} {:>10.0} {:>8} {:>8} {:>8} {:>8}  {:<8}",
        "writer (rows/s)",
        rps(&writer),
        "",
        "",
        "",
        "",
        clean(&writer)
    );
    if let Some(pay) = &pay {
        println!(
            "{:<16} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {:<8}",
            "pay (webhooks)",
            rps(pay),
            p(pay, "p50"),
            p(pay, "p99"),
            p(pay, "p99_9"),
            p(pay, "max"),
            clean(pay)
        );
    }
    println!("{:<16} {:>10.0}", "redis EVALSHA", evalsha_per_s);
    println!();

    let flood_ratio = rps(&flood) / rps(&ceiling);
    let sustain_ratio = rps(&sustain) / evalsha_per_s;
    let lag = num(&sustain, &["figures", "last_row_after_last_202_ms"]);
    let rss = num(&sustain, &["figures", "gateway_peak_rss_mib"]);
    let targets = [
        (
            format!(
                "race ≥ 25,000 req/s, p99 ≤ 50 ms, clean: {:.0} req/s, p99 {:.1} ms, {}",
                rps(&race),
                p(&race, "p99"),
                clean(&race)
            ),
            rps(&race) >= 25_000.0 && p(&race, "p99") <= 50.0 && clean(&race) == "clean",
        ),
        (
            format!("flood ≥ 85% of ceiling: {:.0}%", flood_ratio * 100.0),
            flood_ratio >= 0.85 && clean(&flood) == "clean",
        ),
        (
            format!(
                "sustain ≥ 50% of redis EVALSHA: {:.0}%",
                sustain_ratio * 100.0
            ),
            sustain_ratio >= 0.5,
        ),
        (
            format!(
                "sustain open-loop p99 ≤ 20 ms at half the closed-loop rate: {:.1} ms at {:.0} req/s (closed loop \
                 {:.1} ms)",
                p(&sustain_open, "p99"),
                num(&sustain_open, &["rate"]),
                p(&sustain, "p99")
            ),
            p(&sustain_open, "p99") <= 20.0,
        ),
        (
            format!("last row ≤ 1 s after the last 202: {lag:.0} ms"),
            lag <= 1000.0,
        ),
        (
            format!(
                "order-writer ≥ 50,000 rows/s (backlog): {:.0}",
                rps(&writer)
            ),
            rps(&writer) >= 50_000.0 && clean(&writer) == "clean",
        ),
        (
            format!("gateway RSS ≤ 50 MiB under sustain: {rss:.1} MiB"),
            rss <= 50.0,
        ),
    ];
    let shed_target = shed.as_ref().map(|s| {
        let ratio = rps(s) / rps(&ceiling);
        (
            format!(
                "shed (refused at admission) ≥ 85% of ceiling: {:.0}%",
                ratio * 100.0
            ),
            ratio >= 0.85 && clean(s) == "clean",
        )
    });
    let edge = burst.as_ref().map(|b| {
        let ratio = rps(&race) / rps(b);
        let p99_gap = p(&race, "p99") - p(b, "p99");
        (
            format!(
                "race ≥ 75% of a 7,000-request burst on /healthz, p99 within 20 ms of it: {:.0}%, p99 {:+.1} ms",
                ratio * 100.0,
                p99_gap
            ),
            ratio >= 0.75 && p99_gap <= 20.0 && clean(&race) == "clean",
        )
    });
    let lifecycle = [
        expiry.as_ref().map(|e| {
            let lag = |q: &str| num(e, &["figures", q]);
            (
                format!(
                    "expiry release lag p99 ≤ 1 s ({:.0} expirations): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms, {}",
                    num(e, &["figures", "expired_notifications"]),
                    lag("release_lag_p50_ms"),
                    lag("release_lag_p99_ms"),
                    lag("release_lag_max_ms"),
                    clean(e)
                ),
                lag("release_lag_p99_ms") <= 1000.0 && clean(e) == "clean",
            )
        }),
        sse.as_ref().map(|v| {
            let f = |q: &str| num(v, &["figures", q]);
            (
                format!(
                    "every client sees sold_out within 1 s ({:.0} streams): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms \
                     after the last 202, gateway RSS {:.0} MiB with the streams open, {}",
                    f("streams_connected"),
                    f("sold_out_after_last_202_p50_ms"),
                    f("sold_out_after_last_202_p99_ms"),
                    f("sold_out_after_last_202_max_ms"),
                    f("gateway_rss_streams_open_mib"),
                    clean(v)
                ),
                f("sold_out_after_last_202_max_ms") <= 1000.0 && clean(v) == "clean",
            )
        }),
        pay.as_ref().map(|v| {
            (
                format!(
                    "pay ≥ 2,000 webhooks/s, priorities exactly 1..N: {:.0}/s, {}",
                    rps(v),
                    clean(v)
                ),
                rps(v) >= 2000.0 && clean(v) == "clean",
            )
        }),
    ];
    for (text, ok) in targets
        .into_iter()
        .chain(edge)
        .chain(shed_target)
        .chain(lifecycle.into_iter().flatten())
    {
        println!("  [{}] {text}", check(ok));
    }
    println!();
    broker_messages(dir);
    cpu_per_request(
        dir,
        &[
            ("ceiling", &ceiling),
            ("flood", &flood),
            ("sustain", &sustain),
        ],
    );
    Ok(())
}

/// Group commit's effect: RabbitMQ messages the gateway published per reservation during sustain, from
/// `sustain.amqp` (written by scripts/bench.sh from the gateway's /metrics).
fn broker_messages(dir: &Path) {
    let Ok(text) = std::fs::read_to_string(dir.join("sustain.amqp")) else {
        return;
    };
    let value = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (messages, reservations) = (value("messages"), value("reservations"));
    if reservations > 0.0 {
        println!(
            "sustain: {reservations:.0} reservations in {messages:.0} broker messages ({:.3} per reservation, \
             {:.1} reservations per message)\n",
            messages / reservations,
            reservations / messages.max(1.0)
        );
    }
}

/// Where the machine's CPU went: microseconds of CPU per request, by process, from `<scenario>.cpu` (written
/// by scripts/bench.sh: "process seconds" a line). Missing files are skipped.
fn cpu_per_request(dir: &Path, runs: &[(&str, &Value)]) {
    const PROCESSES: [(&str, &str); 8] = [
        ("loadtest", "client"),
        ("gateway", "gateway"),
        ("redis-server", "redis"),
        ("beam.smp", "rabbitmq"),
        ("postgres", "postgres"),
        ("order-writer", "writer"),
        ("payment", "payment"),
        ("expiry", "expiry"),
    ];
    print!("{:<16}", "CPU µs/request");
    for (_, label) in PROCESSES {
        print!(" {label:>9}");
    }
    println!(" {:>9}", "total");
    for (name, report) in runs {
        let Ok(text) = std::fs::read_to_string(dir.join(format!("{name}.cpu"))) else {
            continue;
        };
        let requests = num(report, &["requests"]);
        let seconds = |process: &str| {
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .filter(|(p, _)| *p == process)
                .filter_map(|(_, s)| s.trim().parse::<f64>().ok())
                .sum::<f64>()
        };
        print!("{name:<16}");
        let mut total = 0.0;
        for (process, _) in PROCESSES {
            let micros = seconds(process) * 1e6 / requests;
            total += micros;
            print!(" {micros:>9.1}");
        }
        println!(" {total:>9.1}");
    }
}
