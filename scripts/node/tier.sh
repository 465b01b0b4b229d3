# shellcheck shell=bash
# Tier `node` of scripts/cluster.sh (sourced by it; functions only): a real kubelet + containerd +
# runc + CNI (bridge) + kube-proxy on this machine, next to the control plane of tier `full`
# (without kwok), plus the add-ons CoreDNS and local-path-provisioner (default StorageClass).
# Binaries and images come from `scripts/testbin.sh --node`; nothing is pulled.
#
# Host resources are global, so only one node tier runs per machine (network namespace): a flock
# on $NODE_LOCK, held by a `sleep infinity` recorded first in DIR/pids (and so stopped last). A
# second start fails at once, or queues for DITTOFS_NODE_LOCK_WAIT seconds if that is set.
# Everything the tier changes outside DIR is recorded in DIR/node/ after taking the lock and
# undone by node_stop (sysctls, iptables/ip6tables rules and chains, nftables tables, the bridge,
# cgroups, hard-coded paths); a start that fails half way is undone the same way.
#
# Requires root, iproute2 and iptables (installed with apt-get when missing), flock, cgroup v1 (v2 is
# handled but untested). Uses globals of cluster.sh: DIR BIN AP TIER NODE_NAME, launch, wait_for,
# fail, alive, proc_start, api, log.

NODE_BRIDGE=dittofs0
NODE_POD_CIDR=10.244.0.0/24
NODE_GW=10.244.0.1
NODE_SVC_CIDR=10.0.0.0/16
# shellcheck disable=SC2034  # used by cluster.sh (serving cert SAN)
NODE_KUBERNETES_SVC_IP=10.0.0.1
NODE_DNS_IP=10.0.0.10
NODE_NODE_NAME=dittofs-node-0
NODE_LOCK=/run/dittofs-node-tier.lock
NODE_CGROOT=/dittofs-node-tier
# Paths outside DIR that kubelet, containerd's CNI library and the shims hard-code.
NODE_HOST_PATHS=(/var/lib/kubelet/device-plugins /var/log/containers /var/lib/cni/results /run/containerd/s)
# Host sysctls the kubelet, the bridge plugin or kube-proxy may change: saved to DIR/sysctls and
# restored at stop (only those that exist).
NODE_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes
  net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv4.conf.default.forwarding
  net.ipv6.conf.all.forwarding net.ipv6.conf.default.forwarding
  net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
  net.netfilter.nf_conntrack_tcp_timeout_close_wait net.netfilter.nf_conntrack_tcp_be_liberal
  net.netfilter.nf_conntrack_udp_timeout net.netfilter.nf_conntrack_udp_timeout_stream)

# ---------------------------------------------------------------- helpers

# Mount points of the cgroup hierarchies (v1 and v2), one per line.
node_cgroup_mounts() { awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts; }

# Mount points at or under $1 (octal escapes of /proc/mounts decoded), in mount order.
node_mounts_under() {
  local d=$1 m
  while read -r _ m _; do
    m=$(printf '%b' "${m//\\/\\0}")
    [[ "$m" == "$d" || "$m" == "$d"/* ]] && echo "$m"
  done </proc/mounts
}

node_ipt() { # node_ipt v4|v6 ARGS...: iptables or ip6tables (waits for the xtables lock)
  local b=iptables; [[ $1 == v6 ]] && b=ip6tables; shift
  command -v "$b" >/dev/null || return 0
  "$b" -w 5 "$@"
}
node_ipt_save() { # node_ipt_save v4|v6
  local b=iptables-save; [[ $1 == v6 ]] && b=ip6tables-save
  command -v "$b" >/dev/null || return 0
  "$b" 2>/dev/null | sed -e '/^#/d' -e 's/\[[0-9]*:[0-9]*\]$/[0:0]/' || true
}

# ---------------------------------------------------------------- start

# Checks that need no lock; fails with a clear message.
node_preflight() {
  [[ $(id -u) == 0 ]] || fail "tier node needs root (kubelet, containerd, bridge, iptables)"
  # A fresh Debian has no iptables: install what is missing (kube-proxy, portmap and the bridge
  # plugin's masquerade rules need the binaries).
  if ! command -v iptables >/dev/null || ! command -v iptables-save >/dev/null || ! command -v ip >/dev/null; then
    log "installing Debian packages iptables iproute2 (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables iproute2 >&2 ||
      { DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables iproute2 >&2; } ||
      fail "tier node needs iptables and iproute2; apt-get install failed"
  fi
  local c
  for c in ip iptables iptables-save ip6tables-save flock mount umount; do
    command -v "$c" >/dev/null || fail "tier node needs $c (Debian: apt-get install iproute2 iptables util-linux mount)"
  done
  [[ -d /sys/fs/cgroup ]] || fail "no /sys/fs/cgroup"
  [[ -n "$(node_cgroup_mounts)" ]] || fail "no cgroup hierarchy mounted"
}

# Take the machine-wide lock; from here on DIR/node/owned says host state is ours to restore.
node_lock() {
  mkdir -p "$DIR/node"
  exec 8>>"$NODE_LOCK"
  local wait=${DITTOFS_NODE_LOCK_WAIT:-0}   # seconds to queue behind another node tier
  ((wait > 0)) && log "waiting up to ${wait}s for $NODE_LOCK"
  if ! { if ((wait > 0)); then flock -w "$wait" 8; else flock -n 8; fi; }; then
    exec 8>&-
    fail "another node tier holds $NODE_LOCK (its dir: $(cat "$NODE_LOCK" 2>/dev/null || echo unknown)); only one node tier per machine"
  fi
  # The holder inherits fd 8 (the lock); nothing else may: close it right after.
  launch node-lock sleep infinity
  exec 8>&-
  echo "$DIR" >"$NODE_LOCK"
  echo "nodebin $NB" >"$DIR/node/info"
  touch "$DIR/node/owned"
}

# Record host state, then create the bridge and the cgroup root. Globals: DIR NB.
node_prepare() {
  local s p v f top h
  # sysctls
  : >"$DIR/sysctls"
  for s in "${NODE_SYSCTLS[@]}"; do
    f=/proc/sys/${s//.//}
    [[ -f "$f" ]] && read -r v <"$f" && echo "$s $v" >>"$DIR/sysctls"
  done
  # iptables (both families) and nftables tables, to remove only what the tier added
  node_ipt_save v4 >"$DIR/node/iptables.v4"
  node_ipt_save v6 >"$DIR/node/iptables.v6"
  if command -v nft >/dev/null; then nft list tables 2>/dev/null >"$DIR/node/nft-tables" || true; fi
  # hard-coded paths: record the topmost missing ancestor of each (removed at stop)
  : >"$DIR/node/created-paths"
  for p in "${NODE_HOST_PATHS[@]}"; do
    top=""
    while [[ ! -e "$p" && "$p" != / ]]; do top=$p; p=$(dirname "$p"); done
    [[ -n "$top" ]] && ! grep -qxF "$top" "$DIR/node/created-paths" && echo "$top" >>"$DIR/node/created-paths"
  done
  # bridge with the gateway address (the apiserver binds to it, so it must exist first)
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    fail "network interface $NODE_BRIDGE exists (left over? ip link del $NODE_BRIDGE)"
  fi
  ip link add "$NODE_BRIDGE" type bridge || fail "cannot create bridge $NODE_BRIDGE"
  echo "$NODE_BRIDGE" >"$DIR/node/bridge"
  ip addr add "$NODE_GW/${NODE_POD_CIDR#*/}" dev "$NODE_BRIDGE" || fail "cannot address $NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up || fail "cannot bring $NODE_BRIDGE up"
  # cgroup root in every hierarchy (cgroup v1: kubelet does not create it); cpuset needs values
  : >"$DIR/node/cgroups"
  while read -r h; do
    [[ -e "$h$NODE_CGROOT" ]] && fail "cgroup $h$NODE_CGROOT exists (left over from a killed tier?)"
    echo "$h" >>"$DIR/node/cgroups"
    mkdir "$h$NODE_CGROOT" || fail "cannot create cgroup $h$NODE_CGROOT"
    if [[ -f "$h/cpuset.cpus" && -f "$h$NODE_CGROOT/cpuset.cpus" ]]; then
      cat "$h/cpuset.cpus" >"$h$NODE_CGROOT/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h$NODE_CGROOT/cpuset.mems"
    fi
    if [[ -f "$h/cgroup.subtree_control" ]]; then   # cgroup v2: delegate the controllers
      local c
      for c in $(<"$h/cgroup.controllers"); do echo "+$c" >"$h$NODE_CGROOT/cgroup.subtree_control" 2>/dev/null || true; done
    fi
  done < <(node_cgroup_mounts)
  # br_netfilter: kube-proxy's hairpin and same-bridge Service traffic need it
  if [[ -f /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
    echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
  else
    log "warning: /proc/sys/net/bridge missing (br_netfilter not loaded); pod->Service->same-bridge pod may fail"
  fi
  log "node: host state recorded, bridge $NODE_BRIDGE ($NODE_GW), cgroup root $NODE_CGROOT"
}

# Host clients keep using https://127.0.0.1:AP: DNAT to the apiserver on the bridge address.
node_apiserver_dnat() {
  node_ipt v4 -t nat -A OUTPUT -d 127.0.0.1/32 -p tcp --dport "$AP" \
    -m comment --comment "dittofs node tier: 127.0.0.1 to apiserver" \
    -j DNAT --to-destination "$NODE_GW:$AP" || fail "iptables DNAT 127.0.0.1:$AP failed"
}

node_issue_certs() {
  local d=$DIR o=(openssl)
  issue_cert() { # NAME SUBJECT EXTENSIONS
    "${o[@]}" req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$d/$1.key" -out "$d/$1.csr" -subj "$2"
    "${o[@]}" x509 -req -in "$d/$1.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
      -set_serial "0x$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')" -days 3650 -out "$d/$1.crt" \
      -extfile <(printf '%s\n' "$3")
    rm -f "$d/$1.csr"; chmod 600 "$d/$1.key"
  }
  local client
  client=$(printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature')
  issue_cert node "/O=system:nodes/CN=system:node:$NODE_NODE_NAME" "$client"
  issue_cert kube-proxy "/CN=system:kube-proxy" "$client"
  issue_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
  issue_cert kubelet "/CN=$NODE_NODE_NAME" \
    "$(printf 'subjectAltName=IP:%s,IP:127.0.0.1,DNS:%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature' "$NODE_GW" "$NODE_NODE_NAME")"
}

node_kubeconfig() { # node_kubeconfig FILE CERTNAME: talks to the apiserver on the bridge address
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://$NODE_GW:$AP
    certificate-authority: $DIR/ca.crt
users:
- name: $2
  user:
    client-certificate: $DIR/$2.crt
    client-key: $DIR/$2.key
contexts:
- name: local
  context: {cluster: local, user: $2}
current-context: local
EOF
}

node_write_configs() {
  local n=$DIR/node sock=$DIR/containerd/containerd.sock socketdir=""
  mkdir -p "$n/cni" "$DIR/containerd" "$DIR/kubelet" "$DIR/pod-logs" "$DIR/volume-plugins" \
    "$DIR/cni-ipam" "$DIR/local-path" "$n/flex"
  # Shim sockets under DIR when the path is short enough (containerd allows 42 characters).
  if ((${#DIR} + 2 <= 42)); then socketdir="$DIR/s"; fi
  cat >"$n/containerd.toml" <<EOF
version = 4
root = '$DIR/containerd/root'
state = '$DIR/containerd/state'
disabled_plugins = ['io.containerd.nri.v1.nri']

[plugins]
  [plugins.'io.containerd.server.v1.grpc']
    address = '$sock'

  [plugins.'io.containerd.server.v1.ttrpc']
    address = '$sock.ttrpc'

  [plugins.'io.containerd.internal.v1.opt']
    path = '$DIR/containerd/opt'

  [plugins.'io.containerd.shim.v1.manager']
    socket_dir = '$socketdir'

  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$PAUSE_IMAGE'

  [plugins.'io.containerd.cri.v1.runtime']
    netns_mounts_under_state_dir = true
    restrict_oom_score_adj = true
    cdi_spec_dirs = []
    enable_criu = false
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        runtime_path = '$NB/containerd-shim-runc-v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$NB/runc'
          Root = '$DIR/containerd/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$NB/cni']
      conf_dir = '$n/cni'
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
EOF
  # Pods get no default route: only the pod range (on-link) and the Service range (via the
  # gateway, where kube-proxy translates it) are reachable; nothing leaves the machine.
  cat >"$n/cni/10-dittofs.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "dittofs",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$DIR/cni-ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$NODE_GW"}]],
        "routes": [{"dst": "$NODE_SVC_CIDR", "gw": "$NODE_GW"}]
      }
    },
    {"type": "portmap", "backend": "iptables", "capabilities": {"portMappings": true}}
  ]
}
EOF
  node_kubeconfig "$n/kubelet.kubeconfig" node
  node_kubeconfig "$n/kube-proxy.kubeconfig" kube-proxy
  cat >"$n/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $NODE_CGROOT
cgroupsPerQOS: true
failSwapOn: false
containerRuntimeEndpoint: unix://$sock
imageServiceEndpoint: unix://$sock
podLogsDir: $DIR/pod-logs
volumePluginDir: $DIR/volume-plugins
staticPodPath: ""
address: $NODE_GW
port: $KP
healthzBindAddress: 127.0.0.1
healthzPort: $KHP
readOnlyPort: 0
enableServer: true
tlsCertFile: $DIR/kubelet.crt
tlsPrivateKeyFile: $DIR/kubelet.key
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $DIR/ca.crt}
authorization:
  mode: Webhook
makeIPTablesUtilChains: false
protectKernelDefaults: false
clusterDNS: [$NODE_DNS_IP]
clusterDomain: cluster.local
resolvConf: ""
registerNode: true
maxPods: 110
oomScoreAdj: 0
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
shutdownGracePeriod: 0s
EOF
  cat >"$n/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $n/kube-proxy.kubeconfig
hostnameOverride: $NODE_NODE_NAME
mode: iptables
clusterCIDR: $NODE_POD_CIDR
bindAddress: $NODE_GW
healthzBindAddress: 127.0.0.1:$PHP
metricsBindAddress: 127.0.0.1:$PMP
nodePortAddresses: ["$NODE_GW/32"]
oomScoreAdj: 0
iptables:
  localhostNodePorts: false
  masqueradeAll: false
  syncPeriod: 30s
  minSyncPeriod: 1s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  tcpBeLiberal: false
  udpTimeout: 0s
  udpStreamTimeout: 0s
EOF
  # ctr for this containerd, for tests (DITTOFS_CTR)
  printf '#!/bin/sh\nexec %q --address %q --namespace k8s.io "$@"\n' "$NB/ctr" "$sock" >"$n/ctr"
  chmod +x "$n/ctr"
  node_addons >"$n/addons.yaml"
}

# CoreDNS (Service kube-dns at $NODE_DNS_IP, no forwarding: names outside cluster.local are
# refused) and local-path-provisioner (StorageClass local-path, default, WaitForFirstConsumer,
# volumes under DIR/local-path, type `local` so fsGroup applies).
node_addons() {
  cat <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects:
- {kind: ServiceAccount, name: coredns, namespace: kube-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:1053 {
        errors
        health {
            lameduck 2s
        }
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }
        prometheus :9153
        cache 30
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: coredns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  replicas: 1
  selector:
    matchLabels: {k8s-app: kube-dns}
  template:
    metadata:
      labels: {k8s-app: kube-dns}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: coredns
        image: $COREDNS_IMAGE
        imagePullPolicy: Never
        args: ["-conf", "/etc/coredns/Corefile"]
        ports:
        - {name: dns, containerPort: 1053, protocol: UDP}
        - {name: dns-tcp, containerPort: 1053, protocol: TCP}
        - {name: metrics, containerPort: 9153, protocol: TCP}
        resources:
          requests: {cpu: 10m, memory: 30Mi}
          limits: {memory: 170Mi}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        livenessProbe:
          httpGet: {path: /health, port: 8080}
          initialDelaySeconds: 5
          periodSeconds: 10
          failureThreshold: 5
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
          periodSeconds: 1
        volumeMounts:
        - {name: config, mountPath: /etc/coredns, readOnly: true}
      volumes:
      - name: config
        configMap:
          name: coredns
          items: [{key: Corefile, path: Corefile}]
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  selector: {k8s-app: kube-dns}
  clusterIP: $NODE_DNS_IP
  ports:
  - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
  - {name: metrics, port: 9153, targetPort: 9153, protocol: TCP}
---
apiVersion: v1
kind: Namespace
metadata: {name: local-path-storage}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: local-path-provisioner-service-account, namespace: local-path-storage}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: local-path-provisioner-role, namespace: local-path-storage}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, patch, update, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: local-path-provisioner-role}
rules:
- apiGroups: [""]
  resources: [nodes, persistentvolumeclaims, configmaps, pods, pods/log]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [persistentvolumes]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: local-path-provisioner-bind, namespace: local-path-storage}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: local-path-provisioner-role}
subjects:
- {kind: ServiceAccount, name: local-path-provisioner-service-account, namespace: local-path-storage}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: local-path-provisioner-bind}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: local-path-provisioner-role}
subjects:
- {kind: ServiceAccount, name: local-path-provisioner-service-account, namespace: local-path-storage}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: local-path-config, namespace: local-path-storage}
data:
  config.json: |-
    {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["$DIR/local-path"]}]}
  setup: |-
    #!/bin/sh
    set -eu
    mkdir -m 0777 -p "\$VOL_DIR"
  teardown: |-
    #!/bin/sh
    set -eu
    rm -rf "\$VOL_DIR"
  helperPod.yaml: |-
    apiVersion: v1
    kind: Pod
    metadata:
      name: helper-pod
    spec:
      priorityClassName: system-node-critical
      tolerations:
      - {key: node.kubernetes.io/disk-pressure, operator: Exists, effect: NoSchedule}
      containers:
      - name: helper-pod
        image: $BUSYBOX_IMAGE
        imagePullPolicy: Never
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: local-path-provisioner, namespace: local-path-storage}
spec:
  replicas: 1
  selector:
    matchLabels: {app: local-path-provisioner}
  template:
    metadata:
      labels: {app: local-path-provisioner}
    spec:
      serviceAccountName: local-path-provisioner-service-account
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: local-path-provisioner
        image: $LOCAL_PATH_PROVISIONER_IMAGE
        imagePullPolicy: Never
        command: [local-path-provisioner, --debug, start, --config, /etc/config/config.json]
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts:
        - {name: config-volume, mountPath: /etc/config/}
        env:
        - name: POD_NAMESPACE
          valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
        - {name: CONFIG_MOUNT_PATH, value: /etc/config/}
      volumes:
      - name: config-volume
        configMap: {name: local-path-config}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-path
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
    defaultVolumeType: local
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
EOF
}

# Put the node set first in PATH (runc for containerd-shim-runc-v2 -info; `restart` too).
node_path() {
  local nb
  nb=$(sed -n 's/^nodebin //p' "$1/node/info" 2>/dev/null) || true
  [[ -n "$nb" && ":$PATH:" != *":$nb:"* ]] && PATH=$nb:$PATH
  return 0
}

node_kubectl() { "$BIN/kubectl" --kubeconfig="$DIR/kubeconfig" "$@"; }

# deployment_ready NS NAME: all replicas available
node_deployment_ready() {
  local out
  out=$(node_kubectl -n "$1" get deployment "$2" -o jsonpath='{.status.replicas} {.status.readyReplicas}') || return 1
  read -r want have <<<"$out"
  [[ -n "$want" && "$want" == "${have:-}" && "$want" != 0 ]]
}

node_kube_proxy_ready() { curl -sf --max-time 2 "http://127.0.0.1:$PHP/healthz" >/dev/null; }
node_containerd_ready() { "$NB/ctr" --address "$DIR/containerd/containerd.sock" version; }

# Everything after the apiserver. Globals: DIR BIN NB AP.
node_start_components() {
  local kc=$DIR/kubeconfig t n=$DIR/node
  launch kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --leader-elect=false --controllers='*' --use-service-account-credentials=false \
    --service-account-private-key-file="$DIR/sa.key" --root-ca-file="$DIR/ca.crt" \
    --cluster-signing-cert-file="$DIR/ca.crt" --cluster-signing-key-file="$DIR/ca.key" \
    --flex-volume-plugin-dir="$n/flex" \
    --bind-address=127.0.0.1 --secure-port=0
  launch kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port=0
  # The shim's `-info` (queried by containerd) looks runc up in PATH; so do later restarts.
  node_path "$DIR"
  launch containerd "$NB/containerd" --config="$n/containerd.toml"
  wait_for "containerd" node_containerd_ready
  for t in "$NB"/images/*.oci.tar; do
    "$n/ctr" images import "$t" >>"$DIR/logs/images.log" 2>&1 || fail "ctr images import $t failed" images
  done
  log "images imported: $(cd "$NB/images" && echo *.oci.tar)"
  launch kubelet "$NB/kubelet" --config="$n/kubelet.yaml" --kubeconfig="$n/kubelet.kubeconfig" \
    --root-dir="$DIR/kubelet" --cert-dir="$DIR/kubelet/pki" \
    --hostname-override="$NODE_NODE_NAME" --node-ip="$NODE_GW" --v=1
  wait_for "Node $NODE_NAME Ready" node_ready
  launch kube-proxy "$NB/kube-proxy" --config="$n/kube-proxy.yaml" --v=1
  wait_for "kube-proxy /healthz" node_kube_proxy_ready
  wait_for "ServiceAccount default/default" api "https://127.0.0.1:$AP/api/v1/namespaces/default/serviceaccounts/default"
  node_kubectl apply -f "$n/addons.yaml" >>"$DIR/logs/addons.log" 2>&1 || fail "applying add-ons failed" addons
  wait_for "CoreDNS Ready" node_deployment_ready kube-system coredns
  wait_for "local-path-provisioner Ready" node_deployment_ready local-path-storage local-path-provisioner
}

node_env() {
  cat <<EOF
DITTOFS_NODE_NAME=$NODE_NODE_NAME
DITTOFS_POD_CIDR=$NODE_POD_CIDR
DITTOFS_SERVICE_CIDR=$NODE_SVC_CIDR
DITTOFS_CLUSTER_DNS=$NODE_DNS_IP
DITTOFS_NODE_BRIDGE=$NODE_BRIDGE
DITTOFS_NODE_IP=$NODE_GW
DITTOFS_APISERVER_BRIDGE_URL=https://$NODE_GW:$AP
DITTOFS_CONTAINERD_SOCKET=$DIR/containerd/containerd.sock
DITTOFS_CTR=$DIR/node/ctr
DITTOFS_NODEBIN=$NB
DITTOFS_STORAGE_CLASS=local-path
DITTOFS_LOCAL_PATH_DIR=$DIR/local-path
DITTOFS_IMAGE=$DITTOFS_IMAGE
DITTOFS_BUSYBOX_IMAGE=$BUSYBOX_IMAGE
EOF
}

# ---------------------------------------------------------------- stop

# stop_named DIR NAME...: SIGTERM the recorded processes NAME (if alive), SIGKILL after 10 s.
node_stop_named() {
  local dir=$1 name pid start want deadline; shift
  [[ -f "$dir/pids" ]] || return 0
  for want in "$@"; do
    while read -r name pid start; do
      [[ "$name" == "$want" ]] || continue
      alive "$pid" "$start" || continue
      kill -TERM "$pid" 2>/dev/null || true
      deadline=$((SECONDS + STOP_TIMEOUT))
      while alive "$pid" "$start" && ((SECONDS < deadline)); do sleep 0.1; done
      if alive "$pid" "$start"; then
        echo "cluster: $name (pid $pid) did not exit after ${STOP_TIMEOUT}s, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        while alive "$pid" "$start"; do sleep 0.1; done
      fi
    done <"$dir/pids"
  done
}

# PIDs of the shims of this tier's containerd: exe is the node set's shim and the command line
# names this DIR's containerd socket (shims run in their own sessions, re-parented to init).
node_shim_pids() {
  local dir=$1 nb=$2 p exe cmd
  [[ -n "$nb" ]] || return 0
  for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    [[ "$exe" == "$nb/containerd-shim-runc-v2" ]] || continue
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    [[ "$cmd" == *" -address $dir/containerd/containerd.sock "* ]] && echo "${p#/proc/}"
  done
}

# PIDs in the tier's cgroup root (the containers), any hierarchy.
node_cgroup_pids() {
  local dir=$1 h
  [[ -f "$dir/node/cgroups" ]] || return 0
  while read -r h; do
    [[ -d "$h$NODE_CGROOT" ]] || continue
    find "$h$NODE_CGROOT" -name cgroup.procs -exec cat {} + 2>/dev/null || true
  done <"$dir/node/cgroups"
}

# Remove the iptables rules and chains that are not in the copy saved at start (one family):
# rules appended to chains that existed (jumps to KUBE-*/CNI-* chains, the apiserver DNAT), then
# the new chains (flushed, then deleted). One iptables-restore --noflush per table, fed with
# iptables-save's own lines, so the quoting round-trips.
node_iptables_restore_fam() {
  local dir=$1 fam=$2 before now table line chain k t script rb=iptables-restore
  [[ $fam == v6 ]] && rb=ip6tables-restore
  before=$dir/node/iptables.$fam
  [[ -f "$before" ]] && command -v "$rb" >/dev/null || return 0
  now=$(node_ipt_save "$fam") || return 0
  local -A old=() new=()
  local -a ops=()
  table=""
  while IFS= read -r line; do
    case "$line" in
      \**) table=${line#\*} ;;
      :*) chain=${line#:}; old["$table ${chain%% *}"]=1 ;;
    esac
  done <"$before"
  table=""
  while IFS= read -r line; do
    case "$line" in
      \**) table=${line#\*} ;;
      :*) chain=${line#:}; chain=${chain%% *}
          [[ -n "${old["$table $chain"]:-}" ]] || new["$table $chain"]=1 ;;
      "-A "*) chain=${line#-A }; chain=${chain%% *}
          if [[ -n "${old["$table $chain"]:-}" ]] && ! grep -qxF -- "$line" "$before"; then
            ops+=("$table|-D ${line#-A }")
          fi ;;
    esac
  done <<<"$now"
  for k in "${!new[@]}"; do ops+=("${k%% *}|-F ${k#* }"); done
  for k in "${!new[@]}"; do ops+=("${k%% *}|-X ${k#* }"); done
  for t in filter nat mangle raw security; do
    script=""
    for k in "${ops[@]}"; do [[ "${k%%|*}" == "$t" ]] && script+="${k#*|}"$'\n'; done
    [[ -n "$script" ]] || continue
    printf '*%s\n%sCOMMIT\n' "$t" "$script" | "$rb" -w 5 --noflush ||
      echo "cluster: $rb --noflush failed for table $t" >&2
  done
  return 0
}

# nftables tables that did not exist at start and hold no rules, sets or maps now (iptables-nft
# leaves its tables behind when the last rule goes).
node_nft_restore() {
  local dir=$1 fam name
  command -v nft >/dev/null && [[ -f "$dir/node/nft-tables" ]] || return 0
  while read -r _ fam name; do
    [[ -n "$name" ]] || continue
    grep -qxF "table $fam $name" "$dir/node/nft-tables" && continue
    if nft list table "$fam" "$name" 2>/dev/null | awk '
        /^\t[^\t]/ && !/^\tchain / && !/^\t}/ { busy = 1 }
        /^\t\t[^\t]/ && !/^\t\ttype / { busy = 1 }
        END { exit busy ? 1 : 0 }'; then
      nft delete table "$fam" "$name" 2>/dev/null || true
    fi
  done < <(nft list tables 2>/dev/null)
  return 0
}

node_iptables_restore() {
  node_iptables_restore_fam "$1" v4
  node_iptables_restore_fam "$1" v6
  node_nft_restore "$1"
}

node_sysctl_restore() {
  local dir=$1 k v f cur
  [[ -f "$dir/sysctls" ]] || return 0
  while read -r k v; do
    f=/proc/sys/${k//.//}
    [[ -f "$f" ]] || continue
    read -r cur <"$f" || continue
    [[ "$cur" == "$v" ]] || echo "$v" >"$f" 2>/dev/null ||
      echo "cluster: cannot restore $k=$v (now $cur)" >&2
  done <"$dir/sysctls"
}

# Tear the node tier down; leaves DIR (cluster.sh removes it). Safe on a half-started tier.
node_stop() {
  local dir=$1 nb="" owned=false m i
  [[ -f "$dir/node/owned" ]] && owned=true
  nb=$(sed -n 's/^nodebin //p' "$dir/node/info" 2>/dev/null || true)
  # 1. no more restarts: kubelet and kube-proxy first; kube-proxy removes its rules
  node_stop_named "$dir" kube-proxy kubelet
  if $owned && [[ -x "$nb/kube-proxy" && -f "$dir/node/kube-proxy.yaml" ]]; then
    "$nb/kube-proxy" --config="$dir/node/kube-proxy.yaml" --cleanup >>"$dir/logs/kube-proxy-cleanup.log" 2>&1 || true
  fi
  # 2. containers: through containerd while it runs (kills, unmounts rootfs, ends shims)
  if [[ -x "$dir/node/ctr" ]] && "$dir/node/ctr" version >/dev/null 2>&1; then
    local ids
    ids=$(timeout 10 "$dir/node/ctr" tasks ls -q 2>/dev/null || true)
    for i in $ids; do timeout 10 "$dir/node/ctr" tasks kill -a -s SIGKILL "$i" >/dev/null 2>&1 || true; done
    for i in $ids; do timeout 10 "$dir/node/ctr" tasks delete -f "$i" >/dev/null 2>&1 || true; done
  fi
  node_stop_named "$dir" containerd
  # 3. whatever is left: shims of this containerd, then processes in the tier's cgroups
  local pids=""
  for i in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(node_shim_pids "$dir" "$nb"; if $owned; then node_cgroup_pids "$dir"; fi) || true
    [[ -n "${pids//[[:space:]]/}" ]] || break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.3
  done
  if [[ -n "${pids//[[:space:]]/}" ]]; then echo "cluster: processes left in the node tier:" "${pids//$'\n'/ }" >&2; fi
  # 4. the control plane (everything but the lock holder)
  local names=() name
  if [[ -f "$dir/pids" ]]; then
    while read -r name _; do [[ "$name" == node-lock ]] || names=("$name" "${names[@]}"); done <"$dir/pids"
  fi
  ((${#names[@]} == 0)) || node_stop_named "$dir" "${names[@]}"
  if $owned; then
    # 5. mounts under DIR (rootfs, netns, kubelet volumes, the kubelet's rshared bind), innermost first
    for i in 1 2 3 4 5; do
      mapfile -t m < <(node_mounts_under "$dir")
      ((${#m[@]})) || break
      for ((j = ${#m[@]} - 1; j >= 0; j--)); do umount -l "${m[j]}" 2>/dev/null || true; done
    done
    # 6. network: the bridge (veths went with the network namespaces), iptables, nftables
    if [[ -f "$dir/node/bridge" ]] && ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
      ip link del "$NODE_BRIDGE" || true
    fi
    node_iptables_restore "$dir"
    # 7. cgroups: depth-first, in every hierarchy (unified included: runc's hybrid mode)
    local h left=false
    for i in 1 2 3 4 5; do
      left=false
      while read -r h; do
        [[ -d "$h$NODE_CGROOT" ]] || continue
        find "$h$NODE_CGROOT" -depth -type d -exec rmdir {} + 2>/dev/null || true
        [[ -d "$h$NODE_CGROOT" ]] && left=true
      done < <(cat "$dir/node/cgroups" 2>/dev/null)
      $left || break
      sleep 0.5
    done
    if $left; then echo "cluster: cgroups left under $NODE_CGROOT" >&2; fi
    # 8. sysctls, hard-coded paths the tier created
    node_sysctl_restore "$dir"
    local p
    while read -r p; do
      [[ -n "$p" && "$p" == /* && "$p" != / ]] || continue
      if [[ -n "$(node_mounts_under "$p")" ]]; then
        echo "cluster: not removing $p: mounts under it" >&2
      else
        rm -rf --one-file-system "$p"
      fi
    done < <(cat "$dir/node/created-paths" 2>/dev/null)
  fi
  # 9. release the lock (the empty lock file stays: removing it would race with a new start)
  if $owned && [[ "$(cat "$NODE_LOCK" 2>/dev/null)" == "$dir" ]]; then : >"$NODE_LOCK"; fi
  node_stop_named "$dir" node-lock
  if [[ -n "$(node_mounts_under "$dir")" ]]; then
    echo "cluster: mounts left under $dir:" >&2
    node_mounts_under "$dir" >&2
    return 1
  fi
}
