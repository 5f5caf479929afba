# syntax=docker/dockerfile:1
# flashsale images: one build, one small image per service, chosen with --target:
#   docker build --target gateway -t flashsale/gateway .      (also: order-writer, payment, expiry, migrate)
# docker-compose.yml builds all five; the builder stage is shared, so the workspace compiles once.
#
# Stages: chef (toolchain + cargo-chef) -> planner (dependency recipe) -> builder (dependencies cooked in their
# own cached layer, then our crates) -> runtime (debian slim, non-root, no build tools) -> one target per service.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

# The recipe lists only what decides the dependency build (manifests, lock file), so editing our code keeps the
# cooked layer below cached.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ARG PACKAGES="-p flashsale-gateway -p flashsale-order-writer -p flashsale-payment -p flashsale-expiry -p flashsale-store"
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json ${PACKAGES}
COPY . .
RUN cargo build --release --locked ${PACKAGES} \
        --bin gateway --bin order-writer --bin payment --bin expiry --bin flashsale-migrate \
    && mkdir -p /out \
    && cp target/release/gateway target/release/order-writer target/release/payment target/release/expiry \
          target/release/flashsale-migrate /out/

# The binaries need only glibc and libgcc (no OpenSSL: nothing here speaks TLS itself). config/default.toml and
# the migrations are compiled in. Bash is kept for the health probe (bash's /dev/tcp, no curl needed).
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
COPY deploy/docker/probe.sh /usr/local/bin/flashsale-probe
# A numeric user, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
# Logs as JSON for collectors; override with FLASHSALE__TELEMETRY__LOG_FORMAT=text.
ENV FLASHSALE__TELEMETRY__LOG_FORMAT=json
STOPSIGNAL SIGTERM

FROM runtime AS migrate
COPY --from=builder /out/flashsale-migrate /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/flashsale-migrate"]

# Healthy = ready (/readyz): compose starts what depends on a service only once it can serve. Liveness for
# Kubernetes is /healthz in its own probes; Kubernetes ignores HEALTHCHECK.
FROM runtime AS gateway
COPY --from=builder /out/gateway /usr/local/bin/
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 CMD ["/usr/local/bin/flashsale-probe", "8080", "/readyz"]
ENTRYPOINT ["/usr/local/bin/gateway"]

FROM runtime AS payment
COPY --from=builder /out/payment /usr/local/bin/
EXPOSE 8081
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 CMD ["/usr/local/bin/flashsale-probe", "8081", "/readyz"]
ENTRYPOINT ["/usr/local/bin/payment"]

FROM runtime AS order-writer
COPY --from=builder /out/order-writer /usr/local/bin/
EXPOSE 8082
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 CMD ["/usr/local/bin/flashsale-probe", "8082", "/readyz"]
ENTRYPOINT ["/usr/local/bin/order-writer"]

FROM runtime AS expiry
COPY --from=builder /out/expiry /usr/local/bin/
EXPOSE 8083
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 CMD ["/usr/local/bin/flashsale-probe", "8083", "/readyz"]
ENTRYPOINT ["/usr/local/bin/expiry"]
