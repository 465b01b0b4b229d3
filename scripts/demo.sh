#!/usr/bin/env bash
# One step to see the operator work: builds what is missing, starts a local control plane
# (etcd, kube-apiserver, controller-manager, scheduler, kwok with a fake node), installs the CRD,
# runs the operator, applies deploy/samples/minimal-sqlite.yaml, waits for Ready and prints the
# objects and the DittoServer's status. Then it keeps running until Ctrl-C, which stops everything.
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
export DITTOFS_TESTBIN=$BIN_DIR
KUBECTL=$BIN_DIR/kubectl
OPERATOR=$ROOT/target/debug/dittofs-operator

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dittofs-demo.XXXXXX")
CLUSTER=$WORK/cluster
OPERATOR_PID=
cleanup() {
  trap - EXIT INT TERM
  step "stopping"
  [[ -n "$OPERATOR_PID" ]] && kill "$OPERATOR_PID" 2>/dev/null && wait "$OPERATOR_PID" 2>/dev/null || true
  scripts/cluster.sh stop --dir "$CLUSTER" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "starting the local control plane (tier full)"
scripts/cluster.sh start --tier full --dir "$CLUSTER" --owner-pid $$
export KUBECONFIG=$CLUSTER/kubeconfig
k() { "$KUBECTL" "$@"; }

step "installing the CRD"
k apply --server-side -f deploy/crds/dittoservers.yaml
k wait --for=condition=Established crd/dittoservers.dittofs.dittofs.com --timeout=30s

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
"$OPERATOR" run >"$WORK/operator.log" 2>&1 &
OPERATOR_PID=$!

step "applying deploy/samples/minimal-sqlite.yaml"
k apply --server-side -f deploy/samples/minimal-sqlite.yaml
if ! k wait --for=condition=Ready dittoserver/demo --timeout=120s; then
  echo "demo did not become Ready; operator log tail:" >&2
  tail -n 40 "$WORK/operator.log" >&2
  k get dittoserver demo -o yaml >&2 || true
  exit 1
fi

step "kubectl get dittoservers"
k get dittoservers -A
step "objects owned by dittoserver/demo"
k get statefulsets,pods,services,configmaps,secrets,pvc -l app.kubernetes.io/instance=demo
step "status of dittoserver/demo"
k get dittoserver demo -o jsonpath='{.status}' | python3 -m json.tool

if $EXIT_AFTER; then
  exit 0
fi
cat <<TXT

The operator is running against a local cluster. In another shell:
  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$KUBECTL
  kubectl describe dittoserver demo
  kubectl patch dittoserver demo --type merge -p '{"spec":{"logging":{"level":"DEBUG"}}}'
  $OPERATOR diff demo          # what the operator would change (exit 1 if anything)
Ctrl-C stops the operator and the control plane.
TXT
while true; do sleep 3600 & wait $!; done
