#!/usr/bin/env bash
# Memory soak: 2 workers (lake sync), 500-lead requests from wrk in 10 s rounds; prints each worker's RSS.
#   bench/soak.sh [ROUNDS]      (3 rounds is about a million leads on a 2-core machine)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
work=$(mktemp -d)
uv run --no-sync python - "$work/five-hundred.json" <<'PY'
import json, sys
from bench.run import payloads
from pathlib import Path
body, _ = payloads(Path(sys.argv[1]).parent)["500-lead"]
PY
port=$(uv run --no-sync python -c "from bench.run import free_port; print(free_port())")
LEADSCORE_SPOOL_DIR="$work/spool" LEADSCORE_LAKE_URI="$work/lake" \
  .venv/bin/leadscore serve --port "$port" --workers 2 > "$work/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/api/v1/health/ready" >/dev/null && break; sleep 0.5; done
sleep 2
rss() { for k in $(cat "/proc/$pid/task/$pid/children"); do awk '/VmRSS/{printf "%d MB  ", $2/1024}' "/proc/$k/status"; done; }
echo "start: $(rss)"
total=0
for _ in $(seq "$rounds"); do
  n=$(BODY="$work/five-hundred.json" wrk -t1 -c8 -d10s -s bench/wrk_post.lua "http://127.0.0.1:$port/api/v1/scoring/score" \
      | python3 -c "import json,sys; print(next(json.loads(l) for l in sys.stdin if l.startswith('{'))['requests'])")
  total=$((total + n * 500))
  echo "after $total leads: $(rss)"
done
