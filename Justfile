# Car ERP developer workflows. `just --list` shows them all.

export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", "/var/cache/carerp/target")

# The demo garage on this machine.
dev:
    cargo dev

# The whole suite (needs PostgreSQL and NATS; .ci/run starts them).
test:
    cargo test --workspace

# Format check and clippy, as CI runs them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

fmt:
    cargo fmt --all

# Recompile the gRPC contracts (they are compiled by proto/build.rs on every build anyway).
proto:
    cargo build -p carerp-proto

# What CI runs.
ci:
    bash .ci/run

# Regenerate the CarErpTenant CRD in crds/ from the operator's Rust types.
crds:
    cargo run -q -p carerp-operator -- crd > crds/carerp.io_carerptenants.yaml

# Drive N work orders (BENCH_WORK_ORDERS, default 200) through the saga; prints throughput,
# completion -> INVOICED p50/p99 and the relay's events per second.
bench-events:
    cargo run --release -p carerp-e2e --bin bench-events
