#!/usr/bin/env bash
# Install what tests/deploy/test_signing.py needs (apt): a local Docker registry (docker-registry), skopeo to
# sign, push and pull under a policy, buildah to build the tiny test image, and GnuPG for the signing key.
# Idempotent and quick when everything is in place (./dev test calls it before every run). Where systemd runs,
# installing docker-registry also starts the packaged service on :5000; the test never uses it (it starts its own
# on loopback), so CI stops that service right after installing (.github/workflows/checks.yml).
set -euo pipefail

say() { echo "setup-signing: $*" >&2; }

declare -A package_of=([docker-registry]=docker-registry [skopeo]=skopeo [buildah]=buildah [gpg]=gnupg)
missing=()
for tool in "${!package_of[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ "$(id -u)" -ne 0 ]]; then
    say "missing ${missing[*]}: apt-get install ${missing[*]} (needs root)"
    exit 1
fi
say "installing ${missing[*]} (apt)"
export DEBIAN_FRONTEND=noninteractive
apt-cache show "${missing[@]}" >/dev/null 2>&1 || apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
