//! Waiting on a condition with a deadline.

use std::future::Future;
use std::time::Duration;

/// Polls `probe` until it returns `want`, failing the test with the last value seen after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut probe: F, want: T) -> T
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let got = probe().await;
        if got == want {
            return got;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("condition not met within {timeout:?}: wanted {want:?}, last saw {got:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
