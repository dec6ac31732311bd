//! TLS on every connection with libpq's meaning (SPEC 6).
//!
//! ```text
//!  tls/matrix.rs        every sslmode × server kind: replytime's admin, sink and
//!                       replication connections end as psql 15 does (refused, in
//!                       clear, encrypted), as pg_stat_ssl shows each of them
//!  tls/system_roots.rs  sslrootcert=system is the OS store (SSL_CERT_FILE), as a
//!                       libpq 16+ (psycopg's) has it
//! ```

mod common;
#[allow(dead_code)]
mod support;

#[path = "tls/matrix.rs"]
mod matrix;
#[path = "tls/system_roots.rs"]
mod system_roots;
