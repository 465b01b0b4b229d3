#!/usr/bin/env bash
# One step to see the operator work: builds what is missing, starts a local control plane
# (etcd, kube-apiserver, controller-manager, scheduler, kwok with a fake node), installs the CRD,
# runs the operator, applies deploy/samples/minimal-sqlite.yaml, and runs the real DittoFS (`dfs`)
# with what the operator rendered, as the pod would (scripts/run-dfs.sh: kwok's pod runs no
# container). The operator sets up dfs's adapters, store and share through its REST API; the demo
# waits for Ready, prints the objects and the status, then writes and lists a file in the share
# with a real NFS client (libnfs-utils). It keeps running until Ctrl-C, which stops everything.
# Run as root (apt-get for the NFS client, a private mount namespace for dfs's /data).
#
#   scripts/demo.sh           interactive: leaves the cluster up, prints how to use it
#   scripts/demo.sh --exit    stop after printing (a smoke test)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
EXIT_AFTER=false
[[ "${1:-}" == "--exit" ]] && EXIT_AFTER=true

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "building the operator and the control-plane binaries (cached after the first run)"
cargo build --quiet
BIN_DIR=$(scripts/testbin.sh | tail -n 1)
scripts/clients.sh
export DITTOFS_TESTBIN=$BIN_DIR
KUBECTL=$BIN_DIR/kubectl
OPERATOR=$ROOT/target/debug/dittofs-operator

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dittofs-demo.XXXXXX")
CLUSTER=$WORK/cluster
OPERATOR_PID= DFS_PID=
cleanup() {
  trap - EXIT INT TERM
  step "stopping"
  [[ -n "$DFS_PID" ]] && kill "$DFS_PID" 2>/dev/null && wait "$DFS_PID" 2>/dev/null || true
  [[ -n "$OPERATOR_PID" ]] && kill "$OPERATOR_PID" 2>/dev/null && wait "$OPERATOR_PID" 2>/dev/null || true
  scripts/cluster.sh stop --dir "$CLUSTER" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# dfs runs on this host's network, with the sample's ports (API 8080, NFS 12049, SMB 12445, and
# SMB's first-boot 1445 until the operator moves it).
for port in 8080 12049 12445 1445; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use on this machine; the demo's DittoFS needs it" >&2
    exit 1
  fi
done

step "starting the local control plane (tier full)"
scripts/cluster.sh start --tier full --dir "$CLUSTER" --owner-pid $$
export KUBECONFIG=$CLUSTER/kubeconfig
k() { "$KUBECTL" "$@"; }

step "installing the CRD"
k apply --server-side -f deploy/crds/dittoservers.yaml
# `kubectl wait` fails at once while the new CRD has no conditions at all: retry until a deadline.
for _ in $(seq 1 60); do
  k wait --for=condition=Established crd/dittoservers.dittofs.dittofs.com --timeout=30s 2>/dev/null && break
  sleep 0.5
done
k wait --for=condition=Established crd/dittoservers.dittofs.dittofs.com --timeout=1s

# kwok has no volume provisioner: one pre-bound PersistentVolume per claim of the sample.
for claim in controlplane-demo-0 metadata-demo-0; do
  k apply --server-side -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: demo-$claim}
spec:
  capacity: {storage: 100Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: /nonexistent}
  claimRef: {namespace: default, name: $claim}
YAML
done

step "running the operator (logs: $WORK/operator.log)"
# Out of the cluster, the operator reaches each server's API on this host.
"$OPERATOR" run --dittofs-api 'http://127.0.0.1:{port}' >"$WORK/operator.log" 2>&1 &
OPERATOR_PID=$!

step "applying deploy/samples/minimal-sqlite.yaml"
k apply --server-side -f deploy/samples/minimal-sqlite.yaml
APPLIED=$SECONDS
for _ in $(seq 1 120); do
  k get statefulset demo >/dev/null 2>&1 && break
  sleep 0.5
done

step "running DittoFS as the pod would (scripts/run-dfs.sh; logs: $WORK/dfs.log)"
KUBECTL=$KUBECTL scripts/run-dfs.sh --name demo --namespace default --dir "$WORK/demo-0" >"$WORK/dfs.log" 2>&1 &
DFS_PID=$!

step "waiting for Ready (the operator creates the store, the share /export and moves SMB to 12445)"
if ! k wait --for=condition=Ready dittoserver/demo --timeout=180s; then
  echo "demo did not become Ready; operator and dfs log tails:" >&2
  tail -n 40 "$WORK/operator.log" >&2
  tail -n 20 "$WORK/dfs.log" >&2
  k get dittoserver demo -o yaml >&2 || true
  exit 1
fi
echo "Ready $((SECONDS - APPLIED)) s after applying the sample"

step "kubectl get dittoservers"
k get dittoservers -A
step "objects owned by dittoserver/demo"
k get statefulsets,pods,services,configmaps,secrets,pvc -l app.kubernetes.io/instance=demo
step "status of dittoserver/demo"
k get dittoserver demo -o jsonpath='{.status}' | python3 -m json.tool

step "writing a file into /export over NFS (nfs-cp, userspace) and listing the share (nfs-ls)"
NFS="nfs://127.0.0.1/export"
Q="nfsport=12049&mountport=12049&version=3"
date -u +"written by scripts/demo.sh at %FT%TZ" >"$WORK/hello.txt"
nfs-cp "$WORK/hello.txt" "$NFS/hello.txt?$Q"
nfs-ls "$NFS?$Q"
nfs-cp "$NFS/hello.txt?$Q" "$WORK/hello.back"
cmp "$WORK/hello.txt" "$WORK/hello.back" && echo "read back over NFS: $(cat "$WORK/hello.back")"

if $EXIT_AFTER; then
  exit 0
fi
cat <<TXT

The operator is running against a local cluster. In another shell:
  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$KUBECTL
  kubectl describe dittoserver demo
  kubectl patch dittoserver demo --type merge -p '{"spec":{"logging":{"level":"DEBUG"}}}'
  $OPERATOR diff demo --dittofs-api 'http://127.0.0.1:{port}'   # what the operator would change (exit 1 if anything)
  nfs-ls 'nfs://127.0.0.1/export?nfsport=12049&mountport=12049&version=3'
  smbclient //127.0.0.1/export -p 12445 -U "admin%\$(kubectl get secret demo-admin-bootstrap-credentials -o jsonpath='{.data.password}' | base64 -d)" -c ls
Ctrl-C stops DittoFS, the operator and the control plane.
TXT
while true; do sleep 3600 & wait $!; done
