//! `/metrics`, `/healthz` and `/readyz` over plain HTTP/1.1.
//!
//! Hand-written on tokio: three fixed GET routes, one response per connection, no
//! bodies to parse. A web framework would add far more code than it saves here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::metrics::METRICS;

/// Liveness and readiness as the daemon reports them.
#[derive(Default)]
pub struct Health {
    pub live: AtomicBool,
    pub ready: AtomicBool,
    /// Raised by SIGTERM or SIGINT: long synchronous work (deriving every anchor
    /// of an initial load) checks it between batches and stops.
    pub stopping: std::sync::Arc<AtomicBool>,
}

/// Binds the address (a clear error when it is in use) and serves until dropped.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for metrics on {addr} (REPLYTIME_METRICS_ADDR): {e}"),
        )
    })
}

pub async fn serve(listener: TcpListener, health: Arc<Health>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let health = health.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                socket.read(&mut buf),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, content_type, body) = respond(path, &health);
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

fn respond(path: &str, health: &Health) -> (&'static str, &'static str, String) {
    let check = |ok: bool| {
        if ok {
            ("200 OK", "text/plain", "ok\n".to_string())
        } else {
            (
                "503 Service Unavailable",
                "text/plain",
                "not ready\n".to_string(),
            )
        }
    };
    match path.split('?').next().unwrap_or(path) {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            METRICS.render(),
        ),
        "/healthz" => check(health.live.load(Ordering::Relaxed)),
        "/readyz" => check(health.ready.load(Ordering::Relaxed)),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    }
}
