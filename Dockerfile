# vapictl as a container: `docker build -t vapictl .`
# Two stages: the build (the Rust toolchain, the source) stays behind; the image holds the release
# binary, CA certificates for Vapi's TLS, and a user that is not root.

FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
# The production binary only: the stand-ins (the `standin` workspace crate, a dev-dependency) are
# not built.
RUN cargo build --release --locked --package vapictl --bin vapictl \
 && strip target/release/vapictl

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin vapictl
COPY --from=build /src/target/release/vapictl /usr/local/bin/vapictl
USER 10001:10001
# `vapictl serve`'s HTTP (health, readiness, metrics, trigger). Inside a container it must listen
# beyond loopback to be probed, hence the explicit `--listen` below.
EXPOSE 9750
ENTRYPOINT ["/usr/local/bin/vapictl"]
CMD ["serve", "--listen", "0.0.0.0:9750", "--log-format", "json", "/specs"]
