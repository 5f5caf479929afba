//! A private `redis-server` for one test, on a port of its own, for what a shared server cannot show: a node
//! turned read-only replica, command counts. Keeps nothing on disk; killed when dropped.

use std::process::Stdio;
use std::time::Duration;

pub struct LocalRedis {
    pub port: u16,
    child: tokio::process::Child,
    dir: std::path::PathBuf,
}

impl LocalRedis {
    pub async fn start() -> LocalRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("free port: {e}"));
        let dir = std::env::temp_dir().join(format!("flashsale-redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server (is it installed?): {e}"));
        let server = LocalRedis { port, child, dir };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while server.try_cmd(&["PING"]).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server on {port} did not come up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    async fn try_cmd(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query_async(&mut conn).await
    }

    /// Runs one command, failing the test on error.
    pub async fn cmd(&self, args: &[&str]) -> redis::Value {
        self.try_cmd(args)
            .await
            .unwrap_or_else(|e| panic!("redis {args:?} on {}: {e}", self.port))
    }

    /// `INFO <section>` as text.
    pub async fn info(&self, section: &str) -> String {
        match self.cmd(&["INFO", section]).await {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::VerbatimString { text, .. } => text,
            other => format!("{other:?}"),
        }
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
