# Car ERP developer workflows. `just --list` shows them all.

export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", "/var/cache/carerp/target")

# The demo garage on this machine.
dev:
    cargo dev

# The whole suite (needs PostgreSQL and NATS; .ci/run starts them).
test:
    cargo test --workspace

# The web app's tests: pages over HTTP, then the browser test (screenshots in
# $CARGO_TARGET_DIR/ui-screenshots); installs Chromium when absent.
test-web:
    bash .ci/browser
    cargo test -p carerp-web -- --nocapture

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
    cp crds/carerp.io_carerptenants.yaml charts/carerp-operator/crds/carerp.io_carerptenants.yaml

# Render the desired state of 1,000 tenants: time per tenant and peak memory; the start-up
# time of the real control plane; then, on it, apply to Ready of 1 and of 50 tenants,
# reconciles per second at steady state and the operator's RSS with 50 tenants.
bench-operator: control-plane
    cargo run --release --bin bench-render
    cargo run -q -p carerp-e2e --bin control-plane -- --check
    cargo build -q -p carerp-operator --bins
    cargo run -q -p carerp-e2e --bin bench-operator

# Build the test control plane (kube-apiserver, controller manager, scheduler, kubectl, etcd,
# kwok, helm) from Go modules into /var/cache/carerp/control-plane; a no-op once built.
control-plane:
    bash e2e/cluster/build.sh

# A control plane to poke at by hand: prints `export KUBECONFIG=...`; Ctrl-C stops it.
control-plane-up: control-plane
    cargo run -q -p carerp-e2e --bin control-plane

# The operator against the real control plane: CRD, chart, tenant lifecycle, leader election.
test-control-plane: control-plane
    cargo build -p carerp-operator --bin carerp-operator
    cargo test -p carerp-e2e --test cluster_crd --test cluster_chart --test cluster_tenant --test cluster_leader -- --nocapture

# A local kind cluster (kind-config.yaml) for the cluster e2e suite.
kind-up:
    kind get clusters | grep -qx carerp || kind create cluster --config kind-config.yaml
    kubectl cluster-info --context kind-carerp

# Container images of the operator and every service (needs a Docker engine), tagged
# REGISTRY/carerp-<name>:TAG as the operator's Deployments name them.
images registry="ghcr.io/carerp" tag="0.1.0":
    for bin in carerp-operator carerp-customer carerp-workorder carerp-inventory carerp-billing carerp-identity carerp-bff; do \
        docker build --build-arg BIN=$bin -t {{registry}}/$bin:{{tag}} . || exit 1; \
    done

# Load the images into the kind cluster, so nothing is pulled from a registry.
kind-load registry="ghcr.io/carerp" tag="0.1.0":
    for bin in carerp-operator carerp-customer carerp-workorder carerp-inventory carerp-billing carerp-identity carerp-bff; do \
        kind load docker-image {{registry}}/$bin:{{tag}} --name carerp || exit 1; \
    done

# Install the CRD and the operator chart into the current cluster (on kind: `just images`
# and `just kind-load` first).
deploy:
    kubectl apply --server-side -f crds/carerp.io_carerptenants.yaml
    helm upgrade --install carerp charts/carerp-operator -n carerp-system --create-namespace --wait

# The e2e suites: the saga in-process, the platform as local processes through the BFF (it
# runs the built binaries, hence the build first), and the kind-cluster suite (which skips
# with a message when no cluster is reachable).
e2e:
    cargo build --workspace --bins
    cargo test -p carerp-e2e -- --nocapture

# Drive N work orders (BENCH_WORK_ORDERS, default 200) through the saga; prints throughput,
# completion -> INVOICED p50/p99 and the relay's events per second.
bench-events:
    cargo run --release --bin bench-events

# Sign-in p50/p99, the cost of verifying an access token, and an authenticated read's
# throughput with the share of it that token checks take.
bench-auth:
    cargo run --release --bin bench-auth

# The REST mix on release builds: a tenant under `carerp-operator local`, 16 clients on
# POST /api/customers, GET /api/customers/{id} and GET /api/dashboard (BENCH_SECONDS each,
# default 10) beside pgbench's single-row INSERT and SELECT by key; rate, p50/p99, the ratio
# to pgbench, idle PostgreSQL connections and RSS; figures also in target/bench/bench.json.
bench-rest:
    cargo build --release --bin carerp-operator --bin carerp-customer --bin carerp-workorder --bin carerp-inventory --bin carerp-billing --bin carerp-identity --bin carerp-bff --bin bench-rest
    cargo run --release --bin bench-rest

# The web app's pages with the demo garage, the inspection page with 10 photos and the
# customer's approval page among them: each page's p50/p99 (target p99 under 30 ms) and
# the KiB a first and a repeat visit transfer; figures also in target/bench/bench.json.
bench-pages:
    cargo build --release --bin carerp-operator --bin carerp-customer --bin carerp-workorder --bin carerp-inventory --bin carerp-billing --bin carerp-identity --bin carerp-bff --bin bench-pages
    cargo run --release --bin bench-pages

# 50 tenants (BENCH_TENANTS) from the release binaries on one private PostgreSQL
# (max_connections = 100) behind PgBouncer (`.ci/pgbouncer` installs 1.21+), one NATS: idle
# RSS and connections, then one saga per tenant while the others idle (completion ->
# INVOICED p50/p99); figures also in target/bench/bench.json (`density`).
bench-density:
    bash .ci/pgbouncer >/dev/null
    cargo build --release --bin carerp-operator --bin carerp-customer --bin carerp-workorder --bin carerp-inventory --bin carerp-billing --bin carerp-identity --bin carerp-bff --bin bench-density
    cargo run --release --bin bench-density

# The fault tests on release builds, one at a time, each printing how long the saga took
# to recover: NATS stopped for 10 s, PostgreSQL restarted, billing killed between commit and
# ack, 50 reservations at once for 10 in stock, payments retried under load; figures also
# in target/bench/bench.json (`faults`, seconds).
bench-faults:
    cargo build --release --bin carerp-billing
    BENCH_JSON={{env_var("CARGO_TARGET_DIR")}}/bench/bench.json cargo test --release -p carerp-e2e --test faults -- --nocapture --test-threads=1

# Every benchmark: the REST mix, the pages, the saga and relay, sign-in and tokens, the
# operator's render, the density of 50 tenants, the recovery after faults.
bench: bench-rest bench-pages bench-events bench-auth bench-operator bench-density bench-faults
