//! One module per subcommand, above the pipeline: each takes the settings and the
//! subcommand's arguments (parsed by `crate::cli`) and calls into the layers below;
//! errors carry their context up to `main`.

pub(crate) mod backfill;
pub(crate) mod check;
pub(crate) mod ownership;
pub mod repair;
pub mod report;
pub(crate) mod run;
pub(crate) mod simulate;
pub(crate) mod status;
