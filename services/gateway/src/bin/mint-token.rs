//! `flashsale-mint-token <user> [ttl secs]`: prints a buyer JWT signed with `auth.jwt_secret` (with `aud` =
//! `auth.jwt_audience` when that is set), for development and `make run`. Never ship it to users: anyone
//! holding the secret can be anyone.

use flashsale_domain::UserId;
use flashsale_platform::Settings;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let user = UserId::parse(args.next().unwrap_or_else(|| "demo-buyer".into()))?;
    let ttl: u64 = args.next().map(|t| t.parse()).transpose()?.unwrap_or(3600);
    let settings = Settings::load()?;
    println!(
        "{}",
        flashsale_auth::mint_buyer_token(&settings.auth, &user, ttl)?
    );
    Ok(())
}
