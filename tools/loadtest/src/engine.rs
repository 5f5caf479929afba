//! Fires requests and records what came back: closed loop (C requests in flight, each sent when the previous one
//! on its connection is answered) or open loop (`--rate R`: requests are due on a fixed schedule and latency is
//! measured from when each was due, so a slow server cannot hide its queueing: no coordinated omission).

use crate::recorder::{Answer, Recorder};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use reqwest::header::HeaderValue;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// When a run ends: after a number of requests, or after a duration.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    Requests(usize),
    Elapsed(Duration),
}

#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Requests in flight at most (and connections).
    pub concurrency: usize,
    /// Open loop at this many requests per second; `None` is closed loop.
    pub rate: Option<f64>,
    pub until: Until,
}

/// What every request of a run asks: a POST without a body (a reservation) or a GET.
#[derive(Clone)]
pub struct Target {
    pub url: reqwest::Url,
    pub post: bool,
}

/// What a run measured.
pub struct Measured {
    pub elapsed: Duration,
    pub requests: u64,
    /// Microseconds, from send (closed loop) or from when the request was due (open loop).
    pub latency: Histogram<u64>,
    /// `"202"`, `"409 SOLD_OUT"`, `"transport error"`, ...
    pub outcomes: BTreeMap<String, u64>,
    /// The latency of each outcome alone (a race's few winners hide in the overall tail).
    pub latency_by_outcome: BTreeMap<String, Histogram<u64>>,
    /// When the last 2xx answer arrived.
    pub last_success: Option<Instant>,
    /// When the first answer of each outcome arrived (the first `409 SOLD_OUT` tells when a sale sold out).
    pub first_by_outcome: BTreeMap<String, Instant>,
    /// When the first request was due.
    pub started: Instant,
    /// CPU time the client itself spent on the run (Linux; the runtime is single-threaded, so this is the
    /// thread's time), to tell the machine's budget apart from what the server used.
    pub client_cpu: Option<Duration>,
}

/// CPU time of the calling thread so far, from `/proc/thread-self/schedstat` (nanoseconds on CPU).
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

impl Measured {
    pub fn count(&self, outcome: &str) -> u64 {
        self.outcomes.get(outcome).copied().unwrap_or(0)
    }

    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

async fn send(http: &reqwest::Client, target: &Target, auth: Option<&HeaderValue>) -> Answer {
    let mut req = if target.post {
        http.post(target.url.clone())
    } else {
        http.get(target.url.clone())
    };
    if let Some(auth) = auth {
        req = req.header(reqwest::header::AUTHORIZATION, auth);
    }
    let res = match req.send().await {
        Ok(res) => res,
        Err(e) => return transport_error(&e),
    };
    let status = res.status();
    // The body is read to the end either way, so the connection goes back to the pool.
    match res.bytes().await {
        Ok(body) => Answer::Http(status, body),
        Err(e) => transport_error(&e),
    }
}

fn transport_error(e: &reqwest::Error) -> Answer {
    Answer::Transport(if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "other"
    })
}

/// Runs the plan. Request `i` carries `auths[i]` when `auths` is given (one buyer per request); a run that needs
/// more requests than there are buyers stops when they are used up.
pub async fn run(
    http: &reqwest::Client,
    plan: Plan,
    target: Target,
    auths: Option<Arc<Vec<HeaderValue>>>,
    progress: &ProgressBar,
) -> Measured {
    let limit = match (plan.until, &auths) {
        (Until::Requests(n), Some(a)) => n.min(a.len()),
        (Until::Requests(n), None) => n,
        (Until::Elapsed(_), Some(a)) => a.len(),
        (Until::Elapsed(_), None) => usize::MAX,
    };
    let deadline = match plan.until {
        Until::Elapsed(d) => Some(d),
        Until::Requests(_) => None,
    };
    warm_up(http, &target.url, plan.concurrency).await;
    let recorder = Arc::new(Mutex::new(Recorder::new()));
    let cpu_before = thread_cpu();
    let started = Instant::now();
    let shared = Shared {
        http: http.clone(),
        target,
        auths,
        recorder: Arc::clone(&recorder),
        progress: progress.clone(),
    };
    let sent = match plan.rate {
        None => closed_loop(shared, plan.concurrency, limit, deadline, started).await,
        Some(rate) => open_loop(shared, plan.concurrency, rate, limit, deadline, started).await,
    };
    let elapsed = started.elapsed();
    let client_cpu = thread_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let recorder = Arc::into_inner(recorder)
        .expect("every request task has finished")
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (outcomes, latency_by_outcome) = recorder.outcomes();
    let first_by_outcome = recorder.first_seen();
    Measured {
        elapsed,
        requests: sent as u64,
        latency: recorder.latency,
        outcomes,
        latency_by_outcome,
        last_success: recorder.last_success,
        first_by_outcome,
        started,
        client_cpu,
    }
}

/// Opens the run's connections before the clock starts (one `/healthz` each, all at once, so the pool holds
/// `concurrency` idle keep-alive connections), as wrk does: the figures measure requests, not TCP handshakes.
async fn warm_up(http: &reqwest::Client, url: &reqwest::Url, concurrency: usize) {
    let mut healthz = url.clone();
    healthz.set_path("/healthz");
    healthz.set_query(None);
    let mut set = JoinSet::new();
    for _ in 0..concurrency {
        let req = http.get(healthz.clone()).send();
        set.spawn(async move {
            if let Ok(res) = req.await {
                let _ = res.bytes().await;
            }
        });
    }
    set.join_all().await;
}

#[derive(Clone)]
struct Shared {
    http: reqwest::Client,
    target: Target,
    auths: Option<Arc<Vec<HeaderValue>>>,
    recorder: Arc<Mutex<Recorder>>,
    progress: ProgressBar,
}

impl Shared {
    async fn fire(&self, i: usize, since: Instant) {
        let auth = self.auths.as_ref().map(|a| &a[i]);
        let outcome = send(&self.http, &self.target, auth).await;
        let took = since.elapsed();
        self.recorder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(took, outcome);
        self.progress.inc(1);
    }
}

fn past(deadline: Option<Duration>, started: Instant) -> bool {
    deadline.is_some_and(|d| started.elapsed() >= d)
}

async fn closed_loop(
    shared: Shared,
    concurrency: usize,
    limit: usize,
    deadline: Option<Duration>,
    started: Instant,
) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let shared = shared.clone();
        let next = Arc::clone(&next);
        workers.spawn(async move {
            let mut sent = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit || past(deadline, started) {
                    return sent;
                }
                shared.fire(i, Instant::now()).await;
                sent += 1;
            }
        });
    }
    workers.join_all().await.into_iter().sum()
}

async fn open_loop(
    shared: Shared,
    concurrency: usize,
    rate: f64,
    limit: usize,
    deadline: Option<Duration>,
    started: Instant,
) -> usize {
    let connections = Arc::new(Semaphore::new(concurrency));
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut requests = JoinSet::new();
    let mut sent = 0;
    while sent < limit {
        let due = started + period.mul_f64(sent as f64);
        if deadline.is_some_and(|d| due >= started + d) {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        // Waiting for a free connection is part of the latency: the request was due at `due`.
        let Ok(permit) = Arc::clone(&connections).acquire_owned().await else {
            break;
        };
        let shared = shared.clone();
        let i = sent;
        requests.spawn(async move {
            shared.fire(i, due).await;
            drop(permit);
        });
        sent += 1;
        // Reap finished tasks as we go, so the set stays small over a long run.
        while requests.try_join_next().is_some() {}
    }
    requests.join_all().await;
    sent
}
