#!/usr/bin/env bash
# Build and cache the tools of a release (scripts/release.sh), none of which the tests of the
# operator itself need:
#   helm        Helm v4, from Go modules (lint, template, package and install the chart)
#   actionlint  from Go modules (lints .github/workflows/)
#   zig, cargo-zigbuild   from PyPI wheels (the arm64 static binary: zig is its C compiler and
#                         linker, so no Debian cross toolchain is needed)
#   pyyaml      (PyPI) for scripts/release-compare.py
# into ${DITTOFS_RELEASE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/dittofs-operator/release-tools}/<key>/.
# Idempotent: present tools are skipped. Progress goes to stderr; the last stdout line is the
# directory, whose bin/ holds all four.
set -euo pipefail

HELM_VERSION=v4.3.2
ACTIONLINT_VERSION=v1.7.12
ZIGLANG_VERSION=0.15.2
CARGO_ZIGBUILD_VERSION=0.24.1
PYYAML_VERSION=6.0.3

export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -p=2"
KEY="helm-${HELM_VERSION}_actionlint-${ACTIONLINT_VERSION}_zig-${ZIGLANG_VERSION}_zigbuild-${CARGO_ZIGBUILD_VERSION}_pyyaml-${PYYAML_VERSION}"
ROOT=${DITTOFS_RELEASE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/dittofs-operator/release-tools}
OUT=$ROOT/$KEY
T0=$SECONDS
log() { printf '[release-tools %4ds] %s\n' "$((SECONDS - T0))" "$*" >&2; }

mkdir -p "$OUT/bin"
if [[ ! -x "$OUT/bin/helm" ]]; then
  log "building helm $HELM_VERSION (go install helm.sh/helm/v4/cmd/helm)"
  GOBIN=$OUT/bin go install -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
fi
if [[ ! -x "$OUT/bin/actionlint" ]]; then
  log "building actionlint $ACTIONLINT_VERSION"
  GOBIN=$OUT/bin go install -trimpath -ldflags "-s -w" "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
fi
if [[ ! -x "$OUT/bin/cargo-zigbuild" || ! -x "$OUT/bin/zig" ]]; then
  log "installing ziglang $ZIGLANG_VERSION and cargo-zigbuild $CARGO_ZIGBUILD_VERSION from PyPI"
  rm -rf "$OUT/venv"
  python3 -m venv "$OUT/venv"
  "$OUT/venv/bin/pip" install -q "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" "pyyaml==$PYYAML_VERSION" >&2
  ln -sf ../venv/bin/cargo-zigbuild "$OUT/bin/cargo-zigbuild"
  # cargo-zigbuild finds zig as `python3 -m ziglang` of the venv, or `zig` on PATH.
  printf '#!/bin/sh\nexec "%s" -m ziglang "$@"\n' "$OUT/venv/bin/python3" >"$OUT/bin/zig"
  chmod +x "$OUT/bin/zig"
fi
log "ready: $("$OUT/bin/helm" version --short 2>/dev/null), actionlint $("$OUT/bin/actionlint" -version | head -n 1), zig $("$OUT/bin/zig" version)"
echo "$OUT"
