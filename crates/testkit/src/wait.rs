//! Waiting on a condition with a deadline.

use std::future::Future;
use std::time::Duration;

/// How long past the deadline one probe may take before the test fails as hung: a probe stuck on a dependency
/// (a broker handshake, a connection pool) must fail here with a message, not at the runner's timeout.
const PROBE_GRACE: Duration = Duration::from_secs(15);

/// Polls `probe` until it returns `want`, failing the test with the last value seen after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut probe: F, want: T) -> T
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let Ok(got) = tokio::time::timeout_at(deadline + PROBE_GRACE, probe()).await else {
            panic!("a probe did not answer within {timeout:?} + {PROBE_GRACE:?}: wanted {want:?}");
        };
        if got == want {
            return got;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("condition not met within {timeout:?}: wanted {want:?}, last saw {got:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
