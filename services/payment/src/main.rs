use flashsale_platform::{Secret, Settings, Shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    telemetry::init("payment", &settings.telemetry);
    settings.require_secrets(&[Secret::JwtSecret, Secret::WebhookSecret])?;
    let app = flashsale_payment::App::build(settings).await?;
    tracing::info!(port = app.port(), "payment ready");
    app.run_until(Shutdown::on_signal()).await
}
