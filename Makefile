# Entry points for developers and CI (.ci/run runs `make test`).

.PHONY: deps test fmt-check clippy cargo-test demo

# System packages (PostgreSQL 15, librocksdb-dev, libclang-dev, promtool, ...).
deps:
	./scripts/install-deps.sh

# Everything CI checks: formatting, lints, and every test target.
test: deps
	$(MAKE) fmt-check clippy cargo-test

fmt-check:
	cargo fmt --check

clippy:
	cargo clippy --all-targets -- -D warnings

cargo-test:
	cargo test --release --lib --bins --tests

# The main job on a throwaway local Postgres with a simulated CRM workload.
demo:
	./scripts/demo.sh
