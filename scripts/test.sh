#!/usr/bin/env bash
# The test suite: unit, golden, CLI, and integration tests against a real kube-apiserver + etcd
# (and the full tier for end-to-end tests). Builds the control plane into the cache on first run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# --node: also the real node of tests/node.rs (kubelet, containerd, ...; scripts/node/README.md).
DITTOFS_TESTBIN=$(scripts/testbin.sh --node | tail -n 1)
scripts/clients.sh       # the NFS and SMB clients of tests/serving.rs (apt-get when missing)
# The operator's image (static release binary in an OCI archive), run in-cluster by tests/image.rs.
DITTOFS_IMAGE_ARCHIVE=$PWD/$(scripts/image.sh | tail -n 1)
export DITTOFS_IMAGE_ARCHIVE
export DITTOFS_TESTBIN
echo "control plane binaries: $DITTOFS_TESTBIN" >&2
cargo test --all-targets "$@"
