use flashsale_platform::{Settings, Shutdown, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    telemetry::init("order-writer", &settings.telemetry);
    let app = flashsale_order_writer::App::build(settings).await?;
    tracing::info!(port = app.port(), "order-writer ready");
    app.run_until(Shutdown::on_signal()).await
}
