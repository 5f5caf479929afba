//! A steady burst of buyers spread over several gateways, each press retried with its own Idempotency-Key
//! after a 503 (as a client should), while a fault strikes once enough of them were answered.

use flashsale_domain::SaleId;
use flashsale_testkit::{GatewayHandle, TestEnv};
use futures_util::stream::{self, StreamExt};
use reqwest::StatusCode;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// One press per buyer (`<tag>-<first>` .. `<tag>-<first + buyers - 1>`), round-robin over `gateways`, `width`
/// at a time, no retries: the replies in the order they came.
pub async fn race(
    env: &TestEnv,
    gateways: &[GatewayHandle],
    sale: SaleId,
    tag: &str,
    buyers: std::ops::Range<usize>,
    width: usize,
) -> Vec<flashsale_testkit::services::Reply> {
    let tokens: Vec<String> = buyers.map(|i| env.token(&format!("{tag}-{i}"))).collect();
    stream::iter(
        tokens
            .iter()
            .enumerate()
            .map(|(i, t)| gateways[i % gateways.len()].reserve(sale, t)),
    )
    .buffer_unordered(width)
    .collect()
    .await
}

/// A press's last answer: status, order id (for a 202) and when it came.
pub type Answer = (StatusCode, String, Instant);

/// What the burst saw.
pub struct Outcome {
    pub answers: Vec<Answer>,
    /// First tries answered 503 (then retried).
    pub unavailable: usize,
}

impl Outcome {
    pub fn accepted(&self) -> Vec<&Answer> {
        self.answers
            .iter()
            .filter(|(s, _, _)| *s == StatusCode::ACCEPTED)
            .collect()
    }

    /// Whether every press ended in 202 or 409 (nothing left at 503 after its retries).
    pub fn all_settled(&self) -> bool {
        self.answers
            .iter()
            .all(|(s, _, _)| [StatusCode::ACCEPTED, StatusCode::CONFLICT].contains(s))
    }
}

/// Retries a press with its key after 503 until another answer (or 30 s).
async fn press(gw: &GatewayHandle, sale: SaleId, token: &str, key: &str) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = gw.reserve_with_key(sale, token, key).await;
        if reply.status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            let id = reply.body["order_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            return (reply.status, id, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Buyers 20 at a time, round-robin over `gateways`; `fault` runs once `strike_after` first tries were
/// answered, and the burst goes on until `then` more first tries were answered after the fault returned (at
/// most `max_buyers` buyers in all). Returns what the burst saw and the fault's result.
pub async fn burst<F: Future>(
    env: &TestEnv,
    gateways: &[GatewayHandle],
    sale: SaleId,
    max_buyers: usize,
    (strike_after, then): (usize, usize),
    fault: impl FnOnce() -> F,
) -> (Outcome, F::Output) {
    let answered = AtomicUsize::new(0);
    let unavailable = AtomicUsize::new(0);
    // First tries answered when the fault returned; usize::MAX while it runs.
    let struck_at = AtomicUsize::new(usize::MAX);
    let enough = || {
        let at = struck_at.load(Ordering::Relaxed);
        at != usize::MAX && answered.load(Ordering::Relaxed) >= at.saturating_add(then)
    };
    let presses = stream::iter(0..max_buyers)
        .take_while(|_| std::future::ready(!enough()))
        .map(|i| {
            let (answered, unavailable) = (&answered, &unavailable);
            let gw = &gateways[i % gateways.len()];
            let token = env.token(&format!("buyer-{i}"));
            let key = format!("press-{i}");
            async move {
                let first = gw.reserve_with_key(sale, &token, &key).await;
                answered.fetch_add(1, Ordering::Relaxed);
                if first.status == StatusCode::SERVICE_UNAVAILABLE {
                    unavailable.fetch_add(1, Ordering::Relaxed);
                    return press(gw, sale, &token, &key).await;
                }
                let id = first.body["order_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                (first.status, id, Instant::now())
            }
        })
        .buffer_unordered(20)
        .collect::<Vec<_>>();
    let strike = async {
        while answered.load(Ordering::Relaxed) < strike_after {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let out = fault().await;
        struck_at.store(answered.load(Ordering::Relaxed), Ordering::Relaxed);
        out
    };
    let (answers, struck) = tokio::join!(presses, strike);
    let outcome = Outcome {
        answers,
        unavailable: unavailable.load(Ordering::Relaxed),
    };
    (outcome, struck)
}
