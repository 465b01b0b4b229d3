#!/usr/bin/env bash
# The operator's container image, built without a Docker daemon: a static (musl) release binary
# in an OCI image archive.
#
#   scripts/image.sh     builds dist/dittofs-operator-<version>.oci.tar; prints its path last
#
# The image has one layer holding /dittofs-operator and nothing else (no shell, no libc), runs as
# 65532:65532, and has the binary as its entrypoint. Its name is deploy/operator/operator.yaml's
# `image:` (a test keeps the two and Cargo.toml's version equal). Push it with
#   skopeo copy oci-archive:dist/dittofs-operator-<version>.oci.tar docker://REGISTRY/NAME:TAG
# or load it into kind/k3d (docs/install.md). Installs the musl target (rustup) and Debian's
# musl-tools when missing. The same layout with Docker: the Dockerfile.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET=x86_64-unknown-linux-musl

log() { printf '[image] %s\n' "$*" >&2; }
rustup target list --installed 2>/dev/null | grep -qx "$TARGET" || { log "adding rust target $TARGET"; rustup target add "$TARGET" >&2; }
if ! command -v musl-gcc >/dev/null; then
  log "installing Debian's musl-tools"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq musl-tools >&2
fi

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE=$(sed -n 's/^ *image: *\([^ ]*dittofs-operator[^ ]*\) *$/\1/p' deploy/operator/operator.yaml | head -n 1)
[[ "$IMAGE" == *":v$VERSION" ]] || { log "deploy/operator/operator.yaml pins $IMAGE, Cargo.toml says $VERSION"; exit 1; }

log "building the static binary (cargo build --release --target $TARGET)"
cargo build --release --locked --target "$TARGET" >&2
BIN=target/$TARGET/release/dittofs-operator
file "$BIN" 2>/dev/null | grep -q "static" || ldd "$BIN" 2>&1 | grep -qE "not a dynamic|statically" ||
  { log "$BIN is not static"; exit 1; }

mkdir -p dist
OUT=dist/dittofs-operator-$VERSION.oci.tar
python3 - "$BIN" "$IMAGE" "$VERSION" "$OUT" <<'PY'
import gzip, hashlib, io, json, sys, tarfile

binary, image, version, out = sys.argv[1:5]

def tar_bytes(entries):
    """A reproducible tar: fixed owner, mode and time."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), mode, 0, 0, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()

layer = tar_bytes([("dittofs-operator", open(binary, "rb").read(), 0o755)])
layer_gz = gzip.compress(layer, compresslevel=6, mtime=0)
sha = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()
config = json.dumps({
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "User": "65532:65532",
        "Entrypoint": ["/dittofs-operator"],
        "Cmd": ["run", "--leader-elect"],
        "Env": ["RUST_LOG=info,kube=warn"],
        "ExposedPorts": {"8081/tcp": {}},
        "Labels": {
            "org.opencontainers.image.title": "dittofs-operator",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.description": "Kubernetes operator for DittoFS",
        },
    },
    "rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
    "history": [{"created_by": "scripts/image.sh: static musl binary"}],
}, sort_keys=True).encode()
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(layer_gz), "size": len(layer_gz)}],
}, sort_keys=True).encode()
index = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": image.rsplit(":", 1)[1], "io.containerd.image.name": image},
    }],
}, sort_keys=True).encode()
blob = lambda b: ("blobs/sha256/" + hashlib.sha256(b).hexdigest(), b, 0o644)
archive = tar_bytes([
    ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), 0o644),
    ("index.json", index, 0o644),
    blob(manifest), blob(config), blob(layer_gz),
])
open(out, "wb").write(archive)
print(f"{image} {sha(manifest)} {len(layer_gz)} bytes compressed", file=sys.stderr)
PY
echo "$OUT"
