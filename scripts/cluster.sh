#!/usr/bin/env bash
# Run a local Kubernetes control plane as plain processes on 127.0.0.1 (no containers), for tests.
#
#   scripts/cluster.sh start --tier api|full|node --dir DIR [--owner-pid PID]
#       tier api : etcd + kube-apiserver
#       tier full: + kube-controller-manager + kube-scheduler + kwok with a fake Node kwok-node-0
#       tier node: api + kcm + scheduler + a real node (containerd, runc, CNI bridge, kubelet,
#                  kube-proxy) + CoreDNS + local-path-provisioner; root only, one per machine;
#                  binaries from scripts/testbin.sh --node (see scripts/node/tier.sh)
#       Returns 0 once ready; processes keep running detached. Writes DIR/kubeconfig, DIR/env,
#       DIR/pids, DIR/logs/*.log. On failure: prints log tails, kills what it started, removes DIR.
#       --owner-pid: a detached watchdog runs "stop --dir DIR" once PID has exited.
#   scripts/cluster.sh stop --dir DIR
#       SIGTERM the recorded processes in reverse order, SIGKILL after 10 s, remove DIR. Idempotent.
#   scripts/cluster.sh run --tier api|full [--dir DIR]
#       start, print the kubeconfig, wait in the foreground; Ctrl-C / SIGTERM stops everything.
#   scripts/cluster.sh restart NAME --dir DIR [--down SECONDS]
#       stop component NAME (etcd, kube-apiserver, …) with SIGTERM, keep it down SECONDS (default
#       0), start it again with the same command line (same ports, same etcd data), wait until
#       it is ready. For the fault tests.
#
# Binaries: $DITTOFS_TESTBIN if set, else scripts/testbin.sh (builds once, then a no-op).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF=$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")
# shellcheck source=versions.env source-path=SCRIPTDIR
. "$SCRIPT_DIR/versions.env"
# shellcheck source=node/tier.sh source-path=SCRIPTDIR
. "$SCRIPT_DIR/node/tier.sh"
READY_TIMEOUT=${DITTOFS_CLUSTER_TIMEOUT:-60}   # seconds, per wait
STOP_TIMEOUT=10                                # seconds before SIGKILL
NODE_NAME=kwok-node-0
# The fake node's capacity (scripts/bench.sh raises it to take every server's pod).
KWOK_PODS=${DITTOFS_KWOK_PODS:-110} KWOK_CPU=${DITTOFS_KWOK_CPU:-32} KWOK_MEMORY=${DITTOFS_KWOK_MEMORY:-256Gi}

log() { printf '[cluster %6.1fs] %s\n' "$(elapsed)" "$*" >&2; }
T0=${EPOCHREALTIME/,/.}
elapsed() { awk -v a="$T0" -v b="${EPOCHREALTIME/,/.}" 'BEGIN { printf "%.1f", b - a }'; }
usage() { sed -n '2,18p' "$SELF" >&2; exit 2; }

# ---------------------------------------------------------------- process bookkeeping

# Start time of a process (field 22 of /proc/PID/stat), empty if gone or a zombie. Stored next to
# the PID so that stop never signals a recycled PID.
proc_start() {
  local stat rest
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  rest=${stat##*) }                      # fields from 3 on (comm may contain spaces)
  # shellcheck disable=SC2086
  set -- $rest
  [[ "$1" == Z ]] && return 0
  echo "${20}"
}

# alive PID START: is PID still the process that was started?
alive() { [[ -n "$2" && "$(proc_start "$1")" == "$2" ]]; }

# Stop everything listed in DIR/pids (reverse order), then remove DIR. Tier node (DIR/node):
# node_stop also undoes its changes to the host; DIR stays if a mount under it could not go.
do_stop() {
  local dir=$1 lines=() i name pid start deadline
  [[ -e "$dir" ]] || return 0
  if [[ -d "$dir/node" ]]; then
    node_stop "$dir" || { echo "cluster: $dir kept (see above)" >&2; return 1; }
    rm -rf --one-file-system "$dir"
    return 0
  fi
  if [[ -f "$dir/pids" ]]; then
    mapfile -t lines <"$dir/pids"
    deadline=$((SECONDS + STOP_TIMEOUT))
    for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
      read -r name pid start <<<"${lines[i]}"
      alive "$pid" "$start" || continue
      kill -TERM "$pid" 2>/dev/null || true
      # Wait for this one before the next (apiserver before etcd), within the shared budget.
      while alive "$pid" "$start" && ((SECONDS < deadline)); do sleep 0.1; done
    done
    for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
      read -r name pid start <<<"${lines[i]}"
      if alive "$pid" "$start"; then
        echo "cluster: $name (pid $pid) did not exit after ${STOP_TIMEOUT}s, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
    for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
      read -r name pid start <<<"${lines[i]}"
      while alive "$pid" "$start"; do sleep 0.1; done
    done
  fi
  rm -rf "$dir"
}

# ---------------------------------------------------------------- helpers for start

# A free TCP port on 127.0.0.1 below the ephemeral range (so clients' source ports cannot take it).
# Not atomic: start retries with new ports when a component reports "address already in use".
USED_PORTS=" "
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    [[ "$USED_PORTS" == *" $p "* ]] && continue
    if ! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS+="$p "
      echo "$p"
      return 0
    fi
  done
  return 1
}

# launch_into PIDS NAME CMD...: start detached (own session), stdout+stderr appended to
# logs/NAME.log, record "NAME PID START" in PIDS.
launch_into() {
  local pids=$1 name=$2; shift 2
  setsid "$@" </dev/null >>"$DIR/logs/$name.log" 2>&1 3>&- &
  local pid=$! start=""
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    start=$(proc_start "$pid")
    [[ -n "$start" ]] && break
    sleep 0.01
  done
  echo "$name $pid $start" >>"$pids"
  log "started $name (pid $pid)"
}

# launch NAME CMD...: launch_into DIR/pids.
launch() { launch_into "$DIR/pids" "$@"; }

# Fail if any recorded process has exited.
check_alive() {
  local name pid start
  while read -r name pid start; do
    alive "$pid" "$start" || fail "$name (pid $pid) exited" "$name"
  done <"$DIR/pids"
}

# wait_for DESC CMD...: poll CMD every 0.2 s until it succeeds, within READY_TIMEOUT.
wait_for() {
  local desc=$1; shift
  local deadline=$((SECONDS + READY_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    check_alive
    ((SECONDS < deadline)) || fail "timed out after ${READY_TIMEOUT}s waiting for $desc"
    sleep 0.2
  done
  log "$desc: ok"
}

# fail MSG [NAME]: print log tails (NAME's first), stop everything, remove DIR, exit 1.
fail() {
  local msg=$1 first=${2:-} f
  trap - INT TERM
  # A trap may fire inside a command whose stderr is /dev/null: use the saved stderr (fd 3).
  { true >&3; } 2>/dev/null && exec 2>&3
  log "ERROR: $msg"
  for f in ${first:+"$DIR/logs/$first.log"} "$DIR"/logs/*.log; do
    [[ -f "$f" ]] || continue
    [[ -n "$first" && "$f" == "$DIR/logs/$first.log" && "${shown:-}" == 1 ]] && continue
    [[ -n "$first" && "$f" == "$DIR/logs/$first.log" ]] && shown=1
    echo "----- tail -n 40 $f" >&2
    tail -n 40 "$f" >&2 || true
  done
  if grep -qs 'address already in use' "$DIR"/logs/*.log; then
    echo "port clash" >"$PORT_CLASH_FLAG"
  fi
  do_stop "$DIR"
  exit 1
}

# HTTPS request to the apiserver as the admin user.
api() {
  curl -sS --fail --max-time 5 --cacert "$DIR/ca.crt" --cert "$DIR/admin.crt" --key "$DIR/admin.key" \
    "$@"
}

gen_certs() {
  local d=$DIR o=(openssl)
  # CA, serving and client certs: EC P-256 (fast to generate). Service-account key: RSA 2048.
  "${o[@]}" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -keyout "$d/ca.key" -out "$d/ca.crt" -subj "/CN=dittofs-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
  issue() { # issue NAME SUBJECT EXTENSIONS
    "${o[@]}" req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$d/$1.key" -out "$d/$1.csr" -subj "$2"
    "${o[@]}" x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -set_serial "0x$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')" \
      -days 3650 -out "$d/$1.crt" -extfile <(printf '%s\n' "$3")
    rm -f "$d/$1.csr"
  }
  issue serving "/CN=kube-apiserver" \
    "$(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature' "${EXTRA_SANS:-}")"
  issue admin "/O=system:masters/CN=admin" \
    "$(printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature')"
  "${o[@]}" genrsa -out "$d/sa.key" 2048
  "${o[@]}" rsa -in "$d/sa.key" -pubout -out "$d/sa.pub"
  chmod 600 "$d"/*.key
}

write_kubeconfig() {
  cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$AP
    certificate-authority: $DIR/ca.crt
users:
- name: admin
  user:
    client-certificate: $DIR/admin.crt
    client-key: $DIR/admin.key
contexts:
- name: local
  context: {cluster: local, user: admin}
current-context: local
EOF
}

node_ready() {
  api "https://127.0.0.1:$AP/api/v1/nodes/$NODE_NAME" | tr -d ' \n' | grep -q '"type":"Ready","status":"True"'
}

create_node() {
  api -X POST -H 'Content-Type: application/json' "https://127.0.0.1:$AP/api/v1/nodes" -d @- <<EOF
{"apiVersion": "v1", "kind": "Node",
 "metadata": {"name": "$NODE_NAME",
   "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
   "labels": {"kubernetes.io/hostname": "$NODE_NAME", "kubernetes.io/os": "linux",
              "kubernetes.io/arch": "amd64", "type": "kwok"}},
 "status": {"allocatable": {"cpu": "$KWOK_CPU", "memory": "$KWOK_MEMORY", "pods": "$KWOK_PODS"},
            "capacity": {"cpu": "$KWOK_CPU", "memory": "$KWOK_MEMORY", "pods": "$KWOK_PODS"}}}
EOF
}

# One start attempt; globals: DIR TIER BIN OWNER_PID. Exits non-zero on failure.
start_once() {
  exec 3>&2   # saved stderr for fail(); closed for the launched processes
  trap 'fail "interrupted"' INT TERM
  mkdir -p "$DIR/logs" "$DIR/certs"
  : >"$DIR/pids"
  EP=$(free_port); PP=$(free_port); AP=$(free_port)
  local -a apiserver_flags=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1
    --authorization-mode=RBAC --disable-admission-plugins=ServiceAccount --endpoint-reconciler-type=none)
  EXTRA_SANS=""
  if [[ "$TIER" == node ]]; then
    KP=$(free_port); KHP=$(free_port); PHP=$(free_port); PMP=$(free_port)
    node_preflight
    node_lock
    node_prepare
    node_apiserver_dnat
    # Pods reach the apiserver through Service kubernetes (10.0.0.1:443 -> bridge address:AP);
    # the Endpoints are maintained (lease reconciler); kubelet and pods get ServiceAccount tokens.
    # shellcheck disable=SC2054  # commas inside flag values
    apiserver_flags=(--bind-address="$NODE_GW" --advertise-address="$NODE_GW"
      --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction
      --kubelet-client-certificate="$DIR/apiserver-kubelet-client.crt"
      --kubelet-client-key="$DIR/apiserver-kubelet-client.key"
      --kubelet-certificate-authority="$DIR/ca.crt" --kubelet-preferred-address-types=InternalIP)
    EXTRA_SANS=",IP:$NODE_GW,IP:$NODE_KUBERNETES_SVC_IP,DNS:kubernetes,DNS:kubernetes.default"
    EXTRA_SANS+=",DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  fi

  gen_certs >"$DIR/logs/openssl.log" 2>&1 || fail "certificate generation failed" openssl
  if [[ "$TIER" == node ]]; then
    NODE_NAME=$NODE_NODE_NAME
    node_issue_certs >>"$DIR/logs/openssl.log" 2>&1 || fail "certificate generation failed" openssl
    node_write_configs
  fi
  write_kubeconfig
  log "certificates + kubeconfig written"

  launch etcd "$BIN/etcd" --name=etcd0 --data-dir="$DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$EP" --advertise-client-urls="http://127.0.0.1:$EP" \
    --listen-peer-urls="http://127.0.0.1:$PP" --initial-advertise-peer-urls="http://127.0.0.1:$PP" \
    --initial-cluster="etcd0=http://127.0.0.1:$PP" \
    --unsafe-no-fsync=true --log-level=warn
  wait_for "etcd /health" sh -c "curl -sf --max-time 2 http://127.0.0.1:$EP/health | grep -q '\"health\":\"true\"'"

  launch kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$EP" \
    --secure-port="$AP" \
    --tls-cert-file="$DIR/serving.crt" --tls-private-key-file="$DIR/serving.key" \
    --cert-dir="$DIR/certs" --client-ca-file="$DIR/ca.crt" \
    --service-account-issuer="https://127.0.0.1:$AP/" \
    --service-account-key-file="$DIR/sa.pub" --service-account-signing-key-file="$DIR/sa.key" \
    --service-cluster-ip-range=10.0.0.0/16 --service-node-port-range=20000-60000 \
    --allow-privileged=true \
    "${apiserver_flags[@]}"
  wait_for "kube-apiserver /readyz" api "https://127.0.0.1:$AP/readyz"
  wait_for "namespace default" api "https://127.0.0.1:$AP/api/v1/namespaces/default"

  if [[ "$TIER" == full ]]; then
    local kc=$DIR/kubeconfig
    launch kube-controller-manager "$BIN/kube-controller-manager" \
      --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
      --leader-elect=false --controllers='*' --use-service-account-credentials=false \
      --service-account-private-key-file="$DIR/sa.key" --root-ca-file="$DIR/ca.crt" \
      --cluster-signing-cert-file="$DIR/ca.crt" --cluster-signing-key-file="$DIR/ca.key" \
      --bind-address=127.0.0.1 --secure-port=0
    launch kube-scheduler "$BIN/kube-scheduler" \
      --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
      --leader-elect=false --bind-address=127.0.0.1 --secure-port=0
    launch kwok "$BIN/kwok" --kubeconfig="$kc" --config="$BIN/kwok-stages.yaml" \
      --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
      --node-lease-duration-seconds=40 --cidr=10.1.0.0/16 --node-ip=10.2.0.1
    create_node >/dev/null || fail "creating Node $NODE_NAME failed"
    wait_for "Node $NODE_NAME Ready" node_ready
    # The service-account controller of kcm creates this; proves kcm's controllers run.
    wait_for "ServiceAccount default/default" api "https://127.0.0.1:$AP/api/v1/namespaces/default/serviceaccounts/default"
  fi
  [[ "$TIER" == node ]] && node_start_components

  cat >"$DIR/env" <<EOF
KUBECONFIG=$DIR/kubeconfig
DITTOFS_CLUSTER_TIER=$TIER
DITTOFS_APISERVER_URL=https://127.0.0.1:$AP
DITTOFS_ETCD_URL=http://127.0.0.1:$EP
DITTOFS_TESTBIN=$BIN
EOF
  [[ "$TIER" == node ]] && node_env >>"$DIR/env"
  trap - INT TERM
}

# Detached watchdog: once OWNER_PID is gone, stop the cluster (unless it was stopped already).
# Started before the cluster, so an owner that dies during start-up is covered too.
start_watchdog() {
  local owner=$1 ostart
  ostart=$(proc_start "$owner")
  [[ -n "$ostart" ]] || { echo "cluster: owner pid $owner is not running" >&2; exit 1; }
  # shellcheck disable=SC2016  # single-quoted on purpose: arguments arrive as $1..$6
  setsid bash -c '
    # alive PID START: /proc/PID/stat exists, not a zombie, same start time (field 22).
    alive() {
      local s f; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
      read -ra f <<<"${s##*) }"; [[ "${f[0]}" != Z && "${f[19]}" == "$2" ]]
    }
    while alive "$2" "$3"; do
      # Stopped by someone else (dir gone) and start-up finished: nothing left to guard.
      [[ -d "$1" ]] || alive "$5" "$6" || exit 0
      sleep 1
    done
    [[ -d "$1" ]] && exec "$4" stop --dir "$1"
    exit 0' watchdog "$DIR" "$owner" "$ostart" "$SELF" "$$" "$(proc_start $$)" \
    </dev/null >/dev/null 2>&1 &
  log "watchdog (pid $!) stops the cluster when pid $owner exits"
}

resolve_bin() {
  local node_flag=()
  [[ "$TIER" == node ]] && node_flag=(--node)
  if [[ -n "${DITTOFS_TESTBIN:-}" ]]; then
    BIN=$DITTOFS_TESTBIN
  else
    BIN=$("$SCRIPT_DIR/testbin.sh" "${node_flag[@]}" | tail -n 1) || { echo "cluster: testbin.sh failed" >&2; exit 1; }
  fi
  local b
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kwok kwok-stages.yaml; do
    [[ "$TIER" == api && "$b" != etcd && "$b" != kube-apiserver ]] && continue
    [[ "$TIER" == node && "$b" == kwok* ]] && continue
    [[ -e "$BIN/$b" ]] || { echo "cluster: $BIN/$b missing (run scripts/testbin.sh)" >&2; exit 1; }
  done
  if [[ "$TIER" == node ]]; then
    NB=${DITTOFS_NODEBIN:-$BIN/node-$NODE_KEY}
    [[ -s "$NB/VERSIONS" && -x "$BIN/kubectl" ]] ||
      { echo "cluster: node set $NB incomplete (run scripts/testbin.sh --node)" >&2; exit 1; }
  fi
}

do_start() {
  [[ "$TIER" == api || "$TIER" == full || "$TIER" == node ]] ||
    { echo "cluster: --tier api|full|node required" >&2; exit 2; }
  [[ -n "$DIR" ]] || { echo "cluster: --dir required" >&2; exit 2; }
  DIR=$(realpath -m "$DIR")
  if [[ -e "$DIR" ]] && [[ -n "$(ls -A "$DIR")" ]]; then
    echo "cluster: $DIR exists and is not empty (running cluster? use stop --dir)" >&2
    exit 1
  fi
  resolve_bin
  log "tier $TIER, dir $DIR, binaries $BIN"
  [[ -n "$OWNER_PID" ]] && start_watchdog "$OWNER_PID"
  PORT_CLASH_FLAG=$(mktemp)
  local attempt rc sub
  for attempt in 1 2 3; do
    : >"$PORT_CLASH_FLAG"
    # Background subshell: fail() exits it. SIGINT/SIGTERM to this script are forwarded to it,
    # so its trap cleans up. A port clash is retried with new ports.
    (set -e; start_once) &
    sub=$!
    trap 'kill -TERM "$sub" 2>/dev/null; wait "$sub"; rm -f "$PORT_CLASH_FLAG"; exit 1' INT TERM
    rc=0; wait "$sub" || rc=$?
    trap - INT TERM
    if ((rc == 0)); then
      rm -f "$PORT_CLASH_FLAG"
      log "tier $TIER ready (KUBECONFIG=$DIR/kubeconfig)"
      return 0
    fi
    # An attempt that died without fail() (errexit) may have left processes or host state.
    [[ -d "$DIR" ]] && do_stop "$DIR"
    [[ -s "$PORT_CLASH_FLAG" ]] || break
    log "port clash, retrying with new ports (attempt $((attempt + 1)))"
  done
  rm -f "$PORT_CLASH_FLAG"
  exit 1
}

# Restart one recorded component with its own command line; globals: DIR, DOWN.
do_restart() {
  local want=$1 lines=() i name pid start found=""
  mapfile -t lines <"$DIR/pids"
  for i in "${!lines[@]}"; do
    read -r name pid start <<<"${lines[i]}"
    [[ "$name" == "$want" ]] && { found=$i; break; }
  done
  [[ -n "$found" ]] || { echo "cluster: no component $want in $DIR/pids" >&2; exit 2; }
  alive "$pid" "$start" || { echo "cluster: $want (pid $pid) is not running" >&2; exit 1; }
  local -a cmdline
  mapfile -d '' -t cmdline <"/proc/$pid/cmdline"
  kill -TERM "$pid"
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while alive "$pid" "$start" && ((SECONDS < deadline)); do sleep 0.05; done
  alive "$pid" "$start" && kill -KILL "$pid"
  while alive "$pid" "$start"; do sleep 0.05; done
  log "$want (pid $pid) stopped"
  sleep "${DOWN:-0}"
  # Relaunch, then put its line back where it was (stop order stays etcd last).
  local before=("${lines[@]:0:found}") after=("${lines[@]:found+1}")
  : >"$DIR/pids.new"
  launch_into "$DIR/pids.new" "$want" "${cmdline[@]}"
  { printf '%s\n' "${before[@]}"; cat "$DIR/pids.new"; printf '%s\n' "${after[@]}"; } | grep -v '^$' >"$DIR/pids.tmp"
  mv "$DIR/pids.tmp" "$DIR/pids"; rm -f "$DIR/pids.new"
  # shellcheck disable=SC1091
  . "$DIR/env"
  case "$want" in
    etcd) wait_for "etcd /health" sh -c "curl -sf --max-time 2 $DITTOFS_ETCD_URL/health | grep -q '\"health\":\"true\"'" ;;
    kube-apiserver) wait_for "kube-apiserver /readyz" api "$DITTOFS_APISERVER_URL/readyz" ;;
  esac
}

# ---------------------------------------------------------------- main

cmd=${1:-}; [[ -n "$cmd" ]] || usage; shift
TIER="" DIR="" OWNER_PID="" DOWN=0 COMPONENT=""
if [[ "$cmd" == restart ]]; then COMPONENT=${1:?restart needs a component name}; shift; fi
while (($#)); do
  case "$1" in
    --down) DOWN=${2:?}; shift 2 ;;
    --tier) TIER=${2:?}; shift 2 ;;
    --tier=*) TIER=${1#*=}; shift ;;
    --dir) DIR=${2:?}; shift 2 ;;
    --dir=*) DIR=${1#*=}; shift ;;
    --owner-pid) OWNER_PID=${2:?}; shift 2 ;;
    --owner-pid=*) OWNER_PID=${1#*=}; shift ;;
    *) usage ;;
  esac
done

case "$cmd" in
  start)
    do_start
    ;;
  stop)
    [[ -n "$DIR" ]] || { echo "cluster: --dir required" >&2; exit 2; }
    do_stop "$(realpath -m "$DIR")"
    ;;
  restart)
    [[ -n "$DIR" ]] || { echo "cluster: --dir required" >&2; exit 2; }
    DIR=$(realpath -m "$DIR")
    exec 3>&2
    [[ -d "$DIR/node" ]] && node_path "$DIR"
    do_restart "$COMPONENT"
    ;;
  run)
    [[ -n "$DIR" ]] || { DIR=$(mktemp -d "${TMPDIR:-/tmp}/dittofs-cluster.XXXXXX"); }
    do_start
    trap 'log "stopping"; do_stop "$DIR"; exit 0' INT TERM
    echo "KUBECONFIG=$DIR/kubeconfig"
    echo "export KUBECONFIG=$DIR/kubeconfig"
    echo "# logs: $DIR/logs/   stop: Ctrl-C" >&2
    # Stay in the foreground; report and stop if a component dies.
    while true; do
      while read -r name pid start; do
        if ! alive "$pid" "$start"; then
          log "$name (pid $pid) exited; tail of its log:"
          tail -n 40 "$DIR/logs/$name.log" >&2 || true
          do_stop "$DIR"
          exit 1
        fi
      done <"$DIR/pids"
      sleep 1 & wait $! || true
    done
    ;;
  *) usage ;;
esac
