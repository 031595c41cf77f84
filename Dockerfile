# One image per binary of the workspace: `docker build --build-arg BIN=carerp-customer .`
# (`just images` builds them all). Written for clusters; this project's own machine has no
# Docker engine, so it is exercised by whoever runs `just images` on one.

FROM rust:1.95-bookworm AS build
# The web app's build script installs htmx from its npm package (pinned by its lockfile).
RUN apt-get update && apt-get install -y --no-install-recommends npm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG BIN
# The cache mounts keep the registry and target directory between builds of different BINs.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin "${BIN}" \
    && cp "target/release/${BIN}" /carerp-binary

# glibc, CA certificates and uid 65532 (the uid the operator's pods run as), nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /carerp-binary /usr/local/bin/carerp
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/carerp"]
