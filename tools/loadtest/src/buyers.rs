//! Buyer tokens, minted before the clock starts: a run measures the server, not the signer.

use chrono::{DateTime, Utc};
use jsonwebtoken::{EncodingKey, Header, encode};
use reqwest::header::HeaderValue;
use serde_json::json;

/// `Authorization` headers of `count` distinct buyers (`lt-<run>-<i>`), valid for an hour, naming `audience`
/// as their `aud` unless it is empty (the gateway's `auth.jwt_audience` rule).
pub fn mint(
    secret: &str,
    audience: &str,
    run: &str,
    count: usize,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<HeaderValue>> {
    let key = EncodingKey::from_secret(secret.as_bytes());
    let exp = (now + chrono::Duration::hours(1)).timestamp();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = count.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|from| {
                let key = &key;
                scope.spawn(move || {
                    (from..(from + chunk).min(count))
                        .map(|i| {
                            let mut claims = json!({"sub": format!("lt-{run}-{i}"), "exp": exp});
                            if !audience.is_empty() {
                                claims["aud"] = json!(audience);
                            }
                            let token = encode(&Header::default(), &claims, key)?;
                            Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
                        })
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        for part in parts {
            all.extend(
                part.join()
                    .map_err(|_| anyhow::anyhow!("minting panicked"))??,
            );
        }
        Ok(all)
    })
}
