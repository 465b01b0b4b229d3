#!/usr/bin/env bash
# A release's artefacts, built and checked here; published only by .github/workflows/release.yml
# on a tag (nothing here pushes anything).
#
#   scripts/release.sh           build dist/release/ and check it without a cluster
#   scripts/release.sh --check   also install it on a local cluster with a real node (root):
#                                install.yaml, then the chart (install, upgrade, uninstall)
#
# dist/release/ holds:
#   dittofs-operator-<v>.oci.tar          one OCI image index: linux/amd64 and linux/arm64
#   install.yaml                          CRD, RBAC, admission policy, Deployment; image pinned by digest
#   install-namespaced.yaml               the same, watching only the `dittofs` namespace
#   dittofs-operator-<v>.tgz              the Helm chart (deploy/chart), image pinned by digest,
#                                         entries dated to the commit (reproducible)
#   dittofs-operator-<v>-linux-{amd64,arm64}   the CLI (render, diff, report; also kubectl-dittofs)
#   RELEASE_NOTES.md                      CHANGELOG.md's entry for <v>
#   SHA256SUMS
# Checks: actionlint on .github/workflows; CHANGELOG.md has the version's entry; the arm64
# binary runs under qemu-user-static and renders a sample exactly as the amd64 one does; the
# chart lints and, with its defaults, renders the objects of install.yaml (namespaced: true, of
# install-namespaced.yaml).
#
# ARM64_PROFILE: the cargo profile of the arm64 binary (default release, as published). CI uses
# release-check (no LTO, opt-level 1, 16 codegen units) to stay within its time; the amd64
# binary is always the release profile's, which the tests already built.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
CHECK=false
[[ "${1:-}" == "--check" ]] && CHECK=true
T0=$SECONDS
step() { printf '\n\033[1m== [release %4ds] %s\033[0m\n' "$((SECONDS - T0))" "$*" >&2; }
die() { printf '[release] ERROR: %s\n' "$*" >&2; exit 1; }

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE=$(sed -n 's/^ *image: *\([^ ]*dittofs-operator[^ ]*\) *$/\1/p' deploy/operator/operator.yaml | head -n 1)
DIST=dist/release

step "tools: helm, actionlint, zig (scripts/release-tools.sh) and kubectl (scripts/testbin.sh)"
TOOLS=$(scripts/release-tools.sh | tail -n 1)
TESTBIN=$(scripts/testbin.sh | tail -n 1)
export PATH="$TOOLS/bin:$PATH"
KUBECTL=$TESTBIN/kubectl
PY=$TOOLS/venv/bin/python3
rm -rf "$DIST" && mkdir -p "$DIST"

step "actionlint .github/workflows/"
actionlint -color=false

step "CHANGELOG.md: the entry of v$VERSION"
awk -v v="## v$VERSION" 'index($0, v) == 1 { on = 1; next } on && /^## / { exit } on' CHANGELOG.md >"$DIST/RELEASE_NOTES.md"
grep -q '[^[:space:]]' "$DIST/RELEASE_NOTES.md" || die "CHANGELOG.md has no '## v$VERSION' entry"

step "the image: linux/amd64 and linux/arm64 in one index"
ARCHIVE=$DIST/dittofs-operator-$VERSION.oci.tar
ARM64_PROFILE=${ARM64_PROFILE:-release} scripts/image.sh --platforms amd64,arm64 --out "$ARCHIVE" >/dev/null
DIGEST=$(cat "$ARCHIVE.digest") && rm "$ARCHIVE.digest"
echo "$IMAGE@$DIGEST" >&2
# Assembled again from the same binaries, the archive is the same, byte for byte.
ARM64_PROFILE=${ARM64_PROFILE:-release} scripts/image.sh --platforms amd64,arm64 --out "$DIST/.again.oci.tar" >/dev/null
cmp "$ARCHIVE" "$DIST/.again.oci.tar" || die "two assemblies of the image differ"
rm "$DIST/.again.oci.tar" "$DIST/.again.oci.tar.digest"

step "the CLI for both architectures; the arm64 one under qemu-user-static"
cp target/x86_64-unknown-linux-musl/release/dittofs-operator "$DIST/dittofs-operator-$VERSION-linux-amd64"
cp "target/aarch64-unknown-linux-musl/${ARM64_PROFILE:-release}/dittofs-operator" "$DIST/dittofs-operator-$VERSION-linux-arm64"
if ! command -v qemu-aarch64-static >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq qemu-user-static >&2
fi
ARM64=(qemu-aarch64-static "$DIST/dittofs-operator-$VERSION-linux-arm64")
AMD64=("$DIST/dittofs-operator-$VERSION-linux-amd64")
version_line=$("${ARM64[@]}" version) && version_line=${version_line%%$'\n'*}
echo "arm64: $version_line" >&2
[[ $version_line == "dittofs-operator $VERSION" ]] || die "the arm64 binary says $version_line"
diff <("${AMD64[@]}" render -f deploy/samples/production.yaml) <("${ARM64[@]}" render -f deploy/samples/production.yaml) >&2 ||
  die "the arm64 binary renders deploy/samples/production.yaml differently"
echo "arm64: renders deploy/samples/production.yaml as amd64 does" >&2

step "install.yaml and install-namespaced.yaml: deploy/ with the image pinned by digest"
pin() { # kustomize output with the one image line pinned
  "$KUBECTL" kustomize "$1" | python3 -c '
import sys
image, pinned = sys.argv[1], sys.argv[1] + "@" + sys.argv[2]
text = sys.stdin.read()
assert text.count("image: " + image + "\n") == 1, "expected one image line of " + image
sys.stdout.write(text.replace("image: " + image + "\n", "image: " + pinned + "\n"))
' "$IMAGE" "$DIGEST"
}
pin deploy >"$DIST/install.yaml"
pin deploy/namespaced >"$DIST/install-namespaced.yaml"

step "the chart: lint, the objects of install.yaml, package"
CHART_DIR=$DIST/.chart/dittofs-operator
mkdir -p "$(dirname "$CHART_DIR")"
# Symlinks resolved, the digest pinned in values.yaml: the chart a user installs.
cp -rL deploy/chart "$CHART_DIR"
python3 - "$CHART_DIR/values.yaml" "$DIGEST" <<'PY'
import sys
path, digest = sys.argv[1:3]
text = open(path).read()
assert text.count('  digest: ""\n') == 1
open(path, "w").write(text.replace('  digest: ""\n', f'  digest: "{digest}"\n'))
PY
helm lint --strict "$CHART_DIR" >&2
helm lint --strict "$CHART_DIR" --set namespaced=true --set logFormat=text --set metrics.serviceMonitor.enabled=true >&2
helm lint --strict "$CHART_DIR" --set 'watchNamespaces={team-a,team-b}' >&2
same_objects() { # helm template ARGS… vs an install file: the same objects, Helm's own labels aside
  local file=$1; shift
  helm template dittofs-operator "$CHART_DIR" --include-crds "$@" >"$DIST/.chart/rendered.yaml"
  "$PY" scripts/release-compare.py "$file" "$DIST/.chart/rendered.yaml" >&2
}
same_objects "$DIST/install.yaml" --namespace dittofs-system
same_objects "$DIST/install-namespaced.yaml" --namespace dittofs --set namespaced=true
# helm package stamps the packaging time: entries re-dated to the commit's time, so two
# packagings of one commit are the same file (checked with a second one).
EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
package() {
  helm package "$CHART_DIR" --version "$VERSION" --app-version "v$VERSION" -d "$1" >/dev/null
  "$PY" scripts/reproducible-tgz.py "$1/dittofs-operator-$VERSION.tgz" "$EPOCH"
}
package "$DIST"
package "$DIST/.chart"
cmp "$DIST/dittofs-operator-$VERSION.tgz" "$DIST/.chart/dittofs-operator-$VERSION.tgz" ||
  die "two packagings of the chart differ"
rm -rf "$DIST/.chart"

(cd "$DIST" && sha256sum -- * >SHA256SUMS)
step "dist/release/"
ls -l "$DIST" >&2

$CHECK || exit 0
# ---- On a local cluster with a real node -------------------------------------------------------
[[ $EUID -eq 0 ]] || die "--check runs a real node: run as root"
export DITTOFS_TESTBIN=$(scripts/testbin.sh --node | tail -n 1)
KUBECTL=$DITTOFS_TESTBIN/kubectl
scripts/clients.sh
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dittofs-release.XXXXXX")
CLUSTER=$WORK/cluster
cleanup() { scripts/cluster.sh stop --dir "$CLUSTER" || true; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
step "starting a local cluster with a real node"
scripts/cluster.sh start --tier node --dir "$CLUSTER" --owner-pid $$
set -a; . "$CLUSTER/env"; set +a
k() { "$KUBECTL" "$@"; }
diagnose() {
  k get dittoservers -A -o yaml >&2 || true
  k get pods -A -o wide >&2 || true
  k get events -A --sort-by=.lastTimestamp | tail -n 30 >&2 || true
}
ready() { # NAMESPACE NAME: a DittoServer becomes Ready
  k -n "$1" wait --for=condition=Ready "dittoserver/$2" --timeout=180s || { diagnose; die "dittoserver $1/$2 is not Ready"; }
}
# Named NAME@sha256:… too, as a pull by digest names it: the kubelet asks for install.yaml's
# NAME:TAG@sha256:…, which containerd's CRI looks up by the digest. (`ctr import --digests`
# would name the archive's outer index.json, not the image's index.)
"$DITTOFS_CTR" images import "$ARCHIVE" >&2
"$DITTOFS_CTR" images tag "$IMAGE" "${IMAGE%:*}@$DIGEST" >&2
sample() { # NAMESPACE NAME: deploy/samples/minimal-sqlite.yaml under another name
  sed -e "s/^  name: demo$/  name: $2/" -e "s/^  namespace: default$/  namespace: $1/" deploy/samples/minimal-sqlite.yaml |
    k -n "$1" apply --server-side -f -
}

step "install.yaml: kubectl apply --server-side -f install.yaml, then a DittoServer"
k apply --server-side -f "$DIST/install.yaml"
for _ in $(seq 1 60); do
  k wait --for=condition=Established crd/dittoservers.dittofs.dittofs.com --timeout=30s 2>/dev/null && break
  sleep 0.5
done
k -n dittofs-system rollout status deployment/dittofs-operator --timeout=180s || { diagnose; die "the operator of install.yaml did not roll out"; }
[[ $(k -n dittofs-system get deployment dittofs-operator -o jsonpath='{.spec.template.spec.containers[0].image}') == "$IMAGE@$DIGEST" ]] ||
  die "install.yaml's Deployment does not run $IMAGE@$DIGEST"
sample default demo
ready default demo

step "install.yaml removed but for the CRD; the chart installed in its own namespace"
python3 -c '
import sys
docs = sys.stdin.read().split("\n---\n")
print("\n---\n".join(d for d in docs if "kind: CustomResourceDefinition" not in d))
' <"$DIST/install.yaml" | k delete --wait=true --timeout=180s -f -
CHART=$DIST/dittofs-operator-$VERSION.tgz
CHART_NAMESPACE=dittofs-operator  # its own, to show the chart does not need dittofs-system
helm install dittofs-operator "$CHART" -n "$CHART_NAMESPACE" --create-namespace --wait --timeout 180s
sample default from-chart
ready default from-chart
ready default demo
k -n "$CHART_NAMESPACE" get deployment dittofs-operator -o jsonpath='{.spec.template.spec.containers[0].args}' | grep -q -- '--leader-elect' ||
  die "the chart's Deployment lost its args"

step "helm upgrade --set logFormat=text --set watchNamespaces={default,team-b} rolls the operator"
# A list of namespaces: a Role in each (and the Lease's in the release's namespace), no
# ClusterRole for namespaced objects; a DittoServer in a namespace off the list is left alone.
k create namespace team-b >/dev/null
k create namespace team-c >/dev/null
before=$(k -n "$CHART_NAMESPACE" get deployment dittofs-operator -o jsonpath='{.metadata.generation}')
helm upgrade dittofs-operator "$CHART" --version "$VERSION" -n "$CHART_NAMESPACE" --reuse-values \
  --set logFormat=text --set 'watchNamespaces={default,team-b}' --wait --timeout 180s
after=$(k -n "$CHART_NAMESPACE" get deployment dittofs-operator -o jsonpath='{.metadata.generation}')
((after > before)) || die "helm upgrade did not change the Deployment (generation $before -> $after)"
k -n "$CHART_NAMESPACE" rollout status deployment/dittofs-operator --timeout=180s
args=$(k -n "$CHART_NAMESPACE" get deployment dittofs-operator -o jsonpath='{.spec.template.spec.containers[0].args}')
[[ $args == *--log-format=text* && $args == *--namespace=default,team-b* ]] ||
  die "the upgraded Deployment's args are $args"
! k get clusterrole dittofs-operator >/dev/null 2>&1 || die "watchNamespaces left the cluster-wide ClusterRole"
k -n team-b get role dittofs-operator >/dev/null || die "no Role in team-b"
sample team-c off-list
sample team-b in-team-b
ready team-b in-team-b
[[ -z $(k -n team-c get dittoserver off-list -o jsonpath='{.status}') ]] ||
  die "the DittoServer in team-c, off the list, was reconciled"
# The upgraded operator reconciles a change: the DittoServer's new generation is observed.
k patch dittoserver from-chart --type merge -p '{"spec":{"logging":{"level":"DEBUG"}}}' >/dev/null
generation=$(k get dittoserver from-chart -o jsonpath='{.metadata.generation}')
k wait --for=jsonpath='{.status.observedGeneration}'="$generation" dittoserver/from-chart --timeout=120s ||
  { diagnose; die "the upgraded operator did not reconcile from-chart's generation $generation"; }
k get configmap from-chart-config -o jsonpath='{.data.config\.yaml}' | grep -qi 'level: *"\?debug' ||
  die "from-chart's config does not have the DEBUG level"
ready default from-chart

step "helm uninstall keeps the CRD, the DittoServers and their claims"
helm uninstall dittofs-operator -n "$CHART_NAMESPACE" --wait --timeout 180s
k get crd dittoservers.dittofs.dittofs.com >/dev/null || die "helm uninstall removed the CRD"
k get dittoserver demo from-chart >/dev/null || die "helm uninstall removed a DittoServer"
claims=$(k get pvc -l app.kubernetes.io/instance=from-chart -o name | wc -l)
((claims > 0)) || die "from-chart's claims are gone"
k get statefulset from-chart >/dev/null || die "from-chart's StatefulSet is gone"
step "release check passed: install.yaml and the chart install, reconcile, upgrade (to a list of namespaces) and uninstall"
