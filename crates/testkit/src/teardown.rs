//! Taking a test's slice down again, in an order that cannot undo itself: first the services the test started
//! (their reconnect loops would re-declare the queues being deleted, and the warmer would re-create Redis keys),
//! then the AMQP topology, then the PostgreSQL schema and the Redis keys.
//!
//! Services register here when they start, under their settings' AMQP prefix (`<env name>.`), so everything
//! started from a test's settings is found, including services started with adjusted settings
//! (`spawn_gateway_with`). The same teardown runs from `TestEnv::cleanup` and from its `Drop` guard.

use crate::prepare::drop_env;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use flashsale_platform::settings::AmqpSettings;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long teardown waits for the services to stop before deleting anyway.
const STOP_WITHIN: Duration = Duration::from_secs(15);

/// One service a test started.
pub(crate) enum Started {
    /// A service running as tasks of the test's runtime: `stop` asks it to stop, `done` is cancelled once its
    /// task has ended (or was dropped).
    InProcess {
        stop: CancellationToken,
        done: CancellationToken,
    },
    /// A service running as a child process, shared with the handle the test holds.
    Process(Arc<Mutex<tokio::process::Child>>),
}

static STARTED: LazyLock<Mutex<HashMap<String, Vec<Started>>>> = LazyLock::new(Mutex::default);

/// Records a service started with AMQP prefix `prefix`.
pub(crate) fn register(prefix: &str, started: Started) {
    if let Ok(mut all) = STARTED.lock() {
        all.entry(prefix.to_owned()).or_default().push(started);
    }
}

fn take(prefix: &str) -> Vec<Started> {
    STARTED
        .lock()
        .ok()
        .and_then(|mut all| all.remove(prefix))
        .unwrap_or_default()
}

/// Everything needed to take one environment down, detached from the `TestEnv` so it can move to another thread.
pub(crate) struct Teardown {
    pub name: String,
    pub pg_url: String,
    pub amqp: AmqpSettings,
}

impl Teardown {
    /// Stops what the test started, then deletes the topology, the schema and the keys. `wait_in_process`:
    /// whether in-process services can still run while we wait for them (not when the test's only runtime
    /// thread is the one blocked in `Drop`).
    pub async fn run(&self, wait_in_process: bool) {
        stop_started(&self.amqp.prefix, wait_in_process).await;
        if tokio::time::timeout(Duration::from_secs(10), self.delete_topology())
            .await
            .is_err()
        {
            tracing::warn!(env = %self.name, "deleting test queues timed out; they expire by themselves");
        }
        let dropped = tokio::time::timeout(Duration::from_secs(20), drop_env(&self.name))
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")));
        if let Err(e) = dropped {
            tracing::warn!(error = %e, env = %self.name, "test cleanup failed; the next sweep retries");
        }
    }

    /// The same teardown from a synchronous context (a `Drop`), on a thread of its own with its own runtime:
    /// never `block_on` inside the test's runtime.
    pub fn run_on_own_thread(self) {
        let wait_in_process = matches!(
            tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()),
            Ok(tokio::runtime::RuntimeFlavor::MultiThread)
        );
        let worker = std::thread::Builder::new()
            .name(format!("teardown-{}", self.name))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(self.run(wait_in_process)),
                    Err(e) => {
                        tracing::warn!(error = %e, env = %self.name, "no runtime for the teardown")
                    }
                }
            });
        match worker {
            // In a multi-thread runtime, hand this worker's queued tasks (the services we wait for) to another
            // worker while we block; a blocked worker keeps the task in its LIFO slot to itself.
            Ok(worker) if wait_in_process => {
                let _ = tokio::task::block_in_place(|| worker.join());
            }
            Ok(worker) => {
                let _ = worker.join();
            }
            Err(e) => tracing::warn!(error = %e, "cannot start the teardown thread"),
        }
    }

    async fn delete_topology(&self) {
        #[derive(QueryableByName)]
        struct W {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            w: i32,
        }
        let windows: Vec<i32> = match AsyncPgConnection::establish(&self.pg_url).await {
            Ok(mut pg) => diesel::sql_query("SELECT DISTINCT payment_window_secs AS w FROM sales")
                .load::<W>(&mut pg)
                .await
                .map(|rows| rows.into_iter().map(|r| r.w).collect())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let names = flashsale_broker::Names::new(&self.amqp.prefix);
        let Ok(conn) = flashsale_broker::connect(&self.amqp, "test-cleanup").await else {
            return;
        };
        let Ok(ch) = conn.create_channel().await else {
            return;
        };
        flashsale_broker::topology::delete(
            &ch,
            &names,
            windows.into_iter().filter_map(|w| u32::try_from(w).ok()),
        )
        .await;
        let _ = conn.close(200, "test done".into()).await;
    }
}

/// Stops every service registered under `prefix` and waits (bounded) until each has stopped.
async fn stop_started(prefix: &str, wait_in_process: bool) {
    let started = take(prefix);
    for service in &started {
        match service {
            Started::InProcess { stop, .. } => stop.cancel(),
            Started::Process(child) => {
                if let Ok(mut child) = child.lock() {
                    // SIGKILL: the test is over, nothing of this process is needed any more.
                    let _ = child.start_kill();
                }
            }
        }
    }
    let deadline = Instant::now() + STOP_WITHIN;
    for service in started {
        let stopped = match service {
            Started::InProcess { done, .. } if wait_in_process => {
                tokio::time::timeout_at(deadline, done.cancelled())
                    .await
                    .is_ok()
            }
            Started::InProcess { .. } => true,
            Started::Process(child) => reaped(&child, deadline).await,
        };
        if !stopped {
            tracing::warn!(
                prefix,
                "a service of the test did not stop in time; deleting its topology anyway"
            );
        }
    }
}

/// Waits until the child has exited (polling `try_wait`, which works from any runtime).
pub(crate) async fn reaped(child: &Mutex<tokio::process::Child>, deadline: Instant) -> bool {
    loop {
        let exited = child
            .lock()
            .map(|mut c| matches!(c.try_wait(), Ok(Some(_)) | Err(_)))
            .unwrap_or(true);
        if exited {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
