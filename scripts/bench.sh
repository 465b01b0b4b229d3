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
cleanup() {
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
"$ROOT/scripts/cluster.sh" start --tier api --dir "$WORK/cluster" --owner-pid $$ 2>"$WORK/cluster.log" \
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

# Start to first reconcile: a DittoServer waits for the operator.
manifest probe | kubectl create -f - >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
STARTED=$EPOCHREALTIME
${BENCH_OPERATOR_ENV:-} "$OPERATOR" run --namespace bench --dittofs-api off --concurrency "$CONCURRENCY" \
  --health-address "127.0.0.1:$PORT" >"$WORK/operator.log" 2>&1 &
OPERATOR_PID=$!
FIRST=$($PY wait-objects bench 1 60 "$STARTED")
$PY wait-status bench 1 60 "$STARTED" >/dev/null

# Convergence.
for ((i = 0; i < N; i++)); do printf -- '---\n'; manifest "$(printf 'server-%04d' "$i")"; done >"$WORK/servers.yaml"
$PY requests "$WORK/before.json"
CREATED=$EPOCHREALTIME
# kubectl creates them one at a time; when it returns is recorded (the apiserver's share).
(kubectl create -f "$WORK/servers.yaml" >/dev/null && echo "$EPOCHREALTIME" >"$WORK/created-at") &
CREATE_PID=$!
OBJECTS=$($PY wait-objects bench $((N + 1)) 600 "$CREATED")
STATUS=$($PY wait-status bench $((N + 1)) 600 "$CREATED")
wait "$CREATE_PID"
CREATES=$(python3 -c 'import sys; print(f"{float(sys.argv[1]) - float(sys.argv[2]):.3f}")' "$(cat "$WORK/created-at")" "$CREATED")
$PY requests "$WORK/converged.json"
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
sleep "$QUIET"
$PY requests "$WORK/quiet-end.json"
IDLE=$($PY delta "$WORK/quiet-start.json" "$WORK/quiet-end.json" 0)
PROCESS=$($PY process "$OPERATOR_PID")

# The floor, with the same objects, order and parallelism.
FLOOR_SECONDS=$("$FLOOR" floor "$N" "$CONCURRENCY" "$ROOT/deploy/samples/minimal-sqlite.yaml")
# Who published the Events of the namespace (read after the counting ends): the apiserver may
# publish some of its own (its ClusterIP repair loop), which `POST events` counts too.
EVENTS=$($PY events bench dittofs-operator)

OBJECTS_PER_SERVER=$(kubectl get configmaps,secrets,services,networkpolicies,statefulsets -n bench \
  -l app.kubernetes.io/instance=probe -o name | wc -l)
python3 - "$N" "$FIRST" "$OBJECTS" "$STATUS" "$REQUESTS" "$IDLE" "$PROCESS" "$FLOOR_SECONDS" "$OBJECTS_PER_SERVER" "$CONCURRENCY" "$PASSES" "$CREATES" "$EVENTS" <<'EOF'
import json, os, sys
n, first, objects, status = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
requests, idle, process = json.loads(sys.argv[5]), json.loads(sys.argv[6]), json.loads(sys.argv[7])
floor, per_server, concurrency = float(sys.argv[8]), int(sys.argv[9]), int(sys.argv[10])
passes, creates, events = int(sys.argv[11]), float(sys.argv[12]), json.loads(sys.argv[13])
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
print(f"passes until then:                 {passes}   ({passes / (n + 1):.1f} per DittoServer)")
print(f"requests during convergence:       {requests['total']}  (budget objects x 1.2 + 2 per DittoServer: {budget:.0f})")
for what, count in requests["by_resource"].items():
    print(f"  {what:<40} {count}")
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
       "concurrency": concurrency, "passes": passes, "creates_seconds": creates, "objects_after_creates_seconds": after, "events": events, **process}
if os.environ.get("BENCH_RESULTS"):
    with open(os.environ["BENCH_RESULTS"], "a") as f:
        f.write(json.dumps(row) + "\n")
EOF
