#!/usr/bin/env bash
# One step to see the operator work, on a real local node: builds what is missing, starts the
# local cluster's node tier (etcd, kube-apiserver, controller-manager, scheduler, and a real
# kubelet with containerd, runc, CNI, kube-proxy, CoreDNS and a local-path provisioner; see
# scripts/node/README.md), imports the operator's image (scripts/image.sh) and installs it from
# deploy/ as a Deployment with leader election, applies deploy/samples/minimal-sqlite.yaml, waits
# for it to be Ready (a real DittoFS pod: its probes, then the operator sets up its store, share
# and adapters through the `demo-api` Service), then writes a file over NFS and reads it back
# over NFS and SMB through the file Service's ClusterIP (ports 2049 and 445). It keeps running
# until Ctrl-C, which stops everything and leaves the host as it was. Run as root.
#
#   scripts/demo.sh           interactive: leaves the cluster up, prints how to use it
#   scripts/demo.sh --exit    read the file back, uninstall as docs/install.md says, stop (CI runs it)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
EXIT_AFTER=false
[[ "${1:-}" == "--exit" ]] && EXIT_AFTER=true

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "building the operator, its image and the cluster's binaries (cached after the first run)"
BIN_DIR=$(scripts/testbin.sh --node | tail -n 1)
IMAGE_ARCHIVE=$ROOT/$(scripts/image.sh | tail -n 1)
scripts/clients.sh
export DITTOFS_TESTBIN=$BIN_DIR
KUBECTL=$BIN_DIR/kubectl
# The image's own static binary runs on this host too: no second build for the CLI.
OPERATOR=$ROOT/target/x86_64-unknown-linux-musl/release/dittofs-operator
[[ -x $OPERATOR ]] || { echo "scripts/image.sh left no $OPERATOR" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/dittofs-demo.XXXXXX")
CLUSTER=$WORK/cluster
cleanup() {
  trap - EXIT INT TERM
  step "stopping"
  scripts/cluster.sh stop --dir "$CLUSTER" || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "starting the local cluster (tier node: a real kubelet)"
scripts/cluster.sh start --tier node --dir "$CLUSTER" --owner-pid $$
set -a; . "$CLUSTER/env"; set +a
k() { "$KUBECTL" "$@"; }

step "importing the operator's image into the node's containerd (nothing is pulled)"
"$DITTOFS_CTR" images import "$IMAGE_ARCHIVE"

step "installing the operator from deploy/ (CRD, RBAC, a Deployment of 2 replicas)"
k apply --server-side -k deploy/
# `kubectl wait` fails at once while the new CRD has no conditions at all: retry until a deadline.
for _ in $(seq 1 60); do
  k wait --for=condition=Established crd/dittoservers.dittofs.dittofs.com --timeout=30s 2>/dev/null && break
  sleep 0.5
done
k wait --for=condition=Established crd/dittoservers.dittofs.dittofs.com --timeout=1s
k -n dittofs-system rollout status deployment/dittofs-operator --timeout=120s

step "applying deploy/samples/minimal-sqlite.yaml"
k apply --server-side -f deploy/samples/minimal-sqlite.yaml
APPLIED=$SECONDS

step "waiting for Ready (the pod's probes, then the store, the share /export and the adapters)"
if ! k wait --for=condition=Ready dittoserver/demo --timeout=180s; then
  echo "demo did not become Ready; the status, the pods and the operator's log:" >&2
  k get dittoserver demo -o yaml >&2 || true
  k get pods -A -o wide >&2 || true
  k describe pod demo-0 >&2 || true
  k -n dittofs-system logs deployment/dittofs-operator --tail=60 >&2 || true
  exit 1
fi
echo "Ready $((SECONDS - APPLIED)) s after applying the sample"

step "kubectl get dittoservers"
k get dittoservers -A -o wide
step "the operator's pods and the objects of dittoserver/demo"
k -n dittofs-system get pods -o wide
step "the leader (Lease dittofs-operator) and the end of its log"
k -n dittofs-system get lease dittofs-operator -o jsonpath='{.spec.holderIdentity}'; echo
k -n dittofs-system logs "$(k -n dittofs-system get lease dittofs-operator -o jsonpath='{.spec.holderIdentity}')" --tail=3 | cut -c1-200
k get statefulsets,pods,services,networkpolicies,configmaps,secrets,pvc -l app.kubernetes.io/instance=demo
step "status of dittoserver/demo"
k get dittoserver demo -o jsonpath='{.status}' | python3 -m json.tool

FILE_IP=$(k get service demo-file -o jsonpath='{.spec.clusterIP}')
step "writing a file into /export over NFS through Service demo-file ($FILE_IP:2049) and reading it back"
NFS="nfs://$FILE_IP/export"
Q="nfsport=2049&mountport=2049&version=3"
# Ready says the pod serves; the Service routes to it once kube-proxy has synced the endpoints,
# a moment later. A client's mount retries the same way.
for _ in $(seq 1 120); do
  timeout 10 nfs-ls "$NFS?$Q" >/dev/null 2>&1 && break
  sleep 0.5
done
date -u +"written by scripts/demo.sh at %FT%TZ" >"$WORK/hello.txt"
nfs-cp "$WORK/hello.txt" "$NFS/hello.txt?$Q"
nfs-ls "$NFS?$Q"
nfs-cp "$NFS/hello.txt?$Q" "$WORK/hello.back"
cmp "$WORK/hello.txt" "$WORK/hello.back" && echo "read back over NFS: $(cat "$WORK/hello.back")"

step "reading it over SMB through Service demo-file ($FILE_IP:445) as the admin"
PASSWORD=$(k get secret demo-admin-bootstrap-credentials -o jsonpath='{.data.password}' | base64 -d)
smbclient "//$FILE_IP/export" -p 445 -U "admin%$PASSWORD" -c "get hello.txt $WORK/hello.smb" >/dev/null
cmp "$WORK/hello.txt" "$WORK/hello.smb" && echo "read back over SMB: $(cat "$WORK/hello.smb")"

if $EXIT_AFTER; then
  step "uninstalling as docs/install.md says: the DittoServers first, then deploy/ (the claims stay)"
  k delete dittoservers --all -A --wait
  k delete -k deploy/
  # Read whole, then tested: `| grep -q` under pipefail fails when kubectl, still writing, gets SIGPIPE.
  claims=$(k get pvc -l app.kubernetes.io/instance=demo -o name)
  [[ -n $claims ]] || { echo "demo's claims are gone" >&2; exit 1; }
  echo "demo --exit: $SECONDS s"
  exit 0
fi
cat <<TXT

DittoFS runs in a real pod, managed by the operator's own pod. In another shell:
  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$KUBECTL
  kubectl describe dittoserver demo
  kubectl -n dittofs-system logs deployment/dittofs-operator
  kubectl patch dittoserver demo --type merge -p '{"spec":{"logging":{"level":"DEBUG"}}}'   # rolls the pod once
  $OPERATOR diff demo     # what the operator would change (exit 1 if anything); DittoFS's side needs a port-forward
  nfs-ls 'nfs://$FILE_IP/export?$Q'
  smbclient //$FILE_IP/export -p 445 -U "admin%\$(kubectl get secret demo-admin-bootstrap-credentials -o jsonpath='{.data.password}' | base64 -d)" -c ls
Ctrl-C stops everything and leaves the host as it was.
TXT
while true; do sleep 3600 & wait $!; done
