#!/usr/bin/env bash
# Install headless Chromium (Debian apt), which tests/api/test_docs_page.py uses to screenshot /docs.
#
# Idempotent and quick when it is in place (./dev test calls it before every run).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
echo "setup-chromium: apt-get install chromium" >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
