#!/usr/bin/env bash
# Build and cache the binaries of the local test control plane (and dfs):
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, kwok (+ kwok-stages.yaml), dfs,
#   weed (SeaweedFS: the S3 server of the remote-store tests)
# into ${DITTOFS_TESTBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dittofs-operator/testbin}/<key>/.
# Versions come from scripts/versions.env. Idempotent: present binaries are skipped, so a second
# run takes seconds. Progress goes to stderr; the last stdout line is the directory.
#
# Usage: scripts/testbin.sh               build what is missing, print the directory
#        scripts/testbin.sh --print-dir   print the directory only (no build)
#        scripts/testbin.sh --node        also build the node set (opt-in) into <dir>/node-$NODE_KEY/:
#          runc, containerd, containerd-shim-runc-v2, ctr, kubelet, kube-proxy, coredns,
#          local-path-provisioner, pause, cni/{bridge,host-local,loopback,portmap}, images/*.oci.tar
# Cold build on 2 cores: roughly 20-40 min (+ ~15 min for --node); see docs/local-control-plane.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env source-path=SCRIPTDIR
. "$SCRIPT_DIR/versions.env"

# Never let a module silently download a newer Go toolchain.
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -p=2"

print_only=false node=false
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_only=true ;;
    --node) node=true ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--print-dir] [--node]" >&2; exit 2 ;;
  esac
done

T0=$SECONDS
log() { printf '[testbin %4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null || die "go not found in PATH"

MP=${K8S_VERSION#1.}                 # 36.3
STAGING_VERSION=v0.$MP                # v0.36.3
K8S_MINOR=${MP%%.*}                   # 36

# go.mod of k8s.io/kubernetes (module cache; downloaded once).
k8s_gomod() {
  go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
    sed -n 's/.*"GoMod": "\(.*\)",*/\1/p'
}

if [[ -z "${ETCD_VERSION:-}" ]]; then
  gomod=$(k8s_gomod) || die "cannot download k8s.io/kubernetes@v$K8S_VERSION"
  ETCD_VERSION=$(awk '$1=="go.etcd.io/etcd/client/v3" {print $2; exit}' "$gomod")
  [[ -n "$ETCD_VERSION" ]] || die "no go.etcd.io/etcd/client/v3 in $gomod"
fi

KEY="k8s-v${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_dfs-${DFS_VERSION}"
ROOT=${DITTOFS_TESTBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dittofs-operator/testbin}
OUT=$ROOT/$KEY
K8S_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
ALL_FILES=("${K8S_BINS[@]}" etcd kwok kwok-stages.yaml dfs weed VERSIONS)

complete() {
  local f
  for f in "${ALL_FILES[@]}"; do [[ -s "$OUT/$f" ]] || return 1; done
}

# Node set (--node): its own directory inside $OUT, keyed by the node versions (versions.env).
NODE_OUT=$OUT/node-$NODE_KEY
NODE_FILES=(runc containerd containerd-shim-runc-v2 ctr kubelet kube-proxy coredns local-path-provisioner
  pause cni/bridge cni/host-local cni/loopback cni/portmap
  images/pause.oci.tar images/busybox.oci.tar images/coredns.oci.tar
  images/local-path-provisioner.oci.tar images/dittofs.oci.tar images/postgres-client.oci.tar VERSIONS)
node_complete() {
  local f
  for f in "${NODE_FILES[@]}"; do [[ -s "$NODE_OUT/$f" ]] || return 1; done
}

if $print_only || { complete && { ! $node || node_complete; }; }; then
  echo "$OUT"
  exit 0
fi

mkdir -p "$OUT"
# One builder per cache dir; a concurrent caller waits, then finds everything built.
exec 9>"$OUT/.lock"
if ! flock -n 9; then
  log "another build holds $OUT/.lock; waiting"
  flock 9
fi

rm -rf "$OUT"/.stage.*                   # left by a SIGKILLed build (we hold the lock)
STAGE=$(mktemp -d "$OUT/.stage.XXXXXX")   # same filesystem as $OUT: mv is atomic
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dittofs-testbin.XXXXXX")
NODE_STAGE=""
cleanup() { rm -rf "$STAGE" "$WORK" ${NODE_STAGE:+"$NODE_STAGE"}; }
trap cleanup EXIT
# step builds into $DSTAGE and moves into $DEST (the node set switches both to its directory).
DEST=$OUT DSTAGE=$STAGE

log "cache dir: $OUT"
log "go: $(go version)"

# Run "$@" as build step $name unless $OUT/$name exists; record wall time in BUILD-TIMES.
step() {
  local name=$1; shift
  if [[ -s "$DEST/$name" ]]; then
    log "$name: cached"
    return 0
  fi
  log "$name: building ..."
  local t=$SECONDS
  [[ "$name" == */* ]] && mkdir -p "$DSTAGE/${name%/*}" "$DEST/${name%/*}"
  # Subshell with its own errexit (errexit is ignored in functions called from `||`).
  local rc=0
  set +e; (set -e; "$@"); rc=$?; set -e
  ((rc == 0)) || die "$name: build failed (exit $rc)"
  [[ -s "$DSTAGE/$name" ]] || die "$name: build produced no $DSTAGE/$name"
  chmod a+r "$DSTAGE/$name"
  mv -f "$DSTAGE/$name" "$DEST/$name"
  log "$name: done in $((SECONDS - t)) s"
  printf '%s %ds %s\n' "$name" "$((SECONDS - t))" "$(date -u +%FT%TZ)" >>"$DEST/BUILD-TIMES"
}

# Throw-away wrapper module for the Kubernetes commands: k8s.io/kubernetes requires every staging
# module at v0.0.0 with a local replace, which is ignored for dependencies and not served by the
# proxy, so replace each one with its published v0.<minor>.<patch>.
K8S_W=$WORK/k8s
k8s_wrapper() {
  [[ -f "$K8S_W/.ready" ]] && return 0
  local t=$SECONDS gomod m
  log "k8s wrapper module: resolving dependencies ..."
  mkdir -p "$K8S_W"
  (
    cd "$K8S_W"
    go mod init testbin.local/k8s >/dev/null 2>&1
    gomod=$(k8s_gomod)
    awk '$2=="=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod" | while read -r m; do
      go mod edit -replace="$m=$m@$STAGING_VERSION"
    done
    local tools=() extra=()
    $node && extra=(kubelet kube-proxy)
    for b in "${K8S_BINS[@]}" "${extra[@]}"; do tools+=("k8s.io/kubernetes/cmd/$b@v$K8S_VERSION"); done
    go get -tool "${tools[@]}"
  )
  touch "$K8S_W/.ready"
  log "k8s wrapper module: done in $((SECONDS - t)) s"
  printf '%s %ds %s\n' "k8s-modules" "$((SECONDS - t))" "$(date -u +%FT%TZ)" >>"$DEST/BUILD-TIMES"
}

build_k8s() {
  local bin=$1 v=k8s.io/component-base/version cv=k8s.io/client-go/pkg/version x=""
  k8s_wrapper
  # Make /version report the real release instead of v0.0.0-master.
  for p in $v $cv; do
    x+=" -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$K8S_MINOR"
    x+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$K8S_W" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w$x" \
    -o "$DSTAGE/$bin" "k8s.io/kubernetes/cmd/$bin")
}

# etcd in its own wrapper (its server/v3 go.mod has local replaces); main package = module root.
build_etcd() {
  local w=$WORK/etcd
  mkdir -p "$w"
  (
    cd "$w"
    go mod init testbin.local/etcd >/dev/null 2>&1 &&
      go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" &&
      CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$STAGE/etcd" go.etcd.io/etcd/server/v3
  )
}

build_kwok() {
  CGO_ENABLED=0 GOBIN=$STAGE go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

# kwok without a config has no stages ("no stages found"); use the kustomize/stage/fast set.
build_kwok_stages() {
  local dir s f
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  s=$dir/kustomize/stage
  for f in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
           pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    [[ -f "$s/$f.yaml" ]] || { echo "missing $s/$f.yaml" >&2; return 1; }
    cat "$s/$f.yaml"; echo "---"
  done >"$STAGE/kwok-stages.yaml"
}

# dfs through a wrapper too: `go install github.com/marmos91/dittofs/cmd/dfs@v0.29.0` fails here
# with "loading deprecation for github.com/marmos91/dittofs: ... @v/list: 403 Forbidden" (the
# proxy serves the version but not the version list). `go mod edit -require` + `go mod tidy` needs
# no list lookup and resolves the same versions (MVS over dittofs' own go.mod, which has no replace).
build_dfs() {
  local w=$WORK/dfs
  mkdir -p "$w"
  cd "$w"
  go mod init testbin.local/dfs >/dev/null 2>&1
  go mod edit -require="github.com/marmos91/dittofs@$DFS_VERSION" \
    -tool=github.com/marmos91/dittofs/cmd/dfs
  go mod tidy
  go build -trimpath -ldflags "-s -w -X main.version=$DFS_VERSION" -o "$STAGE/dfs" \
    github.com/marmos91/dittofs/cmd/dfs
}

# SeaweedFS's go.mod has a replace, so `go install` refuses it; a wrapper module repeats it.
# weed is not in the cache key: adding it to an existing cache builds only weed.
build_weed() {
  local w=$WORK/weed
  mkdir -p "$w"
  cd "$w"
  go mod init testbin.local/weed >/dev/null 2>&1
  go mod edit -require="github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" \
    -replace=github.com/tyler-smith/go-bip39=github.com/cosmos/go-bip39@v1.0.0 \
    -tool=github.com/seaweedfs/seaweedfs/weed
  go mod tidy
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$STAGE/weed" github.com/seaweedfs/seaweedfs/weed
}

# ---------------------------------------------------------------- node set (--node only)

# Debian packages the node set needs (root only; nothing else is installed).
need_pkg() { # need_pkg TEST-COMMAND PACKAGE...
  local check=$1; shift
  sh -c "$check" >/dev/null 2>&1 && return 0
  log "installing Debian package(s) $* (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2; }
}

# runc: cgo with libseccomp (the seccomp build tag), like upstream's release binary.
build_runc() {
  need_pkg 'pkg-config --exists libseccomp || test -f /usr/include/seccomp.h' libseccomp-dev pkg-config
  need_pkg 'command -v gcc' gcc
  CGO_ENABLED=1 GOBIN=$DSTAGE go install -trimpath -tags seccomp \
    -ldflags "-s -w -X main.version=${RUNC_VERSION#v}" "github.com/opencontainers/runc@$RUNC_VERSION"
}

# build_cni NAME PKG: one CNI plugin into $DSTAGE/cni/NAME (the four share the build cache).
build_cni() {
  local name=$1 pkg=$2 tmp=$WORK/cni
  mkdir -p "$tmp"
  CGO_ENABLED=0 GOBIN=$tmp go install -trimpath -ldflags "-s -w \
    -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" \
    "github.com/containernetworking/plugins/plugins/$pkg@$CNI_PLUGINS_VERSION"
  mv -f "$tmp/$name" "$DSTAGE/cni/$name"
}

# build_containerd CMD: containerd, containerd-shim-runc-v2 or ctr (static, no cgo-only snapshotters).
build_containerd() {
  local cmd=$1 v=github.com/containerd/containerd/v2/version
  CGO_ENABLED=0 GOBIN=$DSTAGE go install -trimpath -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X $v.Version=$CONTAINERD_VERSION -X $v.Package=github.com/containerd/containerd/v2" \
    "github.com/containerd/containerd/v2/cmd/$cmd@$CONTAINERD_VERSION"
}

build_coredns() {
  CGO_ENABLED=0 GOBIN=$DSTAGE go install -trimpath -ldflags "-s -w" \
    "github.com/coredns/coredns@$COREDNS_VERSION"
}

build_local_path_provisioner() {
  CGO_ENABLED=0 GOBIN=$DSTAGE go install -trimpath -ldflags "-s -w -X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION" \
    "github.com/rancher/local-path-provisioner@$LOCAL_PATH_PROVISIONER_VERSION"
}

# The sandbox process: sleeps until SIGINT/SIGTERM, reaps zombies (a static C program).
build_pause() {
  need_pkg 'command -v gcc' gcc
  cat >"$WORK/pause.c" <<'C'
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>
static void sigdown(int signo) { (void)signo; _exit(0); }
static void sigreap(int signo) { (void)signo; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction down = {.sa_handler = sigdown}, reap = {.sa_handler = sigreap, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &down, NULL) < 0 || sigaction(SIGTERM, &down, NULL) < 0 ||
      sigaction(SIGCHLD, &reap, NULL) < 0) return 1;
  for (;;) pause();
}
C
  gcc -static -Os -s -o "$DSTAGE/pause" "$WORK/pause.c"
}

# build_image NAME: an OCI image-layout tar (scripts/node-images.sh), imported by cluster.sh.
build_image() {
  need_pkg 'test -x /bin/busybox && file -L /bin/busybox | grep -q static' busybox-static
  [[ "$1" == postgres-client ]] && need_pkg 'ls /usr/lib/postgresql/*/bin/pg_isready' postgresql-client
  "$SCRIPT_DIR/node-images.sh" "$1" "$DSTAGE/images/$1.oci.tar" "$OUT" "$NODE_OUT"
}

build_node_set() {
  mkdir -p "$NODE_OUT"
  rm -rf "$NODE_OUT"/.stage.*
  NODE_STAGE=$(mktemp -d "$NODE_OUT/.stage.XXXXXX")
  DEST=$NODE_OUT DSTAGE=$NODE_STAGE
  log "node set: $NODE_OUT"
  step pause build_pause
  step cni/loopback build_cni loopback main/loopback
  step cni/bridge build_cni bridge main/bridge
  step cni/host-local build_cni host-local ipam/host-local
  step cni/portmap build_cni portmap meta/portmap
  step runc build_runc
  step containerd build_containerd containerd
  step containerd-shim-runc-v2 build_containerd containerd-shim-runc-v2
  step ctr build_containerd ctr
  step kubelet build_k8s kubelet
  step kube-proxy build_k8s kube-proxy
  step coredns build_coredns
  step local-path-provisioner build_local_path_provisioner
  # Images from the binaries above (read from $NODE_OUT) and dfs (from $OUT).
  step images/pause.oci.tar build_image pause
  step images/busybox.oci.tar build_image busybox
  step images/coredns.oci.tar build_image coredns
  step images/local-path-provisioner.oci.tar build_image local-path-provisioner
  step images/dittofs.oci.tar build_image dittofs
  step images/postgres-client.oci.tar build_image postgres-client
  {
    echo "kubelet, kube-proxy v$K8S_VERSION"
    echo "runc $RUNC_VERSION"
    echo "cni-plugins $CNI_PLUGINS_VERSION"
    echo "containerd $CONTAINERD_VERSION"
    echo "coredns $COREDNS_VERSION"
    echo "local-path-provisioner $LOCAL_PATH_PROVISIONER_VERSION"
    echo "pause image $PAUSE_IMAGE"
    echo "go $(go env GOVERSION)"
    echo "built $(date -u +%FT%TZ)"
  } >"$NODE_STAGE/VERSIONS"
  mv -f "$NODE_STAGE/VERSIONS" "$NODE_OUT/VERSIONS"
  DEST=$OUT DSTAGE=$STAGE
}

if ! complete; then
# Cheapest first, so the tools needed by tier A exist early.
step etcd build_etcd
step kube-apiserver build_k8s kube-apiserver
step kube-controller-manager build_k8s kube-controller-manager
step kube-scheduler build_k8s kube-scheduler
step kubectl build_k8s kubectl
step kwok build_kwok
step kwok-stages.yaml build_kwok_stages
step dfs build_dfs
step weed build_weed

{
  echo "kubernetes v$K8S_VERSION (staging $STAGING_VERSION)"
  echo "etcd $ETCD_VERSION"
  echo "kwok $KWOK_VERSION"
  echo "dfs $DFS_VERSION"
  echo "seaweedfs $SEAWEEDFS_VERSION"
  echo "go $(go env GOVERSION)"
  echo "built $(date -u +%FT%TZ)"
} >"$STAGE/VERSIONS"
mv -f "$STAGE/VERSIONS" "$OUT/VERSIONS"
fi
$node && build_node_set
log "all done in $((SECONDS - T0)) s"
echo "$OUT"
