# The operator's image for those with Docker (or buildah/kaniko). Without a daemon use
# scripts/image.sh, which builds the same layout: one layer with the static binary at
# /dittofs-operator, nothing else (no shell, no libc), user 65532:65532.
#   docker build -t ghcr.io/dittofs-operator/dittofs-operator:v0.1.0 .
FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl \
    && cp target/x86_64-unknown-linux-musl/release/dittofs-operator /dittofs-operator

FROM scratch
COPY --from=build --chmod=0755 /dittofs-operator /dittofs-operator
USER 65532:65532
ENV RUST_LOG=info,kube=warn
EXPOSE 8081
ENTRYPOINT ["/dittofs-operator"]
CMD ["run", "--leader-elect"]
