#!/usr/bin/env bash
# The container images of the node tier, built without a registry or a Docker daemon: one
# reproducible OCI image-layout tar per image (one layer, fixed owners/modes/mtime 0), with the
# `io.containerd.image.name` annotation, so `ctr -n k8s.io images import FILE` names it. Nothing
# is ever pulled; scripts/cluster.sh (tier node) imports them.
#
#   scripts/node-images.sh NAME OUT.oci.tar TESTBIN_DIR NODE_DIR
#     NAME: pause | busybox | coredns | local-path-provisioner | dittofs | postgres-client
#     TESTBIN_DIR: scripts/testbin.sh's directory (dfs); NODE_DIR: its node-$NODE_KEY/ (pause,
#     coredns, local-path-provisioner). Called by `scripts/testbin.sh --node`.
#
# Image names (scripts/versions.env): $PAUSE_IMAGE (containerd's default sandbox image name),
# $BUSYBOX_IMAGE (Debian's static busybox: shell for preStop hooks, helper pods, nslookup),
# $COREDNS_IMAGE (/coredns), $LOCAL_PATH_PROVISIONER_IMAGE (/usr/bin/local-path-provisioner),
# $DITTOFS_IMAGE (laid out like upstream's Dockerfile: /app/dfs, user 65532, /data/*, /config,
# plus busybox as /bin/sh etc. and the shared libraries dfs links against, if any),
# $POSTGRES_CLIENT_IMAGE (what the wait-for-postgres init container runs: busybox's sh, date and
# sleep, and Debian's pg_isready with the libraries ldd lists).
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env source-path=SCRIPTDIR
. "$SCRIPT_DIR/versions.env"

(($# == 4)) || { sed -n '2,16p' "$0" >&2; exit 2; }
NAME=$1 OUT=$2 TB=$3 ND=$4
BUSYBOX=/bin/busybox
PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Entries, one per line, tab-separated: TYPE PATH MODE UID GID ARG
#   f (file; ARG = source file), d (dir), l (symlink; ARG = target), t (text; ARG = content, \n escapes)
ENTRIES=""
add() { ENTRIES+=$(printf '%s\t' "$@")$'\n'; }
busybox_entries() {
  if ! { [[ -x "$BUSYBOX" ]] && file -L "$BUSYBOX" | grep -q 'statically linked'; }; then
    echo "node-images: $BUSYBOX is missing or not static (apt-get install busybox-static)" >&2; exit 1
  fi
  add f bin/busybox 0755 0 0 "$BUSYBOX"
  local a
  while read -r a; do
    [[ "$a" == bin/busybox ]] && continue
    add l "$a" 0777 0 0 /bin/busybox
  done < <("$BUSYBOX" --list-full)
  add t etc/nsswitch.conf 0644 0 0 'hosts: files dns\n'
}
tmp_dir() { add d tmp 01777 0 0 ""; }

case "$NAME" in
  pause)
    add f pause 0755 0 0 "$ND/pause"
    REF=$PAUSE_IMAGE
    CONFIG='{"User": "65535:65535", "Entrypoint": ["/pause"]}'
    ;;
  busybox)
    busybox_entries; tmp_dir
    add t etc/passwd 0644 0 0 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n'
    add t etc/group 0644 0 0 'root:x:0:\nnogroup:x:65534:\n'
    REF=$BUSYBOX_IMAGE
    CONFIG='{"Env": ["'$PATH_ENV'"], "Cmd": ["sh"]}'
    ;;
  coredns)
    add f coredns 0755 0 0 "$ND/coredns"
    add t etc/passwd 0644 0 0 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n'
    add t etc/group 0644 0 0 'root:x:0:\nnonroot:x:65532:\n'
    REF=$COREDNS_IMAGE
    CONFIG='{"User": "65532:65532", "Entrypoint": ["/coredns"], "ExposedPorts": {"53/tcp": {}, "53/udp": {}}}'
    ;;
  local-path-provisioner)
    add f usr/bin/local-path-provisioner 0755 0 0 "$ND/local-path-provisioner"
    tmp_dir
    REF=$LOCAL_PATH_PROVISIONER_IMAGE
    CONFIG='{"Env": ["'$PATH_ENV'"], "Cmd": ["local-path-provisioner"]}'
    ;;
  dittofs)
    busybox_entries; tmp_dir
    add d app 0755 65532 65532 ""
    add f app/dfs 0755 65532 65532 "$TB/dfs"
    for d in data data/metadata data/content data/cache config; do add d "$d" 0755 65532 65532 ""; done
    add t etc/passwd 0644 0 0 'root:x:0:0:root:/root:/bin/sh\ndittofs:x:65532:65532:dittofs:/app:/sbin/nologin\n'
    add t etc/group 0644 0 0 'root:x:0:\ndittofs:x:65532:\n'
    [[ -f /etc/ssl/certs/ca-certificates.crt ]] &&
      add f etc/ssl/certs/ca-certificates.crt 0644 0 0 /etc/ssl/certs/ca-certificates.crt
    # dfs is linked dynamically unless built with CGO_ENABLED=0: ship what ldd lists (glibc).
    if ! file -L "$TB/dfs" | grep -q 'statically linked'; then
      while read -r lib; do
        add f "${lib#/}" 0755 0 0 "$(readlink -f "$lib")"
      done < <(ldd "$TB/dfs" | grep -o '/[^ ]*' | sort -u)
    fi
    REF=$DITTOFS_IMAGE
    CONFIG=$(cat <<EOF
{"User": "65532:65532", "WorkingDir": "/app", "Env": ["$PATH_ENV"],
 "Entrypoint": ["/app/dfs"], "Cmd": ["start", "--foreground", "--config", "/config/config.yaml"],
 "ExposedPorts": {"12049/tcp": {}, "12445/tcp": {}, "8080/tcp": {}},
 "Volumes": {"/data/metadata": {}, "/data/content": {}, "/data/cache": {}, "/config": {}},
 "Labels": {"org.opencontainers.image.title": "DittoFS", "org.opencontainers.image.version": "$DFS_VERSION",
            "org.opencontainers.image.description": "dfs from scripts/testbin.sh (local test image)"}}
EOF
)
    ;;
  postgres-client)
    busybox_entries; tmp_dir
    PG_ISREADY=$(ls /usr/lib/postgresql/*/bin/pg_isready 2>/dev/null | sort -V | tail -n 1)
    [[ -n "$PG_ISREADY" ]] || { echo "node-images: no pg_isready (apt-get install postgresql-client)" >&2; exit 1; }
    add f usr/local/bin/pg_isready 0755 0 0 "$PG_ISREADY"
    while read -r lib; do
      add f "${lib#/}" 0755 0 0 "$(readlink -f "$lib")"
    done < <(ldd "$PG_ISREADY" | grep -o '/[^ ]*' | sort -u)
    add t etc/passwd 0644 0 0 'root:x:0:0:root:/root:/bin/sh\npostgres:x:70:70:postgres:/var/lib/postgresql:/bin/sh\n'
    add t etc/group 0644 0 0 'root:x:0:\npostgres:x:70:\n'
    REF=$POSTGRES_CLIENT_IMAGE
    CONFIG='{"Env": ["'$PATH_ENV'"], "Cmd": ["sh"]}'
    ;;
  *) echo "node-images: unknown image $NAME" >&2; exit 2 ;;
esac

mkdir -p "$(dirname "$OUT")"
LIST=$(mktemp); trap 'rm -f "$LIST"' EXIT
printf '%s' "$ENTRIES" >"$LIST"
python3 - "$REF" "$CONFIG" "$OUT" "$NAME" "$LIST" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile

ref, config_json, out, name, listing = sys.argv[1:6]
entries = []
for line in open(listing).read().splitlines():
    if not line.strip():
        continue
    typ, path, mode, uid, gid, arg = (line.split("\t") + [""] * 6)[:6]
    entries.append((typ, path, int(mode, 8), int(uid), int(gid), arg))

# Parent directories that are not listed: root-owned 0755.
paths = {e[1] for e in entries}
for e in list(entries):
    parts = e[1].split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d not in paths:
            paths.add(d)
            entries.append(("d", d, 0o755, 0, 0, ""))
entries.sort(key=lambda e: e[1])

def tar_bytes(items):
    """A reproducible tar: fixed owner, mode and time."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for typ, path, mode, uid, gid, arg in items:
            info = tarfile.TarInfo(path)
            info.mode, info.mtime, info.uid, info.gid = mode, 0, uid, gid
            info.uname = info.gname = ""
            data = None
            if typ == "d":
                info.type = tarfile.DIRTYPE
            elif typ == "l":
                info.type, info.linkname = tarfile.SYMTYPE, arg
            elif typ == "f":
                data = open(arg, "rb").read()
            elif typ == "t":
                data = arg.encode().decode("unicode_escape").encode()
            else:
                raise SystemExit(f"bad entry type {typ}")
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()

sha = lambda b: "sha256:" + hashlib.sha256(b).hexdigest()
layer = tar_bytes(entries)
layer_gz = gzip.compress(layer, compresslevel=6, mtime=0)
cfg = json.loads(config_json)
config = json.dumps({
    "architecture": "amd64",
    "os": "linux",
    "config": cfg,
    "rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
    "history": [{"created_by": f"scripts/node-images.sh {name}"}],
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
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1], "io.containerd.image.name": ref},
    }],
}, sort_keys=True).encode()
blob = lambda b: ("f-data", "blobs/sha256/" + hashlib.sha256(b).hexdigest(), b)
files = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()), ("index.json", index)]
files += [(p, b) for _, p, b in (blob(manifest), blob(config), blob(layer_gz))]
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
    for d in ("blobs", "blobs/sha256"):
        info = tarfile.TarInfo(d); info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
        tar.addfile(info)
    for path, data in files:
        info = tarfile.TarInfo(path); info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))
tmp = out + ".tmp"
open(tmp, "wb").write(buf.getvalue())
os.replace(tmp, out)
print(f"node-images: {ref} {sha(manifest)} layer {len(layer_gz)} bytes compressed", file=sys.stderr)
PY
