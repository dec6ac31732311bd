//! replytime: exact, incremental response-timing rows from a CRM's Postgres logical
//! replication stream.
//!
//! ```text
//!  Postgres WAL ──pgoutput──▶ source ──Change──▶ engine ──SinkOp──▶ store (state + outbox)
//!                              ▲                                        │
//!                              └──── confirm LSN ◀── progress ◀── sink ◀┘
//! ```

#![warn(unreachable_pub)]

pub mod change;
pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod fault;
pub mod lsn;
#[cfg(feature = "oracle")]
pub mod oracle;
pub mod pgconn;
pub mod pipeline;
pub mod row;
pub mod shard;
pub mod sink;
pub mod source;
pub mod store;
pub mod tables;
pub mod telemetry;
pub mod timestamp;
pub mod workload;
