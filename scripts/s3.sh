#!/usr/bin/env bash
# A throw-away S3 server for end-to-end tests: SeaweedFS (`weed server` with its S3 gateway),
# built into the test cache by scripts/testbin.sh, on 127.0.0.1 and free ports, data in DIR.
# One identity with generated keys; one bucket created.
#
#   scripts/s3.sh start --dir DIR [--bucket NAME] [--owner-pid PID] [--listen ADDR]
#       ADDR (default 127.0.0.1): where it listens; the node tier's pods reach the host at its
#       bridge address (10.244.0.1). Prints KEY=VALUE lines (also in DIR/env):
#       S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_ACCESS_KEY_2, S3_SECRET_KEY_2 (a second pair of
#       the same identity, for rotations), S3_BUCKET, S3_FILER (HTTP listing of the buckets)
#   scripts/s3.sh stop --dir DIR
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

cmd=${1:-}; shift || true
DIR= OWNER_PID= BUCKET=dittofs LISTEN=127.0.0.1
while [[ $# -gt 0 ]]; do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --bucket) BUCKET=$2; shift 2 ;;
    --owner-pid) OWNER_PID=$2; shift 2 ;;
    --listen) LISTEN=$2; shift 2 ;;
    *) echo "usage: $0 start|stop --dir DIR [--bucket NAME] [--owner-pid PID] [--listen ADDR]" >&2; exit 2 ;;
  esac
done
[[ -n "$DIR" ]] || { echo "--dir is required" >&2; exit 2; }

# N free ports, bound together so they differ (one at a time, the kernel may give one twice).
free_ports() {
  python3 -c 'import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))' "$1"
}
random() { head -c 400 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c "$1"; }

case $cmd in
  start)
    WEED=${DITTOFS_TESTBIN:-$("$SCRIPT_DIR/testbin.sh" | tail -n 1)}/weed
    [[ -x "$WEED" ]] || { echo "no weed at $WEED (run scripts/testbin.sh)" >&2; exit 1; }
    mkdir -p "$DIR/data"
    access=$(random 20) secret=$(random 40) access2=$(random 20) secret2=$(random 40)
    cat >"$DIR/s3.json" <<JSON
{"identities":[{"name":"dittofs","credentials":[{"accessKey":"$access","secretKey":"$secret"},{"accessKey":"$access2","secretKey":"$secret2"}],"actions":["Admin","Read","Write","List"]}]}
JSON
    read -r master master_grpc volume volume_grpc filer filer_grpc s3 s3_grpc <<<"$(free_ports 8)"
    "$WEED" server -ip="$LISTEN" -ip.bind="$LISTEN" -dir="$DIR/data" \
      -master.port="$master" -master.port.grpc="$master_grpc" -master.telemetry=false -master.volumeSizeLimitMB=64 \
      -volume.port="$volume" -volume.port.grpc="$volume_grpc" -volume.max=20 \
      -filer -filer.port="$filer" -filer.port.grpc="$filer_grpc" \
      -s3 -s3.port="$s3" -s3.port.grpc="$s3_grpc" -s3.config="$DIR/s3.json" -s3.port.iceberg=0 -s3.port.lance=0 \
      >"$DIR/weed.log" 2>&1 &
    pid=$!
    echo "$pid" >"$DIR/pid"
    # Stop with the test binary that started it, even when it is killed.
    if [[ -n "$OWNER_PID" ]]; then
      ( while kill -0 "$OWNER_PID" 2>/dev/null; do sleep 1; done; kill "$pid" 2>/dev/null ) >/dev/null 2>&1 &
    fi
    for _ in $(seq 1 120); do
      if curl -fsS -o /dev/null "http://$LISTEN:$filer/" 2>/dev/null &&
         [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$LISTEN:$s3/") != 000 ]]; then
        break
      fi
      kill -0 "$pid" 2>/dev/null || { cat "$DIR/weed.log" >&2; exit 1; }
      sleep 0.5
    done
    # A bucket is a directory under /buckets of the filer.
    echo "s3.bucket.create -name $BUCKET" | "$WEED" shell -master="$LISTEN:$master.$master_grpc" >"$DIR/shell.log" 2>&1 ||
      { cat "$DIR/shell.log" >&2; exit 1; }
    cat >"$DIR/env" <<ENV
S3_ENDPOINT=http://$LISTEN:$s3
S3_ACCESS_KEY=$access
S3_SECRET_KEY=$secret
S3_ACCESS_KEY_2=$access2
S3_SECRET_KEY_2=$secret2
S3_BUCKET=$BUCKET
S3_FILER=http://$LISTEN:$filer
ENV
    cat "$DIR/env"
    ;;
  stop)
    [[ -f "$DIR/pid" ]] && kill "$(cat "$DIR/pid")" 2>/dev/null || true
    ;;
  *) echo "usage: $0 start|stop --dir DIR [--bucket NAME] [--owner-pid PID] [--listen ADDR]" >&2; exit 2 ;;
esac
