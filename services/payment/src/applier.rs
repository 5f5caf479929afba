//! Group commit of webhook events. Every payment of a sale takes the sale row's lock (its shipping priority
//! counter) until its transaction commits, so one transaction per webhook serialises a sale's payments on a
//! commit (a WAL flush) each, and concurrent webhooks pile up on the lock holding pooled connections: measured
//! here at about 310 webhooks/s with a third answered 503 after the pool's timeout.
//!
//! Instead one task applies the events waiting at that moment (up to `payment.apply_batch_size`) in one
//! transaction, each in a savepoint of its own, and commits once: a refused event (unknown payment, wrong
//! amount) rolls back to its savepoint and leaves its neighbours applied. Priorities stay 1..N in commit
//! order, because the batch applies its events one after another under the same locks. Nothing waits for a
//! batch to fill: a lone webhook is applied at once.

use crate::apply::{Applied, TxError, apply_once};
use crate::event::Event;
use diesel::result::Error as DieselError;
use diesel_async::AsyncConnection;
use flashsale_store::PgPool;
use flashsale_store::errors::is_conflict;
use tokio::sync::{mpsc, oneshot};

/// How many times an event whose savepoint lost a deadlock or serialization race is applied again.
const ATTEMPTS: usize = 5;

type Outcome = Result<Applied, ApplyError>;

/// Why an event was not applied.
pub enum ApplyError {
    /// The event's own savepoint failed: refused (nothing changes) or a database error.
    Tx(TxError),
    /// No connection, or the batch's commit failed: nothing of the batch was applied (503; the provider
    /// retries). Also when the applier is gone because the service is stopping.
    Unavailable(String),
    /// The batch's commit lost a deadlock or serialization race: applied again.
    Conflict,
}

struct Job {
    event: Event,
    reply: oneshot::Sender<Outcome>,
}

/// The handle webhook handlers send their events to; cheap to clone.
#[derive(Clone)]
pub struct Applier {
    jobs: mpsc::Sender<Job>,
}

impl Applier {
    /// Starts the applying task; it ends when every handle is dropped.
    pub fn start(pool: PgPool, max_batch: usize) -> Self {
        let (jobs, rx) = mpsc::channel(max_batch * 4);
        tokio::spawn(run(pool, rx, max_batch));
        Self { jobs }
    }

    /// Applies one event in the next batch; retried while it loses deadlock or serialization races.
    pub async fn apply(&self, event: &Event) -> Outcome {
        let mut attempt = 1;
        loop {
            let (reply, answer) = oneshot::channel();
            let job = Job {
                event: event.clone(),
                reply,
            };
            let stopped = || ApplyError::Unavailable("the payment service is stopping".into());
            self.jobs.send(job).await.map_err(|_| stopped())?;
            let outcome = answer.await.map_err(|_| stopped())?;
            let lost = match &outcome {
                Err(ApplyError::Tx(TxError::Db(e))) => is_conflict(e),
                Err(ApplyError::Conflict) => true,
                _ => false,
            };
            if !lost || attempt >= ATTEMPTS {
                return outcome;
            }
            tracing::info!(attempt, "webhook event lost a race; applying it again");
            attempt += 1;
        }
    }
}

async fn run(pool: PgPool, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
    let mut jobs = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut jobs, max_batch).await > 0 {
        let events: Vec<&Event> = jobs.iter().map(|j| &j.event).collect();
        let outcomes = apply_batch(&pool, &events).await;
        for (job, outcome) in jobs.drain(..).zip(outcomes) {
            // A handler that gave up (client gone) finds its event applied on the provider's retry.
            let _ = job.reply.send(outcome);
        }
    }
}

/// One transaction for the whole batch, a savepoint per event. If the commit fails nothing was applied and
/// every event gets the error.
async fn apply_batch(pool: &PgPool, events: &[&Event]) -> Vec<Outcome> {
    let failed = |why: String| {
        events
            .iter()
            .map(|_| Err(ApplyError::Unavailable(why.clone())))
            .collect()
    };
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(e) => return failed(format!("no PostgreSQL connection: {e}")),
    };
    let committed = conn
        .transaction(async |conn| {
            let mut outcomes = Vec::with_capacity(events.len());
            for event in events {
                let one = conn
                    .transaction(async |conn| apply_once(conn, event).await)
                    .await;
                outcomes.push(one);
            }
            Ok::<_, DieselError>(outcomes)
        })
        .await;
    match committed {
        Ok(outcomes) => outcomes
            .into_iter()
            .map(|o| o.map_err(ApplyError::Tx))
            .collect(),
        Err(e) if is_conflict(&e) => events.iter().map(|_| Err(ApplyError::Conflict)).collect(),
        Err(e) => {
            tracing::warn!(error = %e, events = events.len(), "a batch of webhook events failed to commit");
            failed(format!("committing the webhook batch: {e}"))
        }
    }
}
