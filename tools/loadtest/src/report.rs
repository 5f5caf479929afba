//! What a scenario measured, for people (lines) and machines (`--json`: one object).

use crate::engine::Measured;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

#[derive(Serialize)]
pub struct Verification {
    pub clean: bool,
    /// What was checked, with the figures.
    pub checked: String,
    /// Each broken promise (oversell, lost or duplicated orders, wrong remaining stock).
    pub problems: Vec<String>,
}

#[derive(Serialize)]
pub struct Report {
    pub scenario: &'static str,
    /// "closed" (C requests in flight) or "open" (`--rate`: latency from when each request was due).
    pub mode: &'static str,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub requests: u64,
    pub seconds: f64,
    pub req_per_s: f64,
    /// Milliseconds.
    pub latency_ms: Option<Latency>,
    pub outcomes: BTreeMap<String, u64>,
    /// The latency of each outcome alone, milliseconds.
    pub latency_by_outcome_ms: BTreeMap<String, Latency>,
    /// Scenario-specific figures (sale id, drain time, rows/s, memory, ...).
    pub figures: BTreeMap<&'static str, Value>,
    pub notes: Vec<String>,
    pub verification: Option<Verification>,
}

impl Report {
    pub fn from_measured(
        scenario: &'static str,
        concurrency: usize,
        rate: Option<f64>,
        m: &Measured,
    ) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let q = |quantile: f64| ms(m.latency.value_at_quantile(quantile));
        let of = |h: &hdrhistogram::Histogram<u64>| Latency {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        };
        Self {
            scenario,
            mode: if rate.is_some() { "open" } else { "closed" },
            concurrency,
            rate,
            requests: m.requests,
            seconds: m.elapsed.as_secs_f64(),
            req_per_s: m.rate(),
            latency_ms: (m.requests > 0).then(|| Latency {
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                p99_9: q(0.999),
                max: ms(m.latency.max()),
            }),
            outcomes: m.outcomes.clone(),
            latency_by_outcome_ms: m
                .latency_by_outcome
                .iter()
                .map(|(outcome, h)| (outcome.clone(), of(h)))
                .collect(),
            figures: m
                .client_cpu
                .map(|cpu| ("client_cpu_s", Value::from(cpu.as_secs_f64())))
                .into_iter()
                .collect(),
            notes: Vec::new(),
            verification: None,
        }
    }

    pub fn figure(&mut self, name: &'static str, value: impl Into<Value>) {
        self.figures.insert(name, value.into());
    }

    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string(self)?);
            return Ok(());
        }
        let loop_ = match self.rate {
            Some(rate) => format!(
                "open loop at {rate:.0} req/s, at most {} in flight",
                self.concurrency
            ),
            None => format!("closed loop, concurrency {}", self.concurrency),
        };
        println!("{}: {loop_}", self.scenario);
        println!(
            "  {:.0} req/s: {} requests in {:.3} s",
            self.req_per_s, self.requests, self.seconds
        );
        if let Some(l) = &self.latency_ms {
            println!(
                "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                l.p50, l.p90, l.p99, l.p99_9, l.max
            );
        }
        for (outcome, n) in &self.outcomes {
            match self.latency_by_outcome_ms.get(outcome) {
                Some(l) => println!(
                    "  {outcome}: {n} (p50 {:.2}  p99 {:.2}  max {:.2} ms)",
                    l.p50, l.p99, l.max
                ),
                None => println!("  {outcome}: {n}"),
            }
        }
        for (name, value) in &self.figures {
            println!("  {name}: {value}");
        }
        for note in &self.notes {
            println!("  note: {note}");
        }
        if let Some(v) = &self.verification {
            println!("  verify: {}", v.checked);
            if v.clean {
                println!("  verification: clean");
            }
            for p in &v.problems {
                println!("  VERIFICATION FAILED: {p}");
            }
        }
        Ok(())
    }

    /// Non-zero exit when verification found a broken promise.
    pub fn verdict(&self) -> anyhow::Result<()> {
        match &self.verification {
            Some(v) if !v.clean => anyhow::bail!("verification failed: {}", v.problems.join("; ")),
            _ => Ok(()),
        }
    }
}
