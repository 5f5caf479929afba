//! Preparing the shared test database once per run, and removing what earlier runs left behind.
//!
//! `nextest` runs this once before the suite (the `prepare-test-db` setup script in `.config/nextest.toml`,
//! binary `flashsale-test-prepare`), which then tells every test process so through `FLASHSALE_TEST_PREPARED=1`.
//! Without it (a plain `cargo test`) the first `TestEnv` of each process prepares instead.
//!
//! Environment: `FLASHSALE_TEST_PG` (admin URL without a database, default `postgres://postgres@127.0.0.1:5432`),
//! `FLASHSALE_TEST_REDIS` (default `redis://127.0.0.1:6379`).

use anyhow::Context;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::time::{SystemTime, UNIX_EPOCH};

pub const TEST_DATABASE: &str = "flashsale_test";
/// Set (to `1`) by the setup script for every test process of the run.
pub const PREPARED_VAR: &str = "FLASHSALE_TEST_PREPARED";
/// Environments older than this are left-overs: no test runs that long (nextest stops one after 2 minutes).
const STALE_AFTER_SECS: u64 = 3600;

pub(crate) fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub(crate) fn admin_url() -> String {
    var("FLASHSALE_TEST_PG", "postgres://postgres@127.0.0.1:5432")
}

pub(crate) fn redis_url() -> String {
    var("FLASHSALE_TEST_REDIS", "redis://127.0.0.1:6379")
}

/// Creates `flashsale_test` if missing and sweeps stale schemas and Redis keys.
pub async fn prepare() -> anyhow::Result<()> {
    let admin = admin_url();
    ensure_database(&admin).await?;
    sweep_stale(&admin).await
}

/// Whether a setup script already prepared this run.
pub fn prepared_by_runner() -> bool {
    std::env::var(PREPARED_VAR).is_ok_and(|v| v == "1")
}

async fn ensure_database(admin: &str) -> anyhow::Result<()> {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = AsyncPgConnection::establish(&format!("{admin}/postgres"))
        .await
        .context("connecting to PostgreSQL")?;
    let exists = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(TEST_DATABASE)
        .get_result::<N>(&mut conn)
        .await?
        .n
        > 0;
    if !exists {
        // Parallel test processes may race here (without the setup script); losing the race is fine.
        let _ = diesel::sql_query(format!("CREATE DATABASE {TEST_DATABASE}"))
            .execute(&mut conn)
            .await;
    }
    Ok(())
}

/// Removes schemas and Redis keys of environments older than an hour (named `t<unix secs>_<hex>`).
async fn sweep_stale(admin: &str) -> anyhow::Result<()> {
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        nspname: String,
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let is_stale = |name: &str| {
        name.strip_prefix('t')
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok())
            .is_some_and(|secs| secs + STALE_AFTER_SECS < now)
    };
    let mut conn = AsyncPgConnection::establish(&format!("{admin}/{TEST_DATABASE}"))
        .await
        .context("connecting to the test database")?;
    let schemas = diesel::sql_query("SELECT nspname FROM pg_namespace WHERE nspname ~ '^t[0-9]+_'")
        .load::<Name>(&mut conn)
        .await?;
    for schema in schemas.iter().filter(|s| is_stale(&s.nspname)) {
        let _ = diesel::sql_query(format!("DROP SCHEMA IF EXISTS {} CASCADE", schema.nspname))
            .execute(&mut conn)
            .await;
    }
    let client = redis::Client::open(redis_url())?;
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis")?;
    let stale: Vec<String> = scan(&mut redis, "t*_*")
        .await?
        .into_iter()
        .filter(|key| is_stale(key))
        .collect();
    unlink(&mut redis, &stale).await
}

/// Every key matching `pattern`, with an explicit SCAN cursor loop.
pub async fn scan(
    redis: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

async fn unlink(
    redis: &mut redis::aio::MultiplexedConnection,
    keys: &[String],
) -> anyhow::Result<()> {
    for chunk in keys.chunks(500) {
        let _: () = redis::cmd("UNLINK").arg(chunk).query_async(redis).await?;
    }
    Ok(())
}

/// Drops one environment's schema and unlinks its Redis keys.
pub(crate) async fn drop_env(name: &str) -> anyhow::Result<()> {
    let mut conn =
        AsyncPgConnection::establish(&format!("{}/{TEST_DATABASE}", admin_url())).await?;
    diesel::sql_query(format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
        .execute(&mut conn)
        .await?;
    let client = redis::Client::open(redis_url())?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let keys = scan(&mut redis, &format!("{name}:*")).await?;
    unlink(&mut redis, &keys).await
}
