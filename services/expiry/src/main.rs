use flashsale_platform::{Settings, Shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    telemetry::init("expiry", &settings.telemetry);
    let app = flashsale_expiry::App::build(settings).await?;
    tracing::info!(port = app.port(), "expiry ready");
    app.run_until(Shutdown::on_signal()).await
}
