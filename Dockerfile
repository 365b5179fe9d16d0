# syntax=docker/dockerfile:1
# Gatehouse: multi-stage build, small non-root runtime image.
#   docker build -t gatehouse .
#   docker run -p 8080:8080 -v gatehouse-data:/data gatehouse

FROM rust:1.95-trixie AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src ./src
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
COPY plugins ./plugins
COPY benches ./benches
RUN cargo build --release --locked && cp target/release/gatehouse /gatehouse

FROM debian:trixie-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin gatehouse \
 && mkdir -p /data && chown gatehouse:gatehouse /data
COPY --from=build /gatehouse /usr/local/bin/gatehouse
ENV GATEHOUSE_DATA_DIR=/data \
    PORT=8080 \
    GATEHOUSE_LOG_FORMAT=json
USER gatehouse
VOLUME ["/data"]
# 8080: HTTP. 7080: the cluster listener, when GATEHOUSE_CLUSTER_ADDR=0.0.0.0:7080 (with _ADVERTISE and the join token).
EXPOSE 8080 7080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["gatehouse", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["gatehouse"]
CMD ["serve"]
