//! TLS on every connection with libpq's meaning (SPEC 6), and no message content
//! on the replication connection's wire (SPEC 5's column lists).
//!
//! ```text
//!  tls/matrix.rs        every sslmode × server kind: replytime's admin, sink and
//!                       replication connections end as psql 15 does (refused, in
//!                       clear, encrypted), as pg_stat_ssl shows each of them
//!  tls/system_roots.rs  sslrootcert=system is the OS store (SSL_CERT_FILE), as a
//!                       libpq 16+ (psycopg's) has it
//!  tls/capture.rs       the replication connection's bytes through a relay: no
//!                       message body in clear text (column list), nothing readable
//!                       with the default URL against a TLS server
//!  tls/operator.rs      status shows each connection's TLS; validate-config
//!                       refuses TLS settings that cannot work
//! ```

mod common;
#[allow(dead_code)]
mod support;

#[path = "tls/capture.rs"]
mod capture;
#[path = "tls/matrix.rs"]
mod matrix;
#[path = "tls/operator.rs"]
mod operator;
#[path = "tls/system_roots.rs"]
mod system_roots;
