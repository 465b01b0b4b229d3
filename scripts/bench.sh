#!/usr/bin/env bash
# What N DittoServers cost the apiserver, measured on the local control plane (tier api).
#
#   scripts/bench.sh N            N from 1 to 1000
#
# Starts its own control plane, the release operator (namespace `bench`, runtime step off: no
# DittoFS runs behind the pods), creates N DittoServers from deploy/samples/minimal-sqlite.yaml
# at once, and prints:
#   - process start to first reconcile (a DittoServer that exists before the operator starts);
#   - the time until every DittoServer's objects exist (its StatefulSet, applied last), from the
#     first create and from when `kubectl create` returned (the issue's definition);
#   - the time until every DittoServer reports its status (InSync);
#   - the reconcile passes the operator ran until then (its own /metrics);
#   - API requests by verb (dry runs apart) from the apiserver's own apiserver_request_total,
#     during convergence and during a quiet minute after it (the benchmark's own requests left
#     out: it polls etcd, not the apiserver);
#   - peak RSS and CPU seconds of the operator;
#   - the floor: a bare client (examples/apply_floor.rs) server-side-applying the same rendered
#     objects in the same order with the same parallelism, in another namespace.
# With BENCH_RESULTS=FILE, appends the figures as one JSON line (scripts/bench.py plot reads them).
#
# With BENCH_RUNTIME=1 the runtime step is on, as users run it, where it costs most: the `full`
# tier (kwok turns the pods Ready; pre-bound PVs for their claims) and every DittoFS API
# accepting connections and never answering (bench.py silent-api), so each try waits for the
# whole request deadline. It also prints when every DittoServer counted its pod Ready and when
# every runtime step had finished its first try (so the quiet minute sees only retries), and the
# operator's own request count (the apiserver's totals then include the
# controller-manager's, the scheduler's and kwok's).
#
# BENCH_TIER=full alone runs the same tier with the runtime step off: the control for the above.
#
# Environment: DITTOFS_OPERATOR_BIN / DITTOFS_FLOOR_BIN use these binaries instead of building
# the release ones; BENCH_CONCURRENCY sets --concurrency (default: the operator's default);
# BENCH_QUIET_SECONDS shortens the quiet minute (smoke runs); with BENCH_LOG=FILE the operator's log is
# copied there.
set -euo pipefail

N=${1:?usage: scripts/bench.sh N}
((N >= 1 && N <= 1000)) || { echo "N must be 1..1000" >&2; exit 2; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY="python3 $ROOT/scripts/bench.py"
QUIET=${BENCH_QUIET_SECONDS:-60}
CONCURRENCY=${BENCH_CONCURRENCY:-16}   # the operator's --concurrency default

BIN=${DITTOFS_TESTBIN:-$("$ROOT/scripts/testbin.sh" --print-dir)}
[[ -x "$BIN/kube-apiserver" ]] || "$ROOT/scripts/testbin.sh" >&2
export PATH=$BIN:$PATH
if [[ -z "${DITTOFS_OPERATOR_BIN:-}" || -z "${DITTOFS_FLOOR_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release --bin dittofs-operator --example apply_floor >&2)
fi
OPERATOR=${DITTOFS_OPERATOR_BIN:-$ROOT/target/release/dittofs-operator}
FLOOR=${DITTOFS_FLOOR_BIN:-$ROOT/target/release/examples/apply_floor}

WORK=$(mktemp -d)
OPERATOR_PID=
SILENT_PID=
cleanup() {
  if [[ -n "$SILENT_PID" ]]; then kill "$SILENT_PID" 2>/dev/null || true; fi
  if [[ -n "$OPERATOR_PID" ]]; then
    # A wrapper (BENCH_OPERATOR_ENV="perf record --", heaptrack) may not pass a signal on, and an
    # operator left running skews the next run: stop it by its own health address as well.
    pkill -f -- "--health-address 127.0.0.1:$PORT" 2>/dev/null || true
    kill "$OPERATOR_PID" 2>/dev/null || true
    wait "$OPERATOR_PID" 2>/dev/null || true
  fi
  "$ROOT/scripts/cluster.sh" stop --dir "$WORK/cluster" >/dev/null 2>&1 || true
  if [[ -n "${BENCH_LOG:-}" && -f "$WORK/operator.log" ]]; then cp "$WORK/operator.log" "$BENCH_LOG"; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
RUNTIME=${BENCH_RUNTIME:-0}
TIER=${BENCH_TIER:-api}
((RUNTIME)) && TIER=full
# The fake node takes every server's pod (each asks for up to 1 CPU and 2 GiB).
export DITTOFS_KWOK_PODS=$((N + 10)) DITTOFS_KWOK_CPU=$((N + 32)) DITTOFS_KWOK_MEMORY=$((2 * N + 256))Gi
"$ROOT/scripts/cluster.sh" start --tier "$TIER" --dir "$WORK/cluster" --owner-pid $$ 2>"$WORK/cluster.log" \
  || { cat "$WORK/cluster.log" >&2; exit 1; }
set -a; source "$WORK/cluster/env"; set +a

kubectl apply --server-side -f "$ROOT/deploy/crds/dittoservers.yaml" >/dev/null
# (kubectl wait fails instead of waiting while the CRD has no conditions yet)
for _ in $(seq 600); do
  kubectl wait --for=condition=Established crd/dittoservers.dittofs.dittofs.com --timeout=60s >/dev/null 2>&1 && break
  sleep 0.1
done
kubectl create namespace bench >/dev/null
kubectl create namespace floor >/dev/null

manifest() { # NAME
  sed -e "s/name: demo/name: $1/" -e "s/namespace: default/namespace: bench/" "$ROOT/deploy/samples/minimal-sqlite.yaml"
}

DITTOFS_API=off
if [[ $TIER == full ]]; then
  # kwok has no provisioner: a PV for each claim of each server's pod, reserved for it, behind a
  # default StorageClass that binds at scheduling (so the scheduler never waits on a binding).
  # The claims themselves are the StatefulSets' (pre-made claims would read as a server that ran before).
  {
    printf -- '---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: bench-local, annotations: {storageclass.kubernetes.io/is-default-class: "true"}}\n'
    printf 'provisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: WaitForFirstConsumer\n'
    for name in probe $(for ((i = 0; i < N; i++)); do printf 'server-%04d ' "$i"; done); do
      for claim in controlplane metadata; do
        printf -- '---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {name: bench-%s-%s}\n' "$claim" "$name"
        printf 'spec: {capacity: {storage: 100Gi}, accessModes: [ReadWriteOnce], persistentVolumeReclaimPolicy: Retain, storageClassName: bench-local, hostPath: {path: /nonexistent}, claimRef: {namespace: bench, name: %s-%s-0}}\n' "$claim" "$name"
      done
    done
  } >"$WORK/volumes.yaml"
  kubectl create -f "$WORK/volumes.yaml" >/dev/null
fi
if ((RUNTIME)); then
  SILENT_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  $PY silent-api "$SILENT_PORT" &
  SILENT_PID=$!
  DITTOFS_API="http://127.0.0.1:$SILENT_PORT"
fi

# Start to first reconcile: a DittoServer waits for the operator.
manifest probe | kubectl create -f - >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
STARTED=$EPOCHREALTIME
${BENCH_OPERATOR_ENV:-} "$OPERATOR" run --namespace bench --dittofs-api "$DITTOFS_API" --concurrency "$CONCURRENCY" \
  --health-address "127.0.0.1:$PORT" >"$WORK/operator.log" 2>&1 &
OPERATOR_PID=$!
FIRST=$($PY wait-objects bench 1 60 "$STARTED")
$PY wait-status bench 1 60 "$STARTED" >/dev/null

# Convergence.
for ((i = 0; i < N; i++)); do printf -- '---\n'; manifest "$(printf 'server-%04d' "$i")"; done >"$WORK/servers.yaml"
$PY requests "$WORK/before.json"
OWN_BEFORE=$($PY operator-requests "http://127.0.0.1:$PORT/metrics")
CREATED=$EPOCHREALTIME
# kubectl creates them one at a time; when it returns is recorded (the apiserver's share).
(kubectl create -f "$WORK/servers.yaml" >/dev/null && echo "$EPOCHREALTIME" >"$WORK/created-at") &
CREATE_PID=$!
OBJECTS=$($PY wait-objects bench $((N + 1)) 600 "$CREATED")
STATUS=$($PY wait-status bench $((N + 1)) 600 "$CREATED")
RUNTIME_SECONDS=null PODS_READY_SECONDS=null
if [[ $TIER == full ]]; then PODS_READY_SECONDS=$($PY wait-ready bench $((N + 1)) 900 "$CREATED"); fi
if ((RUNTIME)); then
  RUNTIME_SECONDS=$($PY wait-runtime bench $((N + 1)) 1800 "$CREATED")
fi
wait "$CREATE_PID"
CREATES=$(python3 -c 'import sys; print(f"{float(sys.argv[1]) - float(sys.argv[2]):.3f}")' "$(cat "$WORK/created-at")" "$CREATED")
$PY requests "$WORK/converged.json"
OWN_CONVERGED=$($PY operator-requests "http://127.0.0.1:$PORT/metrics")
REQUESTS=$($PY delta "$WORK/before.json" "$WORK/converged.json" "$N")
# Passes the operator ran until now (its own /metrics; the probe's are among them).
PASSES=$(python3 -c 'import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1]).read().decode()
print(int(sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith("dittofs_operator_reconciles_total"))))' \
  "http://127.0.0.1:$PORT/metrics")

# A quiet minute: nothing changes; the operator should ask nothing.
# Passes already queued by the last status writes finish first (they are quiet too).
sleep 2
$PY requests "$WORK/quiet-start.json"
OWN_QUIET_START=$($PY operator-requests "http://127.0.0.1:$PORT/metrics")
sleep "$QUIET"
$PY requests "$WORK/quiet-end.json"
OWN_QUIET_END=$($PY operator-requests "http://127.0.0.1:$PORT/metrics")
IDLE=$($PY delta "$WORK/quiet-start.json" "$WORK/quiet-end.json" 0)
PROCESS=$($PY process "$OPERATOR_PID")

# The floor, with the same objects, order and parallelism.
FLOOR_SECONDS=$("$FLOOR" floor "$N" "$CONCURRENCY" "$ROOT/deploy/samples/minimal-sqlite.yaml")
# Who published the Events of the namespace (read after the counting ends): the apiserver may
# publish some of its own (its ClusterIP repair loop), which `POST events` counts too.
EVENTS=$($PY events bench dittofs-operator)

OBJECTS_PER_SERVER=$(kubectl get configmaps,secrets,services,networkpolicies,statefulsets -n bench \
  -l app.kubernetes.io/instance=probe -o name | wc -l)
python3 - "$N" "$FIRST" "$OBJECTS" "$STATUS" "$REQUESTS" "$IDLE" "$PROCESS" "$FLOOR_SECONDS" "$OBJECTS_PER_SERVER" "$CONCURRENCY" "$PASSES" "$CREATES" "$EVENTS" \
  "$RUNTIME_SECONDS" "$PODS_READY_SECONDS" "$OWN_BEFORE" "$OWN_CONVERGED" "$OWN_QUIET_START" "$OWN_QUIET_END" <<'EOF'
import json, os, sys
n, first, objects, status = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
requests, idle, process = json.loads(sys.argv[5]), json.loads(sys.argv[6]), json.loads(sys.argv[7])
floor, per_server, concurrency = float(sys.argv[8]), int(sys.argv[9]), int(sys.argv[10])
passes, creates, events = int(sys.argv[11]), float(sys.argv[12]), json.loads(sys.argv[13])
runtime_seconds = json.loads(sys.argv[14])
def own_between(before, after):
    start = json.loads(before)
    return {m: n - start.get(m, 0) for m, n in json.loads(after).items() if n - start.get(m, 0)}
pods_ready = json.loads(sys.argv[15])
own = own_between(sys.argv[16], sys.argv[17])
own_quiet = own_between(sys.argv[18], sys.argv[19])
budget = n * (per_server * 1.2 + 2)
print(f"DittoServers:                      {n} (objects each: {per_server}; concurrency {concurrency})")
print(f"process start to first reconcile:  {first:.2f} s")
# The issue's convergence counts from when `kubectl create` returns: the N creates themselves
# (one at a time, sharing the apiserver with the operator's applies) are the user's, not the
# operator's. Both are printed; the operator works on the first ones while kubectl sends the rest.
after = round(max(objects - creates, 0.0), 3)
print(f"objects of every DittoServer:      {objects:.2f} s   from the first create (floor {floor:.2f} s, ratio {objects / floor:.2f})")
print(f"  after kubectl create returned:   {after:.2f} s   (ratio {after / floor:.2f}; the {n} creates took {creates:.2f} s)")
print(f"status of every DittoServer:       {status:.2f} s")
if pods_ready is not None:
    print(f"every pod Ready (in the status):   {pods_ready:.2f} s   (kwok; the pace of scheduling and binding)")
if runtime_seconds is not None:
    print(f"every runtime step's first try over: {runtime_seconds:.2f} s   (APIs that never answer: a try waits the whole request deadline)")
print(f"passes until then:                 {passes}   ({passes / (n + 1):.1f} per DittoServer)")
print(f"requests during convergence:       {requests['total']}  (budget objects x 1.2 + 2 per DittoServer: {budget:.0f})")
for what, count in requests["by_resource"].items():
    print(f"  {what:<40} {count}")
print(f"the operator's own requests:       {sum(own.values())} during convergence {own}, {sum(own_quiet.values())} in the quiet time")
if pods_ready is not None:
    print("  (full tier: the apiserver's totals below include the controller-manager, scheduler and kwok)")
print(f"requests in the quiet {os.environ.get('BENCH_QUIET_SECONDS', '60')} s:          {idle['total']}")
for what, count in idle["by_resource"].items():
    print(f"  {what:<40} {count}")
print(f"events in the namespace, not the operator's: {events['foreign']}")
for what, count in events["by_reporter_reason"].items():
    print(f"  {what:<40} {count}")
print(f"operator peak RSS:                 {process['peak_rss_mib']} MiB"
      f"   (after the quiet minute: {process['rss_anon_mib']} MiB anonymous, {process['rss_file_mib']} MiB of the binary)")
print(f"operator CPU:                      {process['cpu_seconds']} s")
row = {"n": n, "first_reconcile_seconds": first, "objects_seconds": objects, "status_seconds": status,
       "floor_seconds": floor, "requests": requests, "quiet_requests": idle, "objects_per_server": per_server,
       "concurrency": concurrency, "passes": passes, "runtime_step": runtime_seconds is not None,
       "runtime_tried_seconds": runtime_seconds, "pods_ready_seconds": pods_ready, "operator_requests": own, "operator_quiet_requests": own_quiet, "creates_seconds": creates, "objects_after_creates_seconds": after, "events": events, **process}
if os.environ.get("BENCH_RESULTS"):
    with open(os.environ["BENCH_RESULTS"], "a") as f:
        f.write(json.dumps(row) + "\n")
EOF
