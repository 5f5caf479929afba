//! Real local clusters for tests that need more than one node: a Redis Cluster of 3 primaries and 3 replicas,
//! a RabbitMQ cluster of three nodes. Each takes ports of its own (random, bind-checked), so tests can run
//! them in parallel with each other and with the shared single-node services, and each is torn down when
//! dropped. Waiting is on conditions with a deadline, never on sleeps.

pub mod rabbit;
pub mod redis;
mod redis_nodes;

// `self::`: the module `redis` shadows the crate of the same name only inside this file.
pub use self::rabbit::RabbitCluster;
pub use self::redis::{RedisCluster, RedisNode, Role};

use rand::Rng;
use std::future::Future;
use std::process::Stdio;
use std::time::Duration;

/// Whether nothing listens on 127.0.0.1:`port` (nor on the wildcard address, which makes the bind fail too).
pub(crate) fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A random port in `range` that is free, not in `taken`, and whose companions (`port + offset` for each
/// offset, e.g. Redis's cluster bus at +10000) are free too. Random rather than sequential so that test
/// processes started at the same time do not race for the same ports; the caller still retries a node whose
/// server fails to bind, since another process may take a port between this check and the server's bind.
pub(crate) fn free_port(range: std::ops::Range<u16>, offsets: &[u16], taken: &[u16]) -> u16 {
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(range.clone());
        let all: Vec<u16> = std::iter::once(port)
            .chain(offsets.iter().map(|o| port.saturating_add(*o)))
            .collect();
        if all.iter().all(|p| !taken.contains(p) && port_is_free(*p)) {
            return port;
        }
    }
    panic!("no free port in {range:?} (with offsets {offsets:?}) after 1000 tries");
}

/// Polls `probe` every `every` until it returns `Ok`, failing the test after `timeout` with what `what` was
/// waiting for and the last reason the probe gave.
pub(crate) async fn until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(why) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not within {timeout:?}; last: {why}")
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// The first `Ok` of `f` over `items` (nodes to ask, say), or the last error.
pub(crate) async fn first_ok<I, T, F, Fut>(items: Vec<I>, mut f: F) -> Result<T, String>
where
    F: FnMut(I) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut last = String::from("nothing to ask");
    for item in items {
        match f(item).await {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Runs `cmd` to its end (killed after `timeout`): its stdout, or an error that tells all it printed.
pub(crate) async fn output(
    mut cmd: tokio::process::Command,
    timeout: Duration,
) -> Result<String, String> {
    let what = format!("{:?}", cmd.as_std());
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(format!("cannot run {what}: {e}")),
        Err(_) => return Err(format!("{what}: not done within {timeout:?}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(format!("{what}: {}: {stdout}{stderr}", out.status))
}

/// The last `lines` lines of a log file, for a failure message.
pub(crate) fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("({path:?}: {e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
