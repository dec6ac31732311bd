//! `/metrics`, `/healthz` and `/readyz` over plain HTTP/1.1.
//!
//! Hand-written on tokio: three fixed GET routes, one response per connection, no
//! bodies to parse. A web framework would add far more code than it saves here.
//!
//! `/readyz` and `replytime_ready` are judged by the same call
//! ([`Health::readiness`]) at the moment of the request, so they always agree; the
//! body of a 503 names every reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::metrics::METRICS;

use super::health::Health;

/// Binds the address (a clear error when it is in use) and serves until dropped.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for metrics on {addr} (REPLYTIME_METRICS_ADDR): {e}"),
        )
    })
}

pub(crate) async fn serve(listener: TcpListener, health: Arc<Health>) {
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
    const OK: &str = "200 OK";
    const UNAVAILABLE: &str = "503 Service Unavailable";
    match path.split('?').next().unwrap_or(path) {
        "/metrics" => {
            METRICS.ready.set(i64::from(health.readiness().is_ok()));
            (
                OK,
                "text/plain; version=0.0.4; charset=utf-8",
                METRICS.render(),
            )
        }
        "/healthz" if health.live.load(Ordering::Relaxed) => (OK, "text/plain", "ok\n".into()),
        "/healthz" => (UNAVAILABLE, "text/plain", "not live\n".into()),
        "/readyz" => match health.readiness() {
            Ok(()) => (OK, "text/plain", "ready\n".into()),
            Err(reasons) => (UNAVAILABLE, "text/plain", readyz_body(&reasons)),
        },
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    }
}

/// `not ready` and one line per reason.
fn readyz_body(reasons: &[String]) -> String {
    let mut body = String::from("not ready\n");
    for reason in reasons {
        body.push_str("- ");
        body.push_str(reason);
        body.push('\n');
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_and_the_ready_gauge_agree_and_say_why() {
        let health = Health::default();
        let (status, _, body) = respond("/readyz", &health);
        assert_eq!(status, "503 Service Unavailable");
        assert!(body.starts_with("not ready\n- not streaming"), "{body}");
        let (_, _, metrics) = respond("/metrics", &health);
        assert!(metrics.contains("\nreplytime_ready 0\n"), "{metrics}");

        health.ready.store(true, Ordering::SeqCst);
        assert_eq!(respond("/readyz", &health).0, "200 OK");
        let (_, _, metrics) = respond("/metrics", &health);
        assert!(metrics.contains("\nreplytime_ready 1\n"), "{metrics}");
    }
}
