//! The connection pool and the embedded migrations (run through diesel-async's `AsyncConnectionWrapper`,
//! so no libpq is needed).

use anyhow::Context;
use diesel::Connection;
use diesel::result::Error as DieselError;
use diesel::result::{ConnectionError, ConnectionResult};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::bb8::{Pool, PooledConnection};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use flashsale_platform::settings::PostgresSettings;
use secrecy::ExposeSecret;
use std::time::Duration;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

const MIGRATION_LOCK: &str = "SELECT pg_advisory_lock(7305853130861)";
const MIGRATION_UNLOCK: &str = "SELECT pg_advisory_unlock(7305853130861)";

pub type PgPool = Pool<AsyncPgConnection>;
pub type Conn<'a> = PooledConnection<'a, AsyncPgConnection>;

/// What a caller needs to tell apart: the database is unreachable (retry later, 503) or a query failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("postgres unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Query(#[from] DieselError),
}

impl From<diesel_async::pooled_connection::bb8::RunError> for StoreError {
    fn from(e: diesel_async::pooled_connection::bb8::RunError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Builds the pool and proves it works with `SELECT 1`, so a service fails fast at start-up.
pub async fn connect(settings: &PostgresSettings) -> anyhow::Result<PgPool> {
    let mut config = ManagerConfig::<AsyncPgConnection>::default();
    let statement_timeout_ms = settings.statement_timeout_ms;
    config.custom_setup =
        Box::new(move |url| Box::pin(establish(url.to_owned(), statement_timeout_ms)));
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        settings.url.expose_secret(),
        config,
    );
    let pool = Pool::builder()
        .max_size(settings.pool_size)
        .connection_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        // Connections are opened lazily after the first, so a burst does not wait on twenty handshakes.
        .min_idle(Some(1))
        .build(manager)
        .await
        .context("building the PostgreSQL pool")?;
    ping(&pool).await.context("connecting to PostgreSQL")?;
    Ok(pool)
}

/// Every pooled connection plans each statement with its actual parameters. diesel prepares and caches
/// statements, and PostgreSQL switches a prepared statement to a generic plan after five runs: planned while
/// `orders` was empty (a fresh database, the first sale), `id = ANY($1)` stayed a sequential scan as the table
/// grew, and order-writer spent its time scanning (the load tool measured 4 s of drain lag instead of 50 ms).
/// `statement_timeout` (`postgres.statement_timeout_ms`) bounds every statement, a lock wait included, so a stuck
/// database turns into an error the caller answers or retries instead of a request that never ends.
async fn establish(url: String, statement_timeout_ms: u64) -> ConnectionResult<AsyncPgConnection> {
    let mut conn = <AsyncPgConnection as diesel_async::AsyncConnection>::establish(&url).await?;
    for setting in [
        "SET plan_cache_mode = force_custom_plan".to_owned(),
        format!("SET statement_timeout = {statement_timeout_ms}"),
    ] {
        diesel::sql_query(setting)
            .execute(&mut conn)
            .await
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
    }
    Ok(conn)
}

pub async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    let mut conn = pool.get().await?;
    diesel::sql_query("SELECT 1").execute(&mut conn).await?;
    Ok(())
}

/// Applies pending migrations on a dedicated connection in a blocking task.
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url)
            .context("connecting to PostgreSQL for migrations")?;
        // Services starting together must not migrate at once: one waits for the other's lock.
        diesel::RunQueryDsl::execute(diesel::sql_query(MIGRATION_LOCK), &mut conn)
            .context("taking the migration lock")?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|e| anyhow::anyhow!("running migrations: {e}"));
        let _ = diesel::RunQueryDsl::execute(diesel::sql_query(MIGRATION_UNLOCK), &mut conn);
        let applied = applied?;
        for version in applied {
            tracing::info!(%version, "migration applied");
        }
        Ok(())
    })
    .await
    .context("migration task panicked")?
}

/// Whether this connection can write: the server is a primary and not in read-only mode (after a failover
/// the old address may lead to a replica that answers reads but refuses every write).
pub async fn writable(conn: &mut AsyncPgConnection) -> Result<bool, DieselError> {
    #[derive(diesel::QueryableByName)]
    struct Writable {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        writable: bool,
    }
    let row: Writable = diesel::sql_query(
        "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' AS writable",
    )
    .get_result(conn)
    .await?;
    Ok(row.writable)
}
