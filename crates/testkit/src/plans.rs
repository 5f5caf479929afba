//! What a statement read, from PostgreSQL's cumulative statistics of the test's own schema: how tests prove
//! that a look-up probes an index per key instead of scanning a table that grows with the sale.

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::time::Duration;

/// Scans and rows (or index entries) read so far: `seq_scan`/`seq_tup_read` and `idx_scan`/`idx_tup_read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct Reads {
    #[diesel(sql_type = BigInt)]
    pub seq_scans: i64,
    #[diesel(sql_type = BigInt)]
    pub seq_rows: i64,
    #[diesel(sql_type = BigInt)]
    pub index_scans: i64,
    #[diesel(sql_type = BigInt)]
    pub index_entries: i64,
}

impl Reads {
    pub fn since(self, before: Reads) -> Reads {
        Reads {
            seq_scans: self.seq_scans - before.seq_scans,
            seq_rows: self.seq_rows - before.seq_rows,
            index_scans: self.index_scans - before.index_scans,
            index_entries: self.index_entries - before.index_entries,
        }
    }
}

/// A table (its rows read by sequential scans, its index scans) or one index (its scans and entries read).
#[derive(Debug, Clone, Copy)]
pub enum Of<'a> {
    Table(&'a str),
    Index(&'a str),
}

/// What statements have read so far of `of`, in the current schema.
pub async fn reads(conn: &mut AsyncPgConnection, of: Of<'_>) -> Reads {
    let (sql, name) = match of {
        Of::Table(name) => (
            "SELECT coalesce(seq_scan, 0) AS seq_scans, coalesce(seq_tup_read, 0) AS seq_rows, \
                    coalesce(idx_scan, 0) AS index_scans, coalesce(idx_tup_fetch, 0) AS index_entries \
             FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = $1",
            name,
        ),
        Of::Index(name) => (
            "SELECT 0::int8 AS seq_scans, 0::int8 AS seq_rows, idx_scan AS index_scans, \
                    idx_tup_read AS index_entries \
             FROM pg_stat_user_indexes WHERE schemaname = current_schema() AND indexrelname = $1",
            name,
        ),
    };
    diesel::sql_query(sql)
        .bind::<Text, _>(name)
        .get_result(conn)
        .await
        .unwrap_or_else(|e| panic!("statistics of {of:?}: {e}"))
}

/// A backend reports its statistics to shared memory only once it is idle: asks `ran` (the connection that ran
/// the statements) to flush at its next idle moment, then polls on `stats` until what it read of `of` moved
/// from `before`, and returns the difference.
pub async fn settled(
    ran: &mut AsyncPgConnection,
    stats: &mut AsyncPgConnection,
    of: Of<'_>,
    before: Reads,
) -> Reads {
    diesel::sql_query("SELECT pg_stat_force_next_flush()")
        .execute(ran)
        .await
        .expect("flush");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = reads(stats, of).await;
        if now != before {
            return now.since(before);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no statistics of {of:?} reported within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
