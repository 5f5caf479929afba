//! `flashsale-admin`: operator commands. Reads the same layered settings as the services
//! (`config/default.toml`, then `FLASHSALE_CONFIG`, then `FLASHSALE__SECTION__KEY`); `dlq` uses `[amqp]`.

mod dead_letter;
mod dlq;

use clap::{Parser, Subcommand};
use flashsale_platform::Settings;

#[derive(Parser)]
#[command(
    name = "flashsale-admin",
    version,
    about = "Operator commands for flashsale"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The dead-letter queue: messages a consumer could not process.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load()?;
    match cli.command {
        Command::Dlq(command) => dlq::run(&settings.amqp, command).await,
    }
}
