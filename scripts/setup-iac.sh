#!/usr/bin/env bash
# Install what tests/deploy needs to synthesize, lint and policy-check the infrastructure:
#   - the AWS CDK command line (npm, pinned by deploy/cdk/package-lock.json) into deploy/cdk/node_modules;
#   - checkov in its own virtual environment (.venv-tools/checkov): its pinned dependencies clash with ours;
#   - shellcheck (apt), which actionlint uses to check the `run:` scripts of the workflows.
# cfn-lint, hadolint and actionlint come with the project's `deploy` dependency group (uv.lock).
#
# Idempotent and quick when everything is in place (./dev test calls it before every run).
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKOV_VERSION=3.3.30
TOOLS=.venv-tools

say() { echo "setup-iac: $*" >&2; }

# --- CDK command line --------------------------------------------------------------------------------------
command -v npm >/dev/null 2>&1 || { say "npm is missing (Node.js 20 or newer is needed)"; exit 1; }
lock_sum="$(sha256sum deploy/cdk/package-lock.json | cut -d' ' -f1)"
stamp=deploy/cdk/node_modules/.installed-from-lock
if [[ ! -x deploy/cdk/node_modules/.bin/cdk || "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]]; then
    say "npm ci in deploy/cdk"
    npm ci --prefix deploy/cdk --no-audit --no-fund --loglevel=error >&2
    echo "$lock_sum" >"$stamp"
fi

# --- checkov -------------------------------------------------------------------------------------------------
# The version is read from the package metadata: `checkov --version` takes seconds to import everything.
installed=("$TOOLS"/checkov/lib/python3.11/site-packages/checkov-"$CHECKOV_VERSION".dist-info)
if [[ ! -x "$TOOLS/checkov/bin/checkov" || ! -d "${installed[0]}" ]]; then
    say "installing checkov $CHECKOV_VERSION into $TOOLS/checkov"
    uv() { python3 -m uv "$@"; }
    python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check uv >&2
    rm -rf "$TOOLS/checkov"
    UV_PYTHON_DOWNLOADS=never uv venv --quiet --python python3.11 "$TOOLS/checkov"
    uv pip install --quiet --python "$TOOLS/checkov/bin/python" "checkov==$CHECKOV_VERSION"
fi

# --- shellcheck ------------------------------------------------------------------------------------------------
if ! command -v shellcheck >/dev/null 2>&1; then
    if [[ "$(id -u)" -ne 0 ]]; then
        say "shellcheck is missing: apt-get install shellcheck (needs root)"
        exit 1
    fi
    say "installing shellcheck (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-cache show shellcheck >/dev/null 2>&1 || apt-get update -qq
    apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi

# --- the tools from uv.lock: present once `uv sync` ran -------------------------------------------------------
for tool in cfn-lint hadolint actionlint; do
    [[ -x ".venv/bin/$tool" ]] || { say ".venv/bin/$tool missing: run uv sync (the deploy group)"; exit 1; }
done
