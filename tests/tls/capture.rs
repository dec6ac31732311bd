//! The bytes of the daemon's source connections, captured by a relay between it
//! and Postgres, with the default replica identity:
//!
//! ```text
//!  replytime run ──▶ 127.0.0.1:<relay> ──▶ Postgres      (the sink connects directly)
//!                       │ every byte, per connection and direction
//!                       ▼
//!  sslmode=disable: the replication connection carries the inserted message's id,
//!                   never its body (the publication's column list)
//!  default URL:     SSLRequest, 'S', then TLS records: nothing readable
//! ```

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{TestDb, cluster, fresh_database};
use crate::support::{Daemon, confirmed_lsn, current_lsn, eventually, slot_for, wait_streaming};

/// One relayed connection's bytes.
#[derive(Default)]
struct Captured {
    from_client: Vec<u8>,
    from_server: Vec<u8>,
}

impl Captured {
    fn is_replication(&self) -> bool {
        contains(&self.from_client, b"replication\0database\0")
    }
}

struct CaptureRelay {
    port: u16,
    connections: Arc<Mutex<Vec<Arc<Mutex<Captured>>>>>,
}

impl CaptureRelay {
    async fn start(target: u16) -> CaptureRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let port = listener.local_addr().expect("relay address").port();
        let connections: Arc<Mutex<Vec<Arc<Mutex<Captured>>>>> = Arc::default();
        let all = connections.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let captured = Arc::new(Mutex::new(Captured::default()));
                all.lock().unwrap().push(captured.clone());
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, captured.clone(), true));
                tokio::spawn(pump(server_read, client_write, captured, false));
            }
        });
        CaptureRelay { port, connections }
    }

    fn url_for(&self, url: &str) -> String {
        url.replace(
            &format!("127.0.0.1:{}/", cluster().port),
            &format!("127.0.0.1:{}/", self.port),
        )
    }

    /// The bytes of the replication connections (the initial load's and the
    /// stream's), client and server sides joined.
    fn replication_bytes(&self) -> (Vec<u8>, Vec<u8>) {
        let mut from_client = Vec::new();
        let mut from_server = Vec::new();
        for captured in self.connections.lock().unwrap().iter() {
            let captured = captured.lock().unwrap();
            if captured.is_replication() {
                from_client.extend_from_slice(&captured.from_client);
                from_server.extend_from_slice(&captured.from_server);
            }
        }
        (from_client, from_server)
    }

    /// Every relayed byte, both directions, all connections.
    fn all_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for captured in self.connections.lock().unwrap().iter() {
            let captured = captured.lock().unwrap();
            all.extend_from_slice(&captured.from_client);
            all.extend_from_slice(&captured.from_server);
        }
        all
    }

    fn connection_count(&self) -> usize {
        self.connections.lock().unwrap().len()
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    captured: Arc<Mutex<Captured>>,
    client_side: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut captured = captured.lock().unwrap();
            let side = if client_side {
                &mut captured.from_client
            } else {
                &mut captured.from_server
            };
            side.extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const MESSAGE_ID: &str = "msg-on-the-wire-7f3c";
const BODY: &str = "BODY-NEVER-ON-THE-WIRE-51d2";

/// Runs the daemon with its source URL through `relay` (`params` appended), writes
/// one message as the application, and waits until the slot confirmed it; returns
/// the daemon's log.
async fn run_daemon_through(
    db: &TestDb,
    relay: &CaptureRelay,
    params: &str,
    env: &[(&str, &str)],
) -> String {
    let source_url = format!("{}{params}", relay.url_for(&db.url));
    let state = tempfile::tempdir().unwrap();
    let mut sink_env = vec![("REPLYTIME_SINK_URL", db.url.as_str())];
    sink_env.extend_from_slice(env);
    let mut daemon = Daemon::spawn(&source_url, state.path(), &sink_env);
    wait_streaming(&db.client, &source_url).await;
    db.client
        .batch_execute(&format!(
            "INSERT INTO \"Message\" (id, \"leadId\", channel, direction, \"sentAt\", body) \
             VALUES ('{MESSAGE_ID}', 'lead-1', 'email', 'inbound', now(), '{BODY}')"
        ))
        .await
        .expect("the application's insert");
    let written = current_lsn(&db.client).await;
    let slot = slot_for(&source_url);
    eventually(
        Duration::from_secs(60),
        "the slot to confirm the insert",
        || async {
            confirmed_lsn(&db.client, &slot)
                .await
                .is_some_and(|lsn| lsn >= written)
        },
    )
    .await;
    assert!(
        daemon.stop().success(),
        "daemon log:\n{}",
        daemon.log_text()
    );
    daemon.log_text()
}

fn grants_sql() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/postgres/grants.sql");
    std::fs::read_to_string(path).expect("read deploy/postgres/grants.sql")
}

/// Where the publication comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Publication {
    /// `deploy/postgres/grants.sql` (an admin creates it).
    Grants,
    /// The daemon creates it.
    Daemon,
    /// An operator's publication of every column: the body crosses, and the
    /// daemon warns.
    EveryColumn,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_clear_text_the_replication_connection_carries_no_message_body() {
    for publication in [
        Publication::Grants,
        Publication::Daemon,
        Publication::EveryColumn,
    ] {
        let db = fresh_database().await;
        db.apply_source_schema().await;
        let setup = match publication {
            Publication::Grants => grants_sql(),
            Publication::Daemon => String::new(),
            Publication::EveryColumn => "CREATE PUBLICATION replytime FOR TABLE \"Lead\", \
                \"EmailCampaign\", \"Message\", \"AIDraft\", \"BackgroundJob\""
                .to_string(),
        };
        db.client
            .batch_execute(&setup)
            .await
            .expect("publication set-up");
        let env: &[(&str, &str)] = match publication {
            Publication::Daemon => &[],
            _ => &[("REPLYTIME_PUBLICATION", "replytime")],
        };
        let relay = CaptureRelay::start(cluster().port).await;
        let log = run_daemon_through(&db, &relay, "?sslmode=disable", env).await;
        let (from_client, from_server) = relay.replication_bytes();
        assert!(
            contains(&from_client, b"START_REPLICATION"),
            "{publication:?}: the relay saw the replication connection in clear text"
        );
        assert!(
            contains(&from_server, MESSAGE_ID.as_bytes()),
            "{publication:?}: the message's row crossed the replication connection"
        );
        let warned = log.contains("the publication sends columns replytime does not read");
        if publication == Publication::EveryColumn {
            assert!(
                contains(&from_server, BODY.as_bytes()),
                "an every-column publication sends the body (else this capture sees nothing)"
            );
            assert!(warned, "the daemon warns of the unread columns:\n{log}");
            continue;
        }
        assert!(
            !contains(&from_server, BODY.as_bytes()),
            "{publication:?}: the message body crossed the replication connection"
        );
        assert!(
            !contains(&relay.all_bytes(), BODY.as_bytes()),
            "{publication:?}: the message body crossed a source connection"
        );
        assert!(
            !warned,
            "{publication:?}: no warning with column lists:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_url_nothing_on_the_wire_is_readable() {
    assert!(
        cluster().tls.is_some(),
        "the harness cluster runs with TLS (openssl is installed)"
    );
    let db = fresh_database().await;
    db.apply_source_schema().await;
    let relay = CaptureRelay::start(cluster().port).await;
    run_daemon_through(&db, &relay, "", &[]).await;
    assert!(
        relay.connection_count() >= 3,
        "admin, load and stream connections"
    );
    let all = relay.all_bytes();
    for readable in [
        MESSAGE_ID.as_bytes(),
        BODY.as_bytes(),
        b"START_REPLICATION".as_slice(),
        b"replication\0database".as_slice(),
        b"pgoutput".as_slice(),
        b"Message".as_slice(),
    ] {
        assert!(
            !contains(&all, readable),
            "{:?} is readable on the wire",
            String::from_utf8_lossy(readable)
        );
    }
    // Every connection opened with SSLRequest, and the server said 'S'.
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    for captured in relay.connections.lock().unwrap().iter() {
        let captured = captured.lock().unwrap();
        assert!(
            captured.from_client.starts_with(&SSL_REQUEST),
            "a connection did not start with SSLRequest"
        );
        assert_eq!(
            captured.from_server.first(),
            Some(&b'S'),
            "the server accepted TLS"
        );
    }
}
