#!/usr/bin/env bash
# The operator's container image, built without a Docker daemon: static (musl) release binaries
# in an OCI image archive.
#
#   scripts/image.sh                                   linux/amd64: dist/dittofs-operator-<version>.oci.tar
#   scripts/image.sh --platforms amd64,arm64 [--profile P] [--out FILE]
#                                                      one OCI image index holding both (the release's)
#   ARM64_PROFILE=P  the arm64 binary's cargo profile, when it differs (scripts/release.sh)
# The archive's path is printed last.
#
# Each platform's image has one layer holding /dittofs-operator and nothing else (no shell, no
# libc), runs as 65532:65532, and has the binary as its entrypoint. Its name is
# deploy/operator/operator.yaml's `image:` (a test keeps the two and Cargo.toml's version equal).
# amd64 is built with Debian's musl-tools; arm64 with cargo-zigbuild, zig being the C compiler
# and linker (scripts/release-tools.sh installs both from PyPI): no cross toolchain or sysroot to
# install, and ring's C and assembly build for aarch64-musl out of the box. The archive is
# reproducible: fixed file times, owners and gzip header, so the same binaries give the same
# digests. Push it with
#   skopeo copy --all --preserve-digests oci-archive:FILE docker://REGISTRY/NAME:TAG
# or load it into kind/k3d (docs/install.md). The same single-platform layout with Docker: the
# Dockerfile. Installs the musl targets (rustup) and Debian's musl-tools when missing.
set -euo pipefail
shopt -s inherit_errexit  # a failed build inside $(build_binary) stops the script
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[image] %s\n' "$*" >&2; }
PLATFORMS=amd64 PROFILE=release OUT=
while (($#)); do
  case "$1" in
    --platforms) PLATFORMS=$2; shift 2 ;;
    --profile) PROFILE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) log "usage: $0 [--platforms amd64[,arm64]] [--profile P] [--out FILE]"; exit 2 ;;
  esac
done

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE=$(sed -n 's/^ *image: *\([^ ]*dittofs-operator[^ ]*\) *$/\1/p' deploy/operator/operator.yaml | head -n 1)
[[ "$IMAGE" == *":v$VERSION" ]] || { log "deploy/operator/operator.yaml pins $IMAGE, Cargo.toml says $VERSION"; exit 1; }
OUT=${OUT:-dist/dittofs-operator-$VERSION.oci.tar}

# Prints the static binary of one platform (arm64, amd64), building it when needed.
build_binary() {
  local arch=$1 target build=(cargo build)
  case "$arch" in
    amd64) target=x86_64-unknown-linux-musl ;;
    arm64) target=aarch64-unknown-linux-musl ;;
    *) log "unknown platform $arch (amd64, arm64)"; exit 2 ;;
  esac
  rustup target list --installed 2>/dev/null | grep -qx "$target" || { log "adding rust target $target"; rustup target add "$target" >&2; }
  if [[ $arch == amd64 ]] && ! command -v musl-gcc >/dev/null; then
    log "installing Debian's musl-tools"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq musl-tools >&2
  fi
  if [[ $arch == arm64 ]]; then
    local tools
    tools=$(scripts/release-tools.sh | tail -n 1)
    export PATH="$tools/bin:$PATH"
    build=(cargo-zigbuild zigbuild)
  fi
  local profile=$PROFILE
  [[ $arch == arm64 ]] && profile=${ARM64_PROFILE:-$PROFILE}
  log "building the static $arch binary (${build[*]} --profile $profile --target $target)"
  "${build[@]}" --profile "$profile" --locked --target "$target" >&2
  local dir=$profile
  [[ $profile == dev ]] && dir=debug
  local bin=target/$target/$dir/dittofs-operator
  file "$bin" 2>/dev/null | grep -q "static" || ldd "$bin" 2>&1 | grep -qE "not a dynamic|statically" ||
    { log "$bin is not static"; exit 1; }
  echo "$bin"
}

ARGS=()
IFS=, read -ra ARCHES <<<"$PLATFORMS"
for arch in "${ARCHES[@]}"; do
  ARGS+=("$arch" "$(build_binary "$arch")")
done

mkdir -p "$(dirname "$OUT")"
python3 - "$IMAGE" "$VERSION" "$OUT" "${ARGS[@]}" <<'PY'
import gzip, hashlib, io, json, sys, tarfile

image, version, out = sys.argv[1:4]
platforms = list(zip(sys.argv[4::2], sys.argv[5::2]))  # (arch, binary)

def tar_bytes(entries):
    """A reproducible tar: fixed owner, mode and time."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid = len(data), mode, 0, 0, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()

sha = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()
blobs = {}
def add(blob):
    blobs[sha(blob)] = blob
    return sha(blob)

def platform_manifest(arch, binary):
    layer = tar_bytes([("dittofs-operator", open(binary, "rb").read(), 0o755)])
    layer_gz = gzip.compress(layer, compresslevel=6, mtime=0)
    config = json.dumps({
        "architecture": arch,
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
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": add(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": add(layer_gz), "size": len(layer_gz)}],
    }, sort_keys=True).encode()
    print(f"{image} linux/{arch} {sha(manifest)} {len(layer_gz)} bytes compressed", file=sys.stderr)
    return manifest

names = {"org.opencontainers.image.ref.name": image.rsplit(":", 1)[1], "io.containerd.image.name": image}
if len(platforms) == 1:
    # One platform: index.json names the image manifest itself.
    manifest = platform_manifest(*platforms[0])
    top = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": add(manifest), "size": len(manifest)}
else:
    # Several: index.json names one image index, which lists a manifest per platform; the image's
    # digest (the one install.yaml pins) is that index's.
    entries = []
    for arch, binary in platforms:
        manifest = platform_manifest(arch, binary)
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": add(manifest),
                        "size": len(manifest), "platform": {"architecture": arch, "os": "linux"}})
    nested = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                         "manifests": entries}, sort_keys=True).encode()
    top = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": add(nested), "size": len(nested)}
    print(f"{image} index {top['digest']}", file=sys.stderr)
index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": [dict(top, annotations=names)]}, sort_keys=True).encode()
archive = tar_bytes(
    [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), 0o644), ("index.json", index, 0o644)]
    + [("blobs/sha256/" + d.split(":", 1)[1], b, 0o644) for d, b in sorted(blobs.items())]
)
open(out, "wb").write(archive)
# The digest a registry will give the image (the manifest's or the index's).
open(out + ".digest", "w").write(top["digest"] + "\n")
PY
echo "$OUT"
