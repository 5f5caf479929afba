//! A TCP proxy a test can cut or blackhole, to simulate a broker outage for one test only.
//!
//! The real broker keeps running for every other test; only the clients a test points at
//! [`TcpProxy::addr`] see the outage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Pass,
    Cut,
    Blackhole,
}

/// A proxy from `127.0.0.1:<random port>` to one upstream address. Dropping it closes everything.
pub struct TcpProxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Bumped to close every connection open at that moment. Connection tasks only hold receivers,
    /// so dropping these senders (with the proxy) also ends every task.
    drops: watch::Sender<u64>,
    open: Arc<AtomicUsize>,
    upstream: watch::Sender<SocketAddr>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on 127.0.0.1:0 and forwards every connection to `upstream` (e.g. "127.0.0.1:5672").
    pub async fn start(upstream: &str) -> std::io::Result<TcpProxy> {
        // Resolve once so a bad address fails here, not silently in every connection.
        let upstream = tokio::net::lookup_host(upstream)
            .await?
            .next()
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{upstream}: no address"),
                )
            })?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let (drops, drops_rx) = watch::channel(0u64);
        let open = Arc::new(AtomicUsize::new(0));
        let (upstream, upstream_rx) = watch::channel(upstream);
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream_rx,
            mode_rx,
            drops_rx,
            open.clone(),
        ));
        Ok(TcpProxy {
            addr,
            mode,
            drops,
            open,
            upstream,
            accept,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Forward normally (default), and accept new connections.
    pub fn pass(&self) {
        self.mode.send_replace(Mode::Pass);
    }

    /// Close every open connection now and refuse (accept-then-close immediately) new ones until pass().
    pub fn cut(&self) {
        // Mode first, then the drop signal: an accept racing with us sees one or the other (see accept_loop).
        self.mode.send_replace(Mode::Cut);
        // Also bump the generation: a watch only keeps the latest value, so cut() then pass() in quick
        // succession must still close the connections that were open.
        self.drop_connections();
    }

    /// Keep connections open but stop forwarding bytes in both directions (bytes read are discarded),
    /// so a request is swallowed and no answer comes back. New connections are accepted and also swallowed.
    pub fn blackhole(&self) {
        self.mode.send_replace(Mode::Blackhole);
    }

    /// Close every open connection now (without changing the mode), so clients must reconnect.
    pub fn drop_connections(&self) {
        self.drops.send_modify(|generation| *generation += 1);
    }

    /// Send new connections to `upstream` from now on (a failover behind a stable address); connections
    /// already open stay with the old one.
    pub fn redirect(&self, upstream: SocketAddr) {
        self.upstream.send_replace(upstream);
    }

    /// Number of connections currently open through the proxy. Closing is asynchronous: after cut() or
    /// drop_connections() this reaches 0 within milliseconds, not at once.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // Connection tasks end by themselves when the senders in `self` are dropped right after this.
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: watch::Receiver<SocketAddr>,
    mode: watch::Receiver<Mode>,
    mut drops: watch::Receiver<u64>,
    open: Arc<AtomicUsize>,
) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(%error, "test proxy: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // Mark the current generation as seen *before* reading the mode, so a concurrent cut() is caught
        // either by the mode check below or by the connection's drop signal.
        drops.borrow_and_update();
        if *mode.borrow() == Mode::Cut {
            drop(client); // refused: accepted, then closed at once
            continue;
        }
        let upstream = *upstream.borrow();
        tracing::debug!(%peer, %upstream, "test proxy: connection");
        open.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(serve(
            client,
            upstream,
            mode.clone(),
            drops.clone(),
            open.clone(),
        ));
    }
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    mut drops: watch::Receiver<u64>,
    open: Arc<AtomicUsize>,
) {
    // Counted by accept_loop; the guard uncounts on every way out, including the task being dropped.
    struct Open(Arc<AtomicUsize>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _open = Open(open);
    let server = tokio::select! {
        connected = TcpStream::connect(upstream) => match connected {
            Ok(server) => server,
            Err(error) => {
                tracing::debug!(%error, %upstream, "test proxy: upstream refused");
                return;
            }
        },
        _ = drops.changed() => return,
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // One loop per direction so a peer that stops reading cannot stall the other direction.
    tokio::join!(
        pump(client_read, server_write, mode.clone(), drops.clone()),
        pump(server_read, client_write, mode, drops),
    );
}

/// Copies `from` to `to` until EOF, an error, a cut or a drop. Returning drops `to`, which shuts down
/// its write side, so the peer sees the close.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    mut drops: watch::Receiver<u64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut eof = false;
    loop {
        let current = *mode.borrow_and_update();
        if current == Mode::Cut {
            return;
        }
        // While blackholed, the far side must not even learn that this side closed: hold the half-open
        // socket and pass the EOF on only once forwarding resumes.
        if eof && current != Mode::Blackhole {
            return;
        }
        tokio::select! {
            changed = mode.changed() => if changed.is_err() { return },
            _ = drops.changed() => return,
            read = from.read(&mut buf), if !eof => match read {
                Ok(0) => eof = true,
                Ok(_) if current == Mode::Blackhole => {} // swallowed
                Ok(n) => {
                    // A write blocked on backpressure must still give way to a cut or a drop; a switch to
                    // blackhole lets it finish, so the stream is never left with half a message.
                    tokio::select! {
                        written = to.write_all(&buf[..n]) => if written.is_err() { return },
                        _ = mode.wait_for(|m| *m == Mode::Cut) => return,
                        _ = drops.changed() => return,
                    }
                }
                Err(_) => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A tiny echo server; returns its address.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("echo addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    async fn start() -> TcpProxy {
        let echo = echo_server().await;
        TcpProxy::start(&echo.to_string())
            .await
            .expect("start proxy")
    }

    /// Sends `msg` and returns what came back within `wait` (Err on timeout).
    async fn round_trip(socket: &mut TcpStream, msg: &[u8], wait: Duration) -> Result<Vec<u8>, ()> {
        socket.write_all(msg).await.expect("write");
        let mut buf = vec![0u8; msg.len()];
        match tokio::time::timeout(wait, socket.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Ok(buf),
            _ => Err(()),
        }
    }

    async fn wait_until_open(proxy: &TcpProxy, n: usize) {
        for _ in 0..200 {
            if proxy.open_connections() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "open_connections stayed {} instead of {n}",
            proxy.open_connections()
        );
    }

    /// true when the peer closed: read returns 0 or an error (a reset) rather than timing out.
    async fn closed(socket: &mut TcpStream) -> bool {
        let mut buf = [0u8; 16];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), socket.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    #[tokio::test]
    async fn pass_forwards_both_ways() {
        let proxy = start().await;
        let mut socket = TcpStream::connect(proxy.addr()).await.expect("connect");
        let echoed = round_trip(&mut socket, b"ping", Duration::from_secs(2)).await;
        assert_eq!(echoed, Ok(b"ping".to_vec()));
        wait_until_open(&proxy, 1).await;
        drop(socket);
        wait_until_open(&proxy, 0).await;
    }

    #[tokio::test]
    async fn blackhole_swallows_and_keeps_the_connection() {
        let proxy = start().await;
        let mut socket = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert!(
            round_trip(&mut socket, b"one", Duration::from_secs(2))
                .await
                .is_ok()
        );

        proxy.blackhole();
        let swallowed = round_trip(&mut socket, b"lost", Duration::from_millis(300)).await;
        assert_eq!(
            swallowed,
            Err(()),
            "a blackholed request must get no answer"
        );
        // New connections are accepted and swallowed too.
        let mut late = TcpStream::connect(proxy.addr())
            .await
            .expect("connect while blackholed");
        assert_eq!(
            round_trip(&mut late, b"late", Duration::from_millis(300)).await,
            Err(())
        );
        assert_eq!(proxy.open_connections(), 2);

        // Same socket, still open; "lost" was discarded, not delayed.
        proxy.pass();
        let echoed = round_trip(&mut socket, b"two", Duration::from_secs(2)).await;
        assert_eq!(echoed, Ok(b"two".to_vec()));
    }

    #[tokio::test]
    async fn cut_closes_and_refuses_until_pass_and_drop_connections_closes() {
        let proxy = start().await;
        let mut socket = TcpStream::connect(proxy.addr()).await.expect("connect");
        assert!(
            round_trip(&mut socket, b"hi", Duration::from_secs(2))
                .await
                .is_ok()
        );

        proxy.cut();
        assert!(closed(&mut socket).await, "cut must close open connections");
        wait_until_open(&proxy, 0).await;
        let mut refused = TcpStream::connect(proxy.addr())
            .await
            .expect("accepted while cut");
        assert!(
            closed(&mut refused).await,
            "cut must close new connections at once"
        );

        proxy.pass();
        let mut again = TcpStream::connect(proxy.addr())
            .await
            .expect("connect after pass");
        assert!(
            round_trip(&mut again, b"back", Duration::from_secs(2))
                .await
                .is_ok()
        );

        // drop_connections closes what is open but keeps forwarding for new connections.
        proxy.drop_connections();
        assert!(
            closed(&mut again).await,
            "drop_connections must close open connections"
        );
        let mut fresh = TcpStream::connect(proxy.addr()).await.expect("reconnect");
        assert!(
            round_trip(&mut fresh, b"new", Duration::from_secs(2))
                .await
                .is_ok()
        );
    }
}
