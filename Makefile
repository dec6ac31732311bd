# Entry points for developers and CI (.ci/run runs `make test`).

.PHONY: deps test fmt-check clippy cargo-test drills demo release bench-bundled

# System packages (PostgreSQL 15, librocksdb-dev, libclang-dev, promtool, ...).
deps:
	./scripts/install-deps.sh

# Everything CI checks: formatting, lints, every test target, then the fault drills.
test: deps
	$(MAKE) fmt-check clippy cargo-test drills

fmt-check:
	cargo fmt --check

clippy:
	cargo clippy --all-targets -- -D warnings

cargo-test:
	cargo test --release --lib --bins --tests

# The fault drills (tests/drills.rs, ignored by cargo-test): one at a time, about
# 3 minutes, on the build cargo-test made.
drills:
	./scripts/drills.sh

# The main job on a throwaway local Postgres with a simulated CRM workload.
demo:
	./scripts/demo.sh

# The production binary, built as deploy/Dockerfile builds it by default: RocksDB
# compiled from the crate's bundled sources as a release build, instead of Debian's
# library (built with assertions on) that `make test` links. In a target directory
# of its own so the two builds do not undo each other; the first build compiles
# RocksDB (about 14 minutes on 2 cores). Output: target/bundled-rocksdb/release/replytime.
BUNDLED = ROCKSDB_COMPILE=1 CXXFLAGS=-DROCKSDB_SCHED_GETCPU_PRESENT CARGO_TARGET_DIR=target/bundled-rocksdb
release:
	$(BUNDLED) cargo build --release --locked --bin replytime --features bundled-rocksdb

# A bench on that build: `make bench-bundled BENCH=backlog` (default e2e).
BENCH ?= e2e
bench-bundled:
	$(BUNDLED) cargo bench --features bundled-rocksdb --bench $(BENCH)
