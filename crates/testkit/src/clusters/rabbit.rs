//! A RabbitMQ cluster of three nodes of its own, for quorum queues and a node that leaves and comes back.
//! The shared `rabbit@localhost` is never touched nor joined: the nodes have names unique to the cluster,
//! and ports, directories and config of their own. They run as the `rabbitmq` user with its HOME, so that
//! server and `rabbitmqctl` share its Erlang cookie, and `-detached`: Drop stops them with `rabbitmqctl`
//! (and SIGKILLs a VM that stays), then removes their directories.

use super::{first_ok, free_port, output, tail, until};
use rand::Rng;
use rustix::process::{Pid, Signal, geteuid, kill_process};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// Three nodes booting at once take ~12 s on an idle 2-core machine, ~40 s beside two more clusters.
const BOOT: Duration = Duration::from_secs(120);
const CTL: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

struct Node {
    name: String,
    port: u16,
    dist_port: u16,
    dir: PathBuf,
}

pub struct RabbitCluster {
    dir: PathBuf,
    nodes: Vec<Node>,
    /// Nodes whose app `stop_node` stopped: not asked anything until started again.
    stopped: Mutex<Vec<bool>>,
}

impl RabbitCluster {
    /// Starts three nodes at once, joins the second and third to the first (one at a time), and returns
    /// once the cluster reports three running nodes.
    pub async fn start() -> RabbitCluster {
        let id = format!("fsc{:08x}", rand::rng().random::<u32>());
        let dir = std::env::temp_dir().join(format!("flashsale-rabbit-{id}"));
        let mut taken = Vec::new();
        let mut nodes = Vec::new();
        for letter in ["a", "b", "c"] {
            // The distribution port too: RabbitMQ's default (AMQP + 20000) may be anyone's.
            let port = free_port(10000..20000, &[], &taken);
            taken.push(port);
            let dist_port = free_port(10000..20000, &[], &taken);
            taken.push(dist_port);
            let name = format!("{id}{letter}@localhost");
            nodes.push(Node {
                name,
                port,
                dist_port,
                dir: dir.join(letter),
            });
        }
        // Built before anything starts, so that a failure from here on still stops what started.
        let cluster = RabbitCluster {
            dir,
            nodes,
            stopped: Mutex::new(vec![false; 3]),
        };
        cluster.prepare();
        for i in 0..3 {
            cluster.launch(i).await;
        }
        futures_util::future::join_all((0..3).map(|i| cluster.await_boot(i))).await;
        // One at a time (about 3 s each), so that no two joins change the first node's schema at once.
        let first = cluster.nodes[0].name.clone();
        for i in 1..3 {
            for args in [&["stop_app"][..], &["join_cluster", &first], &["start_app"]] {
                cluster.ctl_or_panic(i, args).await;
            }
        }
        cluster.wait_running(|r| r.len() == 3).await;
        cluster
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f` of the three nodes, comma-separated.
    pub fn amqp_urls(&self) -> String {
        let urls: Vec<String> = (0..self.nodes.len()).map(|i| self.amqp_url(i)).collect();
        urls.join(",")
    }

    /// Node `i`'s (0, 1 or 2) AMQP URL; `guest` may log in, from 127.0.0.1 only.
    pub fn amqp_url(&self, i: usize) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port_of(i))
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Node `i`'s AMQP port.
    pub fn port_of(&self, i: usize) -> u16 {
        self.nodes[i].port
    }

    /// Stops node `i` serving with `stop_app`: its AMQP listener closes and its queue replicas go down,
    /// but its Erlang VM stays, so that `start_node` is a `start_app` of a few seconds rather than a VM
    /// boot and a rejoin. Returns once the other nodes no longer count it as running.
    pub async fn stop_node(&self, i: usize) {
        self.ctl_or_panic(i, &["stop_app"]).await;
        self.stopped.lock().unwrap_or_else(PoisonError::into_inner)[i] = true;
        let name = &self.nodes[i].name;
        self.wait_running(|r| !r.contains(name)).await;
    }

    /// Starts node `i` serving again; returns once it takes AMQP connections and is running again in
    /// the others' eyes.
    pub async fn start_node(&self, i: usize) {
        self.ctl_or_panic(i, &["start_app"]).await;
        self.stopped.lock().unwrap_or_else(PoisonError::into_inner)[i] = false;
        self.await_boot(i).await;
        let name = &self.nodes[i].name;
        self.wait_running(|r| r.contains(name)).await;
    }

    /// The running nodes, sorted, as the first serving node's `cluster_status` reports them.
    pub async fn running_nodes(&self) -> Vec<String> {
        self.try_running_nodes()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The nodes holding a replica of the quorum queue `queue` (in vhost `/`), sorted; empty while there
    /// is no such queue.
    pub async fn quorum_members(&self, queue: &str) -> Vec<String> {
        let args = [
            "list_queues",
            "-p",
            "/",
            "name",
            "type",
            "members",
            "--formatter",
            "json",
        ];
        let out = self.ask(&args).await.unwrap_or_else(|e| panic!("{e}"));
        let rows: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("list_queues: {e}: {out}"));
        let row = rows
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == queue));
        let mut members = row.map(|r| names(&r["members"])).unwrap_or_default();
        members.sort();
        members
    }

    async fn try_running_nodes(&self) -> Result<Vec<String>, String> {
        let out = self.ask(&["cluster_status", "--formatter", "json"]).await?;
        let status: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| format!("cluster_status: {e}: {out}"))?;
        let mut running = names(&status["running_nodes"]);
        running.sort();
        Ok(running)
    }

    async fn wait_running(&self, want: impl Fn(&Vec<String>) -> bool) {
        let want = &want;
        let probe = || async move {
            let running = self.try_running_nodes().await?;
            if want(&running) {
                Ok(())
            } else {
                Err(format!("running: {running:?}"))
            }
        };
        until("the running nodes to change", CTL, POLL, probe).await;
    }

    /// `rabbitmqctl` against the first node that is serving, else the next.
    async fn ask(&self, args: &[&str]) -> Result<String, String> {
        let stopped = self
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let serving = (0..self.nodes.len()).filter(|i| !stopped[*i]).collect();
        first_ok(serving, |i| self.ctl(i, args)).await
    }

    /// `rabbitmqctl -n NODE args` as the `rabbitmq` user.
    async fn ctl(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::from(as_rabbitmq("rabbitmqctl", &[]));
        cmd.args(["-n", &self.nodes[i].name])
            .args(args)
            .current_dir(&self.dir);
        output(cmd, CTL).await
    }

    async fn ctl_or_panic(&self, i: usize, args: &[&str]) {
        if let Err(e) = self.ctl(i, args).await {
            panic!("{e}\n{}", self.log(i));
        }
    }

    /// Each node's directory with its `rabbitmq.conf` (the AMQP listener on loopback, where `guest` may
    /// log in) and no plugins (no management: a faster boot), owned by `rabbitmq`.
    fn prepare(&self) {
        let mut paths = vec![self.dir.clone()];
        for n in &self.nodes {
            std::fs::create_dir_all(&n.dir).unwrap_or_else(|e| panic!("{:?}: {e}", n.dir));
            let conf = format!("listeners.tcp.local = 127.0.0.1:{}\n", n.port);
            for (file, text) in [
                ("rabbitmq.conf", conf.as_str()),
                ("enabled_plugins", "[].\n"),
            ] {
                let path = n.dir.join(file);
                std::fs::write(&path, text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
                paths.push(path);
            }
            paths.push(n.dir.clone());
        }
        if let Some((uid, gid, _)) = account().filter(|_| is_root()) {
            for p in paths {
                let owned = std::os::unix::fs::chown(&p, Some(uid), Some(gid));
                owned.unwrap_or_else(|e| panic!("chown {p:?}: {e}"));
            }
        }
    }

    async fn launch(&self, i: usize) {
        let n = &self.nodes[i];
        let d = n.dir.display();
        let env = [
            ("RABBITMQ_NODENAME", n.name.clone()),
            ("RABBITMQ_NODE_PORT", n.port.to_string()),
            ("RABBITMQ_DIST_PORT", n.dist_port.to_string()),
            ("RABBITMQ_MNESIA_BASE", format!("{d}/mnesia")),
            ("RABBITMQ_LOG_BASE", format!("{d}/log")),
            ("RABBITMQ_CONFIG_FILE", format!("{d}/rabbitmq.conf")),
            ("RABBITMQ_PID_FILE", format!("{d}/pid")),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                format!("{d}/enabled_plugins"),
            ),
        ];
        let mut cmd = Command::from(as_rabbitmq("rabbitmq-server", &env));
        cmd.arg("-detached").current_dir(&n.dir);
        if let Err(e) = output(cmd, CTL).await {
            panic!("{e}");
        }
    }

    /// Until node `i` takes TCP connections on its AMQP port and `await_startup` agrees; fails at once,
    /// with its log, if its VM died.
    async fn await_boot(&self, i: usize) {
        let n = &self.nodes[i];
        let probe = || async move {
            if n.dir.join("pid").exists() && self.vm(i).is_none() {
                panic!("{} died while booting:\n{}", n.name, self.log(i));
            }
            let conn = tokio::net::TcpStream::connect(("127.0.0.1", n.port)).await;
            conn.map(drop).map_err(|e| e.to_string())
        };
        until(&format!("{} to boot", n.name), BOOT, POLL, probe).await;
        self.ctl_or_panic(i, &["await_startup", "--timeout", "60"])
            .await;
    }

    /// Node `i`'s VM while it runs: the pid in its pid file, if that process has the node's name in its
    /// environment (a zombie has none; a recycled pid has another).
    fn vm(&self, i: usize) -> Option<Pid> {
        let n = &self.nodes[i];
        let pid: i32 = std::fs::read_to_string(n.dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let mine = format!("RABBITMQ_NODENAME={}", n.name);
        let ours = environ.split(|b| *b == 0).any(|v| v == mine.as_bytes());
        if ours { Pid::from_raw(pid) } else { None }
    }

    fn log(&self, i: usize) -> String {
        let n = &self.nodes[i];
        tail(&n.dir.join("log").join(format!("{}.log", n.name)), 20)
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.vm(*i).is_some())
            .collect();
        let mut stops: Vec<std::process::Child> = Vec::new();
        for i in &live {
            let mut cmd = as_rabbitmq("rabbitmqctl", &[]);
            cmd.args(["-n", &self.nodes[*i].name, "stop"])
                .current_dir(&self.dir);
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null());
            stops.extend(cmd.stderr(std::process::Stdio::null()).spawn().ok());
        }
        // `stop` returns before the VM is gone: wait for both, then SIGKILL what stays.
        let deadline = Instant::now() + Duration::from_secs(30);
        let busy = |s: &mut Vec<std::process::Child>| {
            s.iter_mut().any(|c| matches!(c.try_wait(), Ok(None)))
        };
        while (busy(&mut stops) || live.iter().any(|i| self.vm(*i).is_some()))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for c in &mut stops {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in live.iter().filter_map(|i| self.vm(*i)) {
            let _ = kill_process(pid, Signal::Kill);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn names(v: &serde_json::Value) -> Vec<String> {
    let items = v.as_array().into_iter().flatten();
    items.filter_map(|n| n.as_str().map(String::from)).collect()
}

fn is_root() -> bool {
    geteuid().as_raw() == 0
}

/// The `rabbitmq` user's uid, gid and home, from /etc/passwd.
fn account() -> Option<(u32, u32, String)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("rabbitmq:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((
        f.get(2)?.parse().ok()?,
        f.get(3)?.parse().ok()?,
        f.get(5)?.to_string(),
    ))
}

/// `program` with `env`, as the `rabbitmq` user with its HOME (hence its cookie) when we are root; as
/// ourselves, with our own cookie for server and CLI alike, otherwise.
fn as_rabbitmq(program: &str, env: &[(&str, String)]) -> std::process::Command {
    let vars = env.iter().map(|(k, v)| format!("{k}={v}"));
    let mut cmd = std::process::Command::new(if is_root() { "runuser" } else { "env" });
    if is_root() {
        let home = account().map_or_else(|| "/var/lib/rabbitmq".to_string(), |a| a.2);
        cmd.args(["-u", "rabbitmq", "--", "env", &format!("HOME={home}")]);
    }
    cmd.args(vars).arg(program);
    cmd
}
