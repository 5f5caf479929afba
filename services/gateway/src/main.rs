use flashsale_platform::{Settings, Shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    telemetry::init("gateway", &settings.telemetry);
    settings.require_secrets(flashsale_gateway::auth::SECRETS)?;
    let app = flashsale_gateway::App::build(settings).await?;
    tracing::info!(port = app.port(), "gateway ready");
    app.run_until(Shutdown::on_signal()).await
}
