//! The process's open-file limit. Every HTTP connection and live stock stream is a file descriptor, and the
//! soft limit a shell or systemd hands a process (often 1,024) is far below what a gateway serves; the hard
//! limit is what an operator set on purpose. So the gateway raises its soft limit to the hard one at start, as Go
//! programs do and nginx's `worker_rlimit_nofile` lets an operator ask for.

use rustix::process::{Resource, getrlimit, setrlimit};

/// Raises the soft open-file limit to the hard limit and returns the soft limit now in force (`None`:
/// unlimited).
pub fn raise_open_files() -> Option<u64> {
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let wanted = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => limit.current = limit.maximum,
            Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
        }
    }
    limit.current
}

/// Raises the limit and warns when it stays below `needed` descriptors, naming `what` needs them.
pub fn ensure_open_files(needed: u64, what: &str) {
    match raise_open_files() {
        Some(limit) if limit < needed => tracing::warn!(
            limit,
            needed,
            "the open-file limit (ulimit -n, hard) is below what {what} can use; connections past it are refused"
        ),
        limit => tracing::debug!(?limit, "open-file limit"),
    }
}
