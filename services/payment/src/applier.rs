//! Group commit of webhook events. Every payment of a sale takes the sale row's lock (its shipping priority
//! counter) until its transaction commits, so one transaction per webhook serialises a sale's payments on a
//! commit (a WAL flush) each, and concurrent webhooks pile up on the lock holding pooled connections: measured
//! here at about 310 webhooks/s with a third answered 503 after the pool's timeout.
//!
//! Instead one task applies the events waiting at that moment (up to `payment.apply_batch_size`) in one
//! transaction of a constant number of set-based statements (`apply.rs`), and commits once. Nothing waits for
//! a batch to fill: a lone webhook is applied at once. Events that touch the same payment, order or event id
//! as an earlier one of the batch wait for the next batch, so each batch decides every event independently.
//! A batch that fails for a reason other than an outage or a lost race is applied again one event at a time,
//! so one event that breaks a statement cannot fail its neighbours.

use crate::apply::{Applied, Decision, Refusal, apply_batch};
use crate::event::Event;
use diesel::result::Error as DieselError;
use diesel_async::AsyncConnection;
use flashsale_store::PgPool;
use flashsale_store::errors::{is_conflict, is_outage};
use std::collections::{HashSet, VecDeque};
use tokio::sync::{mpsc, oneshot};

/// How many times an event whose batch lost a deadlock or serialization race is applied again.
const ATTEMPTS: usize = 5;

type Outcome = Result<Applied, ApplyError>;

/// Why an event was not applied.
pub enum ApplyError {
    /// Refused: nothing changes.
    Refused(Refusal),
    /// Applied alone, the event failed with a database error that is not an outage.
    Db(DieselError),
    /// No connection, or the batch's commit failed: nothing of the batch was applied (503; the provider
    /// retries). Also when the applier is gone because the service is stopping.
    Unavailable(String),
    /// The batch lost a deadlock or serialization race: applied again.
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
            if !matches!(outcome, Err(ApplyError::Conflict)) || attempt >= ATTEMPTS {
                return outcome;
            }
            tracing::info!(attempt, "webhook event lost a race; applying it again");
            attempt += 1;
        }
    }
}

async fn run(pool: PgPool, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut received = Vec::with_capacity(max_batch);
    loop {
        if waiting.is_empty() {
            if rx.recv_many(&mut received, max_batch).await == 0 {
                return;
            }
        } else {
            // Events held back from the last batch go first; take whatever else has arrived meanwhile.
            while received.len() < max_batch {
                match rx.try_recv() {
                    Ok(job) => received.push(job),
                    Err(_) => break,
                }
            }
        }
        waiting.extend(received.drain(..));
        let batch = take_distinct(&mut waiting, max_batch);
        let events: Vec<&Event> = batch.iter().map(|j| &j.event).collect();
        let outcomes = apply_or_split(&pool, &events).await;
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            // A handler that gave up (client gone) finds its event applied on the provider's retry.
            let _ = job.reply.send(outcome);
        }
    }
}

/// Up to `max` jobs, in arrival order, no two of which share a payment, an order or an event id; the others
/// stay waiting for the next batch.
fn take_distinct(waiting: &mut VecDeque<Job>, max: usize) -> Vec<Job> {
    let mut seen: HashSet<uuid::Uuid> = HashSet::new();
    let mut seen_events: HashSet<String> = HashSet::new();
    let mut batch = Vec::new();
    let mut held = VecDeque::new();
    while let Some(job) = waiting.pop_front() {
        let e = &job.event;
        let clash = seen.contains(&e.payment_id)
            || seen.contains(&e.order_id)
            || seen_events.contains(&e.event_id);
        if clash || batch.len() >= max {
            held.push_back(job);
            continue;
        }
        seen.insert(e.payment_id);
        seen.insert(e.order_id);
        seen_events.insert(e.event_id.clone());
        batch.push(job);
    }
    *waiting = held;
    batch
}

/// The batch in one transaction; if it fails for a reason that may lie in one event's data, each event again
/// alone.
async fn apply_or_split(pool: &PgPool, events: &[&Event]) -> Vec<Outcome> {
    match apply_in_transaction(pool, events).await {
        Ok(decisions) => decisions
            .into_iter()
            .map(|d| d.map_err(ApplyError::Refused))
            .collect(),
        Err(Failure::Db(e)) if events.len() > 1 => {
            tracing::warn!(error = %e, events = events.len(), "a webhook batch failed; applying its events one by one");
            let mut outcomes = Vec::with_capacity(events.len());
            for event in events {
                let one = match apply_in_transaction(pool, &[*event]).await {
                    Ok(mut d) => d.pop().map_or(Err(ApplyError::Conflict), |d| {
                        d.map_err(ApplyError::Refused)
                    }),
                    Err(failure) => Err(failure.into_error()),
                };
                outcomes.push(one);
            }
            outcomes
        }
        Err(failure) => {
            let error = failure.into_error();
            events.iter().map(|_| Err(error.copy())).collect()
        }
    }
}

enum Failure {
    Unavailable(String),
    Conflict,
    Db(DieselError),
}

impl Failure {
    fn into_error(self) -> ApplyError {
        match self {
            Self::Unavailable(why) => ApplyError::Unavailable(why),
            Self::Conflict => ApplyError::Conflict,
            Self::Db(e) => ApplyError::Db(e),
        }
    }
}

impl ApplyError {
    /// The same error for another event of the batch (a database error is reported as unavailable: only the
    /// event that caused it gets it, when applied alone).
    fn copy(&self) -> Self {
        match self {
            Self::Refused(r) => Self::Refused(*r),
            Self::Db(e) => Self::Unavailable(e.to_string()),
            Self::Unavailable(why) => Self::Unavailable(why.clone()),
            Self::Conflict => Self::Conflict,
        }
    }
}

async fn apply_in_transaction(pool: &PgPool, events: &[&Event]) -> Result<Vec<Decision>, Failure> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| Failure::Unavailable(format!("no PostgreSQL connection: {e}")))?;
    let committed = conn
        .transaction(async |conn| apply_batch(conn, events).await)
        .await;
    committed.map_err(|e| {
        if is_conflict(&e) {
            Failure::Conflict
        } else if is_outage(&e) {
            tracing::warn!(error = %e, events = events.len(), "a batch of webhook events failed to commit");
            Failure::Unavailable(format!("committing the webhook batch: {e}"))
        } else {
            Failure::Db(e)
        }
    })
}
