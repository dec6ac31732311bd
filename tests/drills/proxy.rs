//! A loopback TCP proxy the drills put between the daemon and Postgres, to cut the
//! network on command.
//!
//! ```text
//!  daemon ──▶ 127.0.0.1:<proxy port> ──copy_bidirectional──▶ 127.0.0.1:<postgres port>
//!              cut():  drop every live connection (both sides see the close)
//!              down(): cut, and close each new connection at once until up()
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
    accept: AbortHandle,
}

struct Shared {
    target: u16,
    up: AtomicBool,
    connections: Mutex<Vec<AbortHandle>>,
}

impl Proxy {
    /// Starts forwarding a new loopback port to `127.0.0.1:target`.
    pub async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            target,
            up: AtomicBool::new(true),
            connections: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone())).abort_handle();
        Proxy {
            port,
            shared,
            accept,
        }
    }

    /// `url` with its port replaced by the proxy's.
    pub fn url_for(&self, url: &str, target_port: u16) -> String {
        url.replace(
            &format!("127.0.0.1:{target_port}/"),
            &format!("127.0.0.1:{}/", self.port),
        )
    }

    /// Drops every live connection; new ones are accepted as before.
    pub fn cut(&self) {
        let mut connections = self.shared.connections.lock().expect("proxy connections");
        for connection in connections.drain(..) {
            connection.abort();
        }
    }

    /// Cuts, and closes new connections at once until `up`.
    pub fn down(&self) {
        self.shared.up.store(false, Ordering::SeqCst);
        self.cut();
    }

    pub fn up(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
    }

    /// Live forwarded connections.
    pub fn live(&self) -> usize {
        let mut connections = self.shared.connections.lock().expect("proxy connections");
        connections.retain(|c| !c.is_finished());
        connections.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if !shared.up.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let target = shared.target;
        let forward = tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
                return;
            };
            let mut client = client;
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
        let mut connections = shared.connections.lock().expect("proxy connections");
        connections.retain(|c| !c.is_finished());
        connections.push(forward.abort_handle());
        // A `down` that raced with this accept must not leave it open.
        if !shared.up.load(Ordering::SeqCst) {
            forward.abort();
        }
    }
}
