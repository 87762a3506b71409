# syntax=docker/dockerfile:1.7
# One image per service, from one Dockerfile: the build argument SERVICE picks the binary
# (gateway, user, catalog, order, payment, scheduler). The result is a distroless image with
# the binary alone (plus CA certificates for the payment gateway and OTLP over TLS), running as
# a non-root user, meant for a read-only root filesystem (the chart mounts /tmp as emptyDir).
#
#   docker build --build-arg SERVICE=catalog -t registry.example.com/pillivery/pillivery-catalog:0.1.0 .
#
# See docs/deploy.md ("Images"). The entrypoint is the service binary, so flags pass through:
# the chart's migration Job runs the same image with `--migrate`.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
ARG SERVICE
RUN test -n "$SERVICE" || (echo "--build-arg SERVICE=<gateway|user|catalog|order|payment|scheduler> is required" >&2; exit 1)
WORKDIR /src
# The C compiler builds aws-lc-sys and the bundled SQLite; no cmake, no protoc needed.
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ make && rm -rf /var/lib/apt/lists/*
COPY . .
# Registry and target caches survive between builds of the six images.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p "pillivery-${SERVICE}" --bin "pillivery-${SERVICE}" \
    && install -D "target/release/pillivery-${SERVICE}" /out/pillivery-service

FROM gcr.io/distroless/cc-debian12:nonroot
ARG SERVICE
LABEL org.opencontainers.image.title="pillivery-${SERVICE}" \
      org.opencontainers.image.description="Pillivery ${SERVICE} service" \
      org.opencontainers.image.licenses="UNLICENSED"
COPY --from=build /out/pillivery-service /usr/local/bin/pillivery-service
# distroless' nonroot user; the chart also sets runAsUser 65532 and drops every capability.
USER 65532:65532
# gRPC, admin (/metrics, /healthz, /readyz) and, for the gateway, the public REST port.
EXPOSE 50051 9090 8080
ENTRYPOINT ["/usr/local/bin/pillivery-service"]
