use flashsale_platform::{Settings, Shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    telemetry::init("gateway", &settings.telemetry);
    settings.require_secrets(flashsale_gateway::auth::SECRETS)?;
    // Each live stock stream holds a connection; the rest is room for the API's and the dependencies'.
    let streams = u64::try_from(settings.sse.max_streams).unwrap_or(u64::MAX);
    flashsale_platform::limits::ensure_open_files(streams.saturating_add(1024), "sse.max_streams");
    let app = flashsale_gateway::App::build(settings).await?;
    tracing::info!(port = app.port(), "gateway ready");
    app.run_until(Shutdown::on_signal()).await
}
