#!/usr/bin/env bash
# Smoke check of a running node tier (scripts/cluster.sh start --tier node --dir DIR):
#   1. a pod from the imported DittoFS image as uid 65532 (runAsNonRoot, readOnlyRootFilesystem,
#      drop ALL, seccomp RuntimeDefault, fsGroup 2000) with a PVC on the default StorageClass,
#      running /app/dfs version and checking its identity, capabilities and volume ownership;
#   2. a busybox pod resolving kubernetes.default.svc.cluster.local through CoreDNS (nslookup).
# Usage: scripts/node/smoke.sh DIR      (exit 0 = both passed; the namespace is deleted after)
set -euo pipefail
DIR=$(realpath "${1:?usage: $0 DIR}")
# shellcheck disable=SC1091
. "$DIR/env"
K=("$DITTOFS_TESTBIN/kubectl" --kubeconfig "$DIR/kubeconfig")
NS=smoke-$$
T0=$SECONDS
"${K[@]}" create namespace "$NS" >/dev/null
trap '"${K[@]}" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT
"${K[@]}" -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: dfs}
spec:
  restartPolicy: Never
  securityContext:
    runAsUser: 65532
    runAsGroup: 65532
    runAsNonRoot: true
    fsGroup: 2000
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: dfs
    image: $DITTOFS_IMAGE
    imagePullPolicy: IfNotPresent
    command: ["/bin/sh", "-c"]
    args:
    - |
      set -e
      /app/dfs version | head -n 1
      echo "id: \$(id)"
      grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status
      if touch /rootfs-probe 2>/dev/null; then echo "rootfs: writable"; else echo "rootfs: read-only"; fi
      echo hello >/data/metadata/f
      echo "volume: \$(stat -c '%u:%g %A' /data/metadata) file: \$(stat -c '%u:%g' /data/metadata/f)"
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
    volumeMounts:
    - {name: data, mountPath: /data/metadata}
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: data}
---
apiVersion: v1
kind: Pod
metadata: {name: dns}
spec:
  restartPolicy: Never
  securityContext:
    runAsUser: 65532
    runAsNonRoot: true
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: dns
    image: $DITTOFS_BUSYBOX_IMAGE
    imagePullPolicy: Never
    command: ["nslookup", "kubernetes.default.svc.cluster.local"]
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
EOF
phase() { "${K[@]}" -n "$NS" get pod "$1" -o jsonpath='{.status.phase}'; }
for _ in $(seq 120); do
  a=$(phase dfs) b=$(phase dns)
  [[ "$a" =~ Succeeded|Failed && "$b" =~ Succeeded|Failed ]] && break
  sleep 0.5
done
dfs_log=$("${K[@]}" -n "$NS" logs dfs 2>&1 || true)
dns_log=$("${K[@]}" -n "$NS" logs dns 2>&1 || true)
printf -- '--- dfs (%s)\n%s\n--- dns (%s)\n%s\n' "$a" "$dfs_log" "$b" "$dns_log"
ok=true
check() { if grep -qE -- "$2" <<<"$3"; then echo "ok   $1"; else echo "FAIL $1"; ok=false; fi; }
check "dfs pod Succeeded" '^Succeeded$' "$a"
check "dfs version" "^dfs v[0-9]" "$dfs_log"
check "uid/gid 65532, group 2000" 'uid=65532.*gid=65532.*2000' "$dfs_log"
check "no capabilities" 'CapEff:[[:space:]]+0+$' "$dfs_log"
check "no new privileges" 'NoNewPrivs:[[:space:]]+1' "$dfs_log"
check "seccomp filter" 'Seccomp:[[:space:]]+2' "$dfs_log"
check "read-only rootfs" 'rootfs: read-only' "$dfs_log"
check "PVC group 2000 setgid, file 65532:2000" 'volume: [0-9]+:2000 drwxrws.* file: 65532:2000' "$dfs_log"
check "PVC bound (local-path)" 'Bound' "$("${K[@]}" -n "$NS" get pvc data -o jsonpath='{.status.phase} {.spec.storageClassName}')"
check "dns pod Succeeded" '^Succeeded$' "$b"
check "resolver is the kube-dns Service" "Server:[[:space:]]+${DITTOFS_CLUSTER_DNS//./\\.}$" "$dns_log"
check "kubernetes.default.svc.cluster.local -> 10.0.0.1" '^Address:[[:space:]]+10\.0\.0\.1$' "$dns_log"
echo "smoke: $((SECONDS - T0)) s"
$ok
