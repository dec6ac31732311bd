#!/bin/sh
# Fault drills (tests/drills.rs): kill -9 under load, crashes between the chunks of
# large transactions, Postgres restart mid-stream,
# sink unavailable (REPLYTIME_DRILL_SINK_DOWN_SECONDS, default 60), network cut to the
# source, disk full on the state directory (needs root for mount -t tmpfs; skipped
# with a message otherwise). The drills share one throwaway cluster and run one at a
# time. Extra arguments go to the test binary (e.g. a drill's name).
set -eu
cd "$(dirname "$0")/.."
# The same targets as `make test`'s cargo-test, so that the drills reuse its build:
# `--test drills` alone resolves some dependencies' features differently and
# recompiles them. The filter then runs the drills alone (`drill_`, or the names
# given); the other test binaries run nothing.
[ $# -gt 0 ] || set -- drill_
exec cargo test --release --lib --bins --tests -- --ignored --nocapture --test-threads=1 "$@"
