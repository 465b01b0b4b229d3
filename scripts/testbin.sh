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
# Cold build on 2 cores: roughly 20-40 min; see docs/local-control-plane.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env source-path=SCRIPTDIR
. "$SCRIPT_DIR/versions.env"

# Never let a module silently download a newer Go toolchain.
export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -p=2"

print_only=false
case "${1:-}" in
  --print-dir) print_only=true ;;
  "") ;;
  -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
esac

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

if $print_only || complete; then
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
cleanup() { rm -rf "$STAGE" "$WORK"; }
trap cleanup EXIT

log "cache dir: $OUT"
log "go: $(go version)"

# Run "$@" as build step $name unless $OUT/$name exists; record wall time in BUILD-TIMES.
step() {
  local name=$1; shift
  if [[ -s "$OUT/$name" ]]; then
    log "$name: cached"
    return 0
  fi
  log "$name: building ..."
  local t=$SECONDS
  # Subshell with its own errexit (errexit is ignored in functions called from `||`).
  local rc=0
  set +e; (set -e; "$@"); rc=$?; set -e
  ((rc == 0)) || die "$name: build failed (exit $rc)"
  [[ -s "$STAGE/$name" ]] || die "$name: build produced no $STAGE/$name"
  chmod a+r "$STAGE/$name"
  mv -f "$STAGE/$name" "$OUT/$name"
  log "$name: done in $((SECONDS - t)) s"
  printf '%s %ds %s\n' "$name" "$((SECONDS - t))" "$(date -u +%FT%TZ)" >>"$OUT/BUILD-TIMES"
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
    local tools=()
    for b in "${K8S_BINS[@]}"; do tools+=("k8s.io/kubernetes/cmd/$b@v$K8S_VERSION"); done
    go get -tool "${tools[@]}"
  )
  touch "$K8S_W/.ready"
  log "k8s wrapper module: done in $((SECONDS - t)) s"
  printf '%s %ds %s\n' "k8s-modules" "$((SECONDS - t))" "$(date -u +%FT%TZ)" >>"$OUT/BUILD-TIMES"
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
    -o "$STAGE/$bin" "k8s.io/kubernetes/cmd/$bin")
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
log "all done in $((SECONDS - T0)) s"
echo "$OUT"
