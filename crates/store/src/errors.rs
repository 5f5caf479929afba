//! Telling database errors apart for a consumer: an outage (wait it out), a conflict between concurrent
//! transactions (retry at once), or anything else (a failure that may lie in the data).

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// The database is unreachable or cannot take writes. tokio-postgres errors without a SQLSTATE (closed socket,
/// I/O) arrive as `UnableToSendCommand`.
pub fn is_outage(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection
            | DatabaseErrorKind::UnableToSendCommand
            // A replica after a failover: nothing can be written until a primary is back.
            | DatabaseErrorKind::ReadOnlyTransaction,
            _,
        )
        | DieselError::BrokenTransactionManager => true,
        // The commit's fate is unknown; a retry finds what happened.
        DieselError::RollbackErrorOnCommit { commit_error, .. } => is_outage(commit_error),
        _ => false,
    }
}

/// A deadlock (40P01) or serialization failure (40001): PostgreSQL rolled the transaction back so another
/// could go on; running it again is the fix.
pub fn is_conflict(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => true,
        // diesel has no kind of its own for 40P01.
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            info.message().contains("deadlock detected")
        }
        DieselError::RollbackErrorOnCommit { commit_error, .. } => is_conflict(commit_error),
        _ => false,
    }
}
