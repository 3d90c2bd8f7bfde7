# Multi-stage build of the `commerce` service.
#   docker build -t commerce .
#   docker run -p 8080:8080 -e COMMERCE_JWT_SECRET=... -e DATABASE_URL=postgres://... commerce
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# host/bundled/build.rs builds the plugins of plugins/ for wasm32-wasip2.
RUN rustup target add wasm32-wasip2
RUN cargo build --release --locked --bin commerce

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/commerce --create-home commerce
COPY --from=build /src/target/release/commerce /usr/local/bin/commerce
USER commerce
WORKDIR /var/lib/commerce
ENV COMMERCE_LISTEN=0.0.0.0:8080 COMMERCE_DATA_DIR=/var/lib/commerce/data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["commerce"]
CMD ["serve"]
