//! A Redis Cluster of 3 primaries and 3 replicas on ports of its own, for what one server cannot show: keys
//! spread over slots, a primary lost and its replica promoted. The nodes are child processes (never
//! `--daemonize`), so dropping the cluster, or the test process dying, takes them down; nothing is saved.
//! Plain connections to single nodes only: the launcher does not need the `cluster-async` client.

use super::redis_nodes::{NODES, complete, covers, has_line, query, slot_owner, state, url, view};
pub use super::redis_nodes::{RedisNode, Role};
use super::{first_ok, free_port, output, tail, until};
use redis::aio::MultiplexedConnection;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::process::{Child, Command};

const PORTS: std::ops::Range<u16> = 20000..30000;
/// Redis's cluster bus listens on the client port + 10000: both must be free.
const BUS_OFFSET: u16 = 10000;
/// Short, so that a killed primary is declared failed, and its replica promoted, within seconds.
const NODE_TIMEOUT_MS: u32 = 2000;

struct Proc {
    port: u16,
    child: Child,
    /// Set by `kill_primary` to the slots the node served: what `wait_failover` waits to see move.
    killed: Option<Vec<(u16, u16)>>,
}

pub struct RedisCluster {
    dir: PathBuf,
    procs: Mutex<Vec<Proc>>,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster, and returns once every node agrees that all slots are
    /// served and every primary has its replica, and every replica's link is up (a replica still
    /// syncing would make a failover test flaky).
    pub async fn start() -> RedisCluster {
        let mut ports: Vec<u16> = Vec::new();
        for _ in 0..NODES {
            ports.push(free_port(PORTS, &[BUS_OFFSET], &ports));
        }
        let names: Vec<String> = ports.iter().map(u16::to_string).collect();
        let (pid, names) = (std::process::id(), names.join("-"));
        let dir = std::env::temp_dir().join(format!("flashsale-redis-cluster-{pid}-{names}"));
        let _ = std::fs::remove_dir_all(&dir);
        // Built before anything starts, so that a failure from here on still tears down what started.
        let cluster = RedisCluster {
            dir,
            procs: Mutex::default(),
        };
        for mut port in ports.clone() {
            // Another process may take a port between the check and redis-server's bind: try another.
            let mut tries = 1;
            let child = loop {
                match launch(&cluster.dir, port).await {
                    Ok(child) => break child,
                    Err(e) if tries < 5 => tracing::warn!("redis cluster node: {e}; another port"),
                    Err(e) => panic!("{e}"),
                }
                tries += 1;
                let taken = [&ports[..], &cluster.ports()].concat();
                port = free_port(PORTS, &[BUS_OFFSET], &taken);
            };
            cluster.procs().push(Proc {
                port,
                child,
                killed: None,
            });
        }
        let addrs: Vec<String> = cluster
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]).args(&addrs);
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        if let Err(e) = output(create, Duration::from_secs(60)).await {
            panic!("{e}");
        }
        let (what, every) = ("the Redis Cluster to be ready", Duration::from_millis(50));
        until(what, Duration::from_secs(30), every, || cluster.ready()).await;
        cluster
    }

    /// All six nodes' ports, in start order (a killed one included).
    pub fn ports(&self) -> Vec<u16> {
        self.procs().iter().map(|p| p.port).collect()
    }

    /// Seed URLs of all six nodes, comma-separated: the format of the services' `redis.url`.
    pub fn seeds(&self) -> String {
        let urls: Vec<String> = self.ports().into_iter().map(url).collect();
        urls.join(",")
    }

    /// A plain (non-cluster) connection to one node.
    pub async fn connect(&self, port: u16) -> MultiplexedConnection {
        let client = redis::Client::open(url(port)).unwrap_or_else(|e| panic!("{port}: {e}"));
        let conn = client.get_multiplexed_async_connection().await;
        conn.unwrap_or_else(|e| panic!("cannot connect to redis {port}: {e}"))
    }

    /// The nodes, sorted by port, with the roles the first live node's `CLUSTER NODES` gives them now.
    pub async fn nodes(&self) -> Vec<RedisNode> {
        let nodes = first_ok(self.alive(), view).await;
        nodes.unwrap_or_else(|e| panic!("no node answered CLUSTER NODES: {e}"))
    }

    /// The port of the primary serving `key`'s slot (`CLUSTER KEYSLOT`, then `CLUSTER SLOTS`) as the
    /// first live node sees it: between a kill and the failover, still the dead node.
    pub async fn primary_of_key(&self, key: &str) -> u16 {
        let owner = first_ok(self.alive(), |port| slot_owner(port, key)).await;
        owner.unwrap_or_else(|e| panic!("no node told the owner of {key:?}: {e}"))
    }

    /// SIGKILLs the primary on `port` (no shutdown, no last write) and returns its replica's port, once
    /// the process is reaped. Its handle stays, so Drop is unchanged.
    pub async fn kill_primary(&self, port: u16) -> u16 {
        let view = self.nodes().await;
        let node = view
            .iter()
            .find(|n| n.port == port && n.role == Role::Primary);
        let replica = view.iter().find(|n| n.primary == Some(port));
        let (Some(node), Some(replica)) = (node, replica) else {
            panic!("{port} is not a primary with a replica: {view:?}");
        };
        let killed = self.with(port, |p| {
            p.killed = Some(node.slots.clone());
            p.child.start_kill()
        });
        assert!(
            matches!(killed, Some(Ok(()))),
            "cannot kill {port}: {killed:?}"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.running(port) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{port} survived SIGKILL for 5 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        replica.port
    }

    /// Waits (20 s at most) until every surviving node is `cluster_state:ok` and reports the slots of
    /// the primary `kill_primary` killed as served by one other healthy primary; returns its port.
    pub async fn wait_failover(&self, old_primary: u16) -> u16 {
        let slots = self.with(old_primary, |p| p.killed.clone()).flatten();
        let slots = slots.unwrap_or_else(|| panic!("{old_primary} not killed by kill_primary"));
        let (what, every) = (
            format!("failover from {old_primary}"),
            Duration::from_millis(100),
        );
        let probe = || self.failed_over(old_primary, &slots);
        until(&what, Duration::from_secs(20), every, probe).await
    }

    async fn failed_over(&self, old: u16, slots: &[(u16, u16)]) -> Result<u16, String> {
        let mut owner = None;
        for port in self.alive() {
            let view = state(port, &["cluster_state:ok"]).await?;
            let serving: Vec<u16> = view
                .iter()
                .filter(|n| n.role == Role::Primary && !n.failing && covers(&n.slots, slots))
                .map(|n| n.port)
                .collect();
            match serving[..] {
                [p] if p != old && owner.is_none_or(|o| o == p) => owner = Some(p),
                _ => return Err(format!("{port}: {slots:?} served by {serving:?}: {view:?}")),
            }
        }
        owner.ok_or_else(|| "no surviving node".to_string())
    }

    async fn ready(&self) -> Result<(), String> {
        let want = [
            "cluster_state:ok",
            "cluster_slots_ok:16384",
            "cluster_known_nodes:6",
        ];
        let mut first: Option<Vec<RedisNode>> = None;
        for port in self.alive() {
            let view = state(port, &want).await?;
            complete(&view).map_err(|e| format!("{port}: {e}: {view:?}"))?;
            if first.as_ref().is_some_and(|f| *f != view) {
                return Err(format!("{port} disagrees: {view:?} vs {first:?}"));
            }
            let me = view.iter().find(|n| n.port == port);
            if me.is_some_and(|n| n.role == Role::Replica) {
                let repl: String = query(port, &["INFO", "replication"]).await?;
                if !has_line(&repl, "master_link_status:up")
                    || has_line(&repl, "master_sync_in_progress:1")
                {
                    return Err(format!("replica {port} not in sync"));
                }
            }
            first = Some(view);
        }
        Ok(())
    }

    fn alive(&self) -> Vec<u16> {
        let procs = self.procs();
        procs
            .iter()
            .filter(|p| p.killed.is_none())
            .map(|p| p.port)
            .collect()
    }

    fn running(&self, port: u16) -> bool {
        let running = self.with(port, |p| matches!(p.child.try_wait(), Ok(None)));
        running.unwrap_or(false)
    }

    /// `f` on the node on `port`, under the lock.
    fn with<T>(&self, port: u16, f: impl FnOnce(&mut Proc) -> T) -> Option<T> {
        self.procs().iter_mut().find(|p| p.port == port).map(f)
    }

    fn procs(&self) -> MutexGuard<'_, Vec<Proc>> {
        self.procs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for p in self.procs().iter_mut() {
            let _ = p.child.start_kill();
        }
        // Reaped before the directory goes, so that no node writes into it after the removal.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let running = || self.ports().into_iter().any(|p| self.running(p));
        while running() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts one node in `dir/port` and waits until it answers as itself (by its `process_id`, not some
/// other server that took the port first).
async fn launch(dir: &Path, port: u16) -> Result<Child, String> {
    let d = dir.join(port.to_string());
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{d:?}: {e}"));
    // In its directory (the working one: relative paths), no persistence, and no 5 s wait for more
    // replicas before a diskless full sync (there is only one).
    let flags = format!(
        "--port {port} --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes.conf \
         --cluster-node-timeout {NODE_TIMEOUT_MS} --dir . --logfile redis.log --appendonly no \
         --repl-diskless-sync-delay 0"
    );
    let mut cmd = Command::new("redis-server");
    cmd.args(flags.split_whitespace())
        .args(["--save", ""])
        .current_dir(&d);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
    let me = format!("process_id:{}", child.id().unwrap_or_default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = tail(&d.join("redis.log"), 5);
            return Err(format!("redis-server on {port} exited ({status}): {log}"));
        }
        let info = query::<String>(port, &["INFO", "server"]).await;
        if info.is_ok_and(|i| has_line(&i, &me)) {
            return Ok(child);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("redis-server on {port} did not answer within 10 s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
