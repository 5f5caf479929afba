//! `flashsale-mint-token <user> [ttl secs]`: prints a buyer JWT signed with `auth.jwt_secret` (with `aud` =
//! `auth.jwt_audience` when that is set), for development and `make run`. Never ship it to users: anyone
//! holding the secret can be anyone.

use chrono::Utc;
use flashsale_domain::UserId;
use flashsale_platform::Settings;
use jsonwebtoken::{EncodingKey, Header, encode};
use secrecy::ExposeSecret;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let user = UserId::parse(args.next().unwrap_or_else(|| "demo-buyer".into()))?;
    let ttl: i64 = args.next().map(|t| t.parse()).transpose()?.unwrap_or(3600);
    let settings = Settings::load()?;
    let mut claims =
        serde_json::json!({ "sub": user.as_str(), "exp": Utc::now().timestamp() + ttl });
    // The gateway requires `aud` exactly when an audience is configured.
    if !settings.auth.jwt_audience.is_empty() {
        claims["aud"] = serde_json::json!(settings.auth.jwt_audience);
    }
    let token = encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(settings.auth.jwt_secret.expose_secret().as_bytes()),
    )?;
    println!("{token}");
    Ok(())
}
