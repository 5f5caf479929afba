//! `flashsale-admin dlq list|show|replay`: the dead-letter queue for operators.
//!
//! Reading never loses a message: every message is taken unacknowledged and handed back when the channel
//! closes (the broker requeues what was not acknowledged). A replay republishes a message to the exchange and
//! routing key it had been published with (from its `x-death` header), with the same `message_id`, and
//! acknowledges it (removes it from the dead-letter queue) only after the broker confirmed the republish.
//! Copies of one message dead-lettered by several queues are republished once (it reaches every queue bound
//! to that routing key again) and all removed. A crash between confirm and removal leaves a copy behind that
//! a later replay sends again: consumers dedupe on `message_id`.

use crate::dead_letter::DeadLetter;
use anyhow::Context;
use clap::Subcommand;
use flashsale_broker::Names;
use flashsale_broker::depth::queue_depth;
use flashsale_platform::settings::AmqpSettings;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Subcommand)]
pub enum DlqCommand {
    /// List dead-lettered messages: message_id, queue, reason, count, time, exchange -> routing key.
    /// They stay in the queue.
    List {
        /// Read at most this many (each one is held by the tool until it is done).
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
    },
    /// Show one dead-lettered message whole (properties, headers, body). It stays in the queue.
    Show { message_id: String },
    /// Republish to its original exchange and routing key, then remove it from the dead-letter queue.
    Replay {
        /// The message to replay.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        message_id: Option<String>,
        /// Replay every dead-lettered message.
        #[arg(long)]
        all: bool,
    },
}

pub async fn run(settings: &AmqpSettings, command: DlqCommand) -> anyhow::Result<()> {
    let queue = Names::new(&settings.prefix).dead_queue();
    let conn = flashsale_broker::connect(settings, "flashsale-admin").await?;
    let result = match command {
        DlqCommand::List { limit } => list(&conn, &queue, limit).await,
        DlqCommand::Show { message_id } => show(&conn, &queue, &message_id).await,
        DlqCommand::Replay { message_id, all } => {
            let wanted = if all { None } else { message_id };
            replay(
                &conn,
                &queue,
                wanted.as_deref(),
                settings.confirm_timeout_ms,
            )
            .await
        }
    };
    // Closing hands back everything read and not acknowledged.
    let _ = conn.close(200, "flashsale-admin done".into()).await;
    result
}

/// Takes up to `limit` messages (all that were there when it started), unacknowledged.
async fn take(ch: &Channel, queue: &str, limit: usize) -> anyhow::Result<Vec<DeadLetter>> {
    let depth = queue_depth(ch, queue)
        .await
        .with_context(|| format!("reading the dead-letter queue {queue}"))?;
    let mut taken = Vec::new();
    // Bounded by the depth at the start: what is dead-lettered meanwhile waits for the next run.
    while taken.len() < limit.min(depth as usize) {
        match ch
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await?
        {
            Some(m) => taken.push(DeadLetter::new(m.delivery)),
            None => break,
        }
    }
    Ok(taken)
}

async fn list(conn: &Connection, queue: &str, limit: usize) -> anyhow::Result<()> {
    let ch = conn.create_channel().await?;
    let taken = take(&ch, queue, limit).await?;
    println!("MESSAGE_ID\tQUEUE\tREASON\tCOUNT\tDEAD_LETTERED_AT\tREPLAYS_TO");
    for m in &taken {
        println!("{}", m.line());
    }
    println!("{} message(s) in {queue}", taken.len());
    Ok(())
}

async fn show(conn: &Connection, queue: &str, message_id: &str) -> anyhow::Result<()> {
    let ch = conn.create_channel().await?;
    let taken = take(&ch, queue, usize::MAX).await?;
    let copies: Vec<&DeadLetter> = taken
        .iter()
        .filter(|m| m.message_id.as_deref() == Some(message_id))
        .collect();
    anyhow::ensure!(
        !copies.is_empty(),
        "no message with message_id {message_id} in {queue}"
    );
    for (i, m) in copies.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("{}", m.details());
    }
    Ok(())
}

async fn replay(
    conn: &Connection,
    queue: &str,
    wanted: Option<&str>,
    confirm_timeout_ms: u64,
) -> anyhow::Result<()> {
    let read = conn.create_channel().await?;
    let publish = conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let taken = take(&read, queue, usize::MAX).await?;
    // One republish per message: copies of one message_id (dead-lettered by several queues) go together;
    // messages without an id each on their own.
    let mut groups: BTreeMap<String, Vec<&DeadLetter>> = BTreeMap::new();
    for (i, m) in taken.iter().enumerate() {
        if wanted.is_some_and(|id| m.message_id.as_deref() != Some(id)) {
            continue;
        }
        let key = m.message_id.clone().unwrap_or_else(|| format!("-{i}"));
        groups.entry(key).or_default().push(m);
    }
    if let Some(id) = wanted {
        anyhow::ensure!(
            !groups.is_empty(),
            "no message with message_id {id} in {queue}"
        );
    }
    let (mut replayed, mut failed) = (0, 0);
    for copies in groups.values() {
        let first = copies[0];
        match republish(&publish, first, confirm_timeout_ms).await {
            Ok(()) => {
                for m in copies {
                    m.acker.ack(BasicAckOptions::default()).await?;
                }
                replayed += 1;
                println!(
                    "replayed {} to {} -> {}",
                    first.id(),
                    first.exchange,
                    first.routing_key
                );
            }
            Err(error) => {
                failed += 1;
                eprintln!("not replayed {} (kept in {queue}): {error:#}", first.id());
            }
        }
    }
    println!("{replayed} replayed, {failed} kept");
    anyhow::ensure!(failed == 0, "{failed} message(s) could not be replayed");
    Ok(())
}

/// Publishes with `mandatory` and waits for the broker's confirm: only an ack without a returned message
/// means a queue holds it now.
async fn republish(ch: &Channel, m: &DeadLetter, confirm_timeout_ms: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        !m.exchange.is_empty(),
        "no x-death header names the exchange it was published to"
    );
    let confirm = ch
        .basic_publish(
            m.exchange.as_str().into(),
            m.routing_key.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &m.body,
            m.replay_properties(),
        )
        .await?;
    let confirmation = tokio::time::timeout(Duration::from_millis(confirm_timeout_ms), confirm)
        .await
        .map_err(|_| anyhow::anyhow!("no confirm within {confirm_timeout_ms} ms"))??;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => anyhow::bail!(
            "unroutable: no queue is bound to {} with {}",
            m.exchange,
            m.routing_key
        ),
        Confirmation::Nack(_) => anyhow::bail!("the broker refused it (nack)"),
        Confirmation::NotRequested => anyhow::bail!("the channel is not in confirm mode"),
    }
}
