#!/usr/bin/env bash
# The real NFS and SMB clients of the data-path tests and the demo: Debian's libnfs-utils
# (nfs-cp, nfs-ls: NFS in userspace, no kernel mount, no root), smbclient and rpcinfo.
# Installs what is missing (apt-get, as root); prints nothing on success.
set -euo pipefail

# Test binaries may call this at once: one apt-get at a time, then everyone sees the result.
exec 9>"${TMPDIR:-/tmp}/dittofs-operator-clients.lock"
flock 9
missing=()
command -v nfs-cp >/dev/null || missing+=(libnfs-utils)
command -v smbclient >/dev/null || missing+=(smbclient)
# rpcinfo, to ask a portmapper what it serves (the package also brings the rpcbind daemon; the
# tests never talk to the host's own).
command -v rpcinfo >/dev/null || missing+=(rpcbind)
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "installing Debian's ${missing[*]}" >&2
[[ $(id -u) == 0 ]] || { echo "need root to apt-get install ${missing[*]}" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
