//! Prepares the shared test database once per test run: creates `flashsale_test` if missing and sweeps the
//! schemas and Redis keys that environments older than an hour left behind. nextest runs it as the setup
//! script `prepare-test-db` (`.config/nextest.toml`) and it tells every test process of the run, through
//! `$NEXTEST_ENV`, that this is done (`FLASHSALE_TEST_PREPARED=1`), so no test process repeats it.

use anyhow::Context;
use flashsale_testkit::prepare::{PREPARED_VAR, prepare};
use std::io::Write;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    prepare().await.context(
        "preparing the test database (are PostgreSQL and Redis running? `make services`)",
    )?;
    if let Ok(path) = std::env::var("NEXTEST_ENV") {
        let mut env = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening NEXTEST_ENV {path}"))?;
        writeln!(env, "{PREPARED_VAR}=1").context("writing NEXTEST_ENV")?;
    }
    println!("test database prepared");
    Ok(())
}
