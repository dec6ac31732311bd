//! One module per subcommand, above the pipeline: each takes the settings and the
//! subcommand's arguments (parsed by `crate::cli`) and calls into the layers below;
//! errors carry their context up to `main`.

pub mod backfill;
pub mod check;
pub mod ownership;
pub mod repair;
pub mod report;
pub mod run;
pub mod simulate;
pub mod status;
