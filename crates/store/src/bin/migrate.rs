//! `flashsale-migrate`: applies the embedded migrations to `postgres.url` (what `make migrate` runs).

use flashsale_platform::{Settings, telemetry};
use secrecy::ExposeSecret;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    telemetry::init("migrate", &settings.telemetry);
    flashsale_store::migrate(settings.postgres.url.expose_secret()).await?;
    println!("flashsale: migrations applied");
    Ok(())
}
