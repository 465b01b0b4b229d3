#!/usr/bin/env bash
# Runs a DittoServer's DittoFS on this machine exactly as its pod would run it: the rendered
# container's args and environment (Secret references resolved through kubectl), the rendered
# config file, and the claims as directories under DIR bind-mounted on /data in a private mount
# namespace (so the paths the operator sends over the REST API mean what they mean in the pod).
# Stands in for a kubelet where there is none (the demo's pods are kwok's).
#
#   scripts/run-dfs.sh --name NAME [--namespace NS] --dir DIR
# Needs kubectl (KUBECTL or PATH, with KUBECONFIG), python3, unshare, and dfs from the test cache.
# Runs in the foreground (exec): stop it with SIGTERM, as the kubelet would.
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NAME= NS=default DIR=
while [[ $# -gt 0 ]]; do
  case $1 in
    --name) NAME=$2; shift 2 ;;
    --namespace|-n) NS=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    *) echo "usage: $0 --name NAME [--namespace NS] --dir DIR" >&2; exit 2 ;;
  esac
done
[[ -n "$NAME" && -n "$DIR" ]] || { echo "usage: $0 --name NAME [--namespace NS] --dir DIR" >&2; exit 2; }
KUBECTL=${KUBECTL:-kubectl}
DFS=${DITTOFS_TESTBIN:-$("$SCRIPT_DIR/testbin.sh" | tail -n 1)}/dfs
mkdir -p "$DIR/config"
DIR=$(cd "$DIR" && pwd)
for claim in controlplane store/metadata store/block cache; do mkdir -p "$DIR/data/$claim"; done

"$KUBECTL" get configmap "$NAME-config" -n "$NS" -o jsonpath='{.data.config\.yaml}' >"$DIR/config/config.yaml"
"$KUBECTL" get statefulset "$NAME" -n "$NS" -o json >"$DIR/statefulset.json"
"$KUBECTL" get secrets -n "$NS" -o json >"$DIR/secrets.json"
# The container's args (config path moved to DIR/config) and resolved env, NUL-separated.
python3 - "$DIR" <<'PY'
import base64, json, sys
d = sys.argv[1]
sts = json.load(open(f"{d}/statefulset.json"))
secrets = {s["metadata"]["name"]: s.get("data", {}) for s in json.load(open(f"{d}/secrets.json"))["items"]}
c = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "dittofs")
args = [a.replace("/config/config.yaml", f"{d}/config/config.yaml") for a in c.get("args", [])]
env = []
for var in c.get("env", []):
    if "value" in var:
        env.append(f"{var['name']}={var['value']}")
    elif "secretKeyRef" in var.get("valueFrom", {}):
        ref = var["valueFrom"]["secretKeyRef"]
        value = secrets.get(ref["name"], {}).get(ref["key"])
        if value is None:
            if ref.get("optional"):
                continue
            sys.exit(f"{var['name']}: Secret {ref['name']} has no key {ref['key']}")
        env.append(f"{var['name']}={base64.b64decode(value).decode()}")
open(f"{d}/args", "w").write("\0".join(args))
open(f"{d}/env", "w").write("\0".join(env))
PY
rm -f "$DIR/secrets.json"
mapfile -d '' ARGS <"$DIR/args"
mapfile -d '' ENV <"$DIR/env"
rm -f "$DIR/env"
# Root binds /data directly; others map themselves to root in a user namespace first.
NS_FLAGS=(-m)
[[ $(id -u) == 0 ]] || NS_FLAGS=(-r -m)
# shellcheck disable=SC2016
exec env -i PATH=/usr/bin:/bin HOME="$DIR" "${ENV[@]}" unshare "${NS_FLAGS[@]}" sh -c \
  'mkdir -p /data && mount --bind "$0" /data && exec "$@"' "$DIR/data" "$DFS" "${ARGS[@]}"
