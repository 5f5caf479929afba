//! What the Redis Cluster launcher reads from its nodes: `CLUSTER NODES` parsed into [`RedisNode`]s, whether
//! a view is complete, who owns a key's slot, and one command to one node with a deadline.

use redis::Value;
use std::time::Duration;

/// Nodes of the cluster the launcher starts.
pub(super) const NODES: usize = 6;
/// For one command to one node: a node that does not answer within this is not ready.
const IO: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Primary,
    Replica,
}

/// One node as some node's `CLUSTER NODES` reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RedisNode {
    pub port: u16,
    pub role: Role,
    /// A replica's primary, by port.
    pub primary: Option<u16>,
    /// The slot ranges (inclusive) a primary serves.
    pub slots: Vec<(u16, u16)>,
    /// Flagged `fail`, `fail?`, `handshake` or `noaddr`, or its link is down.
    pub failing: bool,
}

pub(super) fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

pub(super) fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l.trim() == line)
}

/// Whether `ranges` cover every slot of `want`.
pub(super) fn covers(ranges: &[(u16, u16)], want: &[(u16, u16)]) -> bool {
    let covered = |(a, b): &(u16, u16)| ranges.iter().any(|(x, y)| x <= a && b <= y);
    !want.is_empty() && want.iter().all(covered)
}

/// One command to one node, on a connection of its own, failing (not hanging) after `IO`.
pub(super) async fn query<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> Result<T, String> {
    let mut cmd = redis::cmd(args[0]);
    cmd.arg(&args[1..]);
    let run = async {
        let client = redis::Client::open(url(port))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        cmd.query_async::<T>(&mut conn).await
    };
    match tokio::time::timeout(IO, run).await {
        Ok(r) => r.map_err(|e| format!("{port}: {args:?}: {e}")),
        Err(_) => Err(format!("{port}: {args:?}: no answer within {IO:?}")),
    }
}

/// A node's view, once its `CLUSTER INFO` has every line of `want`.
pub(super) async fn state(port: u16, want: &[&str]) -> Result<Vec<RedisNode>, String> {
    let info: String = query(port, &["CLUSTER", "INFO"]).await?;
    if let Some(w) = want.iter().find(|w| !has_line(&info, w)) {
        return Err(format!("{port}: no {w} in CLUSTER INFO"));
    }
    view(port).await
}

/// All six nodes known and healthy, three primaries serving all slots, each with one replica.
pub(super) fn complete(view: &[RedisNode]) -> Result<(), String> {
    let primaries: Vec<&RedisNode> = view.iter().filter(|n| n.role == Role::Primary).collect();
    let ranges = primaries.iter().flat_map(|n| &n.slots);
    let served: u32 = ranges
        .map(|(a, b)| u32::from(b.saturating_sub(*a)) + 1)
        .sum();
    let replicas = |p: &&RedisNode| view.iter().filter(|n| n.primary == Some(p.port)).count();
    let paired = primaries.iter().all(|p| replicas(p) == 1);
    let healthy = view.len() == NODES && !view.iter().any(|n| n.failing);
    match (healthy, primaries.len(), served, paired) {
        (true, 3, 16384, true) => Ok(()),
        (h, n, s, p) => Err(format!("healthy {h}, {n} primaries, {s} slots, paired {p}")),
    }
}

pub(super) async fn view(port: u16) -> Result<Vec<RedisNode>, String> {
    let text: String = query(port, &["CLUSTER", "NODES"]).await?;
    parse_nodes(&text).ok_or_else(|| format!("{port}: unreadable CLUSTER NODES: {text}"))
}

/// Lines of `<id> <ip:port@bus[,host]> <flags> <primary-id|-> <ping> <pong> <epoch> <link> <slot>...`,
/// sorted by port.
fn parse_nodes(text: &str) -> Option<Vec<RedisNode>> {
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let rows: Vec<&Vec<&str>> = rows.iter().filter(|r| r.len() >= 8).collect();
    let port_of = |addr: &str| {
        let host_port = addr.split(['@', ',']).next()?;
        host_port.rsplit_once(':')?.1.parse().ok()
    };
    let ids: Vec<(&str, u16)> = rows
        .iter()
        .map(|r| Some((r[0], port_of(r[1])?)))
        .collect::<Option<_>>()?;
    let mut nodes = Vec::new();
    for r in rows {
        let flags: Vec<&str> = r[2].split(',').collect();
        let mut slots = Vec::new();
        // `[slot->-id]` and `[slot-<-id]`: slots in migration, not served yet.
        for s in r[8..].iter().filter(|s| !s.starts_with('[')) {
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            slots.push((a.parse().ok()?, b.parse().ok()?));
        }
        let bad = ["fail", "fail?", "handshake", "noaddr"];
        nodes.push(RedisNode {
            port: port_of(r[1])?,
            role: if flags.contains(&"master") {
                Role::Primary
            } else {
                Role::Replica
            },
            primary: ids.iter().find(|(id, _)| *id == r[3]).map(|(_, p)| *p),
            slots,
            failing: flags.iter().any(|f| bad.contains(f)) || r[7] != "connected",
        });
    }
    nodes.sort();
    Some(nodes)
}

/// Each entry of `CLUSTER SLOTS`: `[start, end, [ip, port, id], replicas...]`.
pub(super) async fn slot_owner(port: u16, key: &str) -> Result<u16, String> {
    let slot: i64 = query(port, &["CLUSTER", "KEYSLOT", key]).await?;
    let Value::Array(ranges) = query(port, &["CLUSTER", "SLOTS"]).await? else {
        return Err(format!("{port}: CLUSTER SLOTS is not an array"));
    };
    for range in &ranges {
        if let Value::Array(r) = range
            && let [Value::Int(a), Value::Int(b), Value::Array(primary), ..] = &r[..]
            && (*a..=*b).contains(&slot)
            && let Some(Value::Int(p)) = primary.get(1)
        {
            return u16::try_from(*p).map_err(|e| format!("{port}: port {p}: {e}"));
        }
    }
    Err(format!("{port}: no owner of slot {slot} in CLUSTER SLOTS"))
}
