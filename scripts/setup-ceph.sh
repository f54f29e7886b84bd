#!/usr/bin/env bash
# Install the Ceph daemons that tests/support/rgw.py needs to run a real
# S3-protocol server (RADOS Gateway) on loopback, without Docker.
#
# Idempotent: when the binaries are already on PATH it exits at once, so CI and
# developers can call it before every test run.
set -euo pipefail

# Every tool tests/support/rgw.py calls. ceph-mon/ceph-osd/radosgw are the
# daemons; ceph-common provides ceph, ceph-authtool, monmaptool, radosgw-admin
# (apt pulls it in as a dependency, naming it keeps the intent explicit).
required=(ceph-mon ceph-osd radosgw ceph ceph-authtool monmaptool radosgw-admin)

missing=0
for tool in "${required[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        missing=1
        break
    fi
done
if [[ "$missing" -eq 0 ]]; then
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "install-ceph.sh: must run as root to apt-get install Ceph" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
packages=(ceph-mon ceph-osd radosgw ceph-common)

# Refresh the package index only when apt cannot see the packages yet (a fresh
# machine has no lists); an update costs several seconds otherwise.
if ! apt-cache show "${packages[@]}" >/dev/null 2>&1; then
    apt-get update -qq
fi

# -qq plus a log file keeps CI output short; show the log only on failure.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${packages[@]}" >"$log" 2>&1; then
    echo "install-ceph.sh: apt-get install failed:" >&2
    tail -n 50 "$log" >&2
    exit 1
fi

for tool in "${required[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-ceph.sh: $tool still missing after install" >&2
        exit 1
    fi
done
