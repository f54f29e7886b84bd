"""The committer's CPU per commit against the table's history: how a commit's cost grows with its snapshots.

Every commit of a small spool segment (the benchmark's 1-lead records) adds a snapshot; snapshots are expired only
past `LEADSCORE_LAKE_SNAPSHOT_RETENTION_HOURS` (24 h by default), so a table holds a day of them. pyiceberg 0.12
deep-copies the whole table metadata, snapshot list included, several times per commit (apache/iceberg-python#2673,
#3784), and leadscore's commits go through a transaction that copies it once per state (`leadscore.lake._compat`).
This prints the mean CPU of each ten commits beside the snapshot count and the metadata file's size, for a local
table (SQLite catalog).

    uv run python bench/commit_history.py --commits 300 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from request_cost import stages  # bench/request_cost.py, beside this script
from run import payloads  # bench/run.py: the HTTP benchmark's bodies

from leadscore.config import Settings
from leadscore.lake import flush
from leadscore.lake.spool import frame
from leadscore.model.bundle import default_bundle_dir, load_bundle


def main() -> None:
    """Commit one small segment at a time and print the cost as the history grows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=300)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    scorer = load_bundle(default_bundle_dir(), warm_explainer=False)
    figures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-commit-history-") as tmp:
        workdir = Path(tmp)
        path, _ = payloads(workdir)["1-lead"]
        bodies = [orjson.dumps(orjson.loads(line)) for line in path.read_bytes().splitlines() if line][:8]
        _, records = stages(scorer, bodies, 0)
        os.environ["LEADSCORE_LAKE_URI"] = str(workdir / "lake")
        os.environ["LEADSCORE_SPOOL_DIR"] = str(workdir / "spool")
        config = Settings().lake_table_config()
        window: list[float] = []
        for k in range(args.commits):
            segment = workdir / f"segment-{k}.seg"
            segment.write_bytes(b"".join(frame(r) for r in records))
            start = time.process_time()
            flush.commit_segments(config, [(f"bench-{k:06d}-{os.urandom(8).hex()}", str(segment))])
            window.append(1000.0 * (time.process_time() - start))
            segment.unlink()
            if k % 10 == 0 or k == args.commits - 1:
                metadata = max((workdir / "lake").rglob("*.metadata.json"), key=lambda p: p.stat().st_mtime)
                size_kib = metadata.stat().st_size // 1024
                mean_ms = sum(window) / len(window)
                window = []
                row = {"snapshots": k, "commit_cpu_ms": round(mean_ms, 1), "metadata_kib": size_kib}
                figures.append(row)
                print(json.dumps(row), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"load_average": os.getloadavg(), "commits": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
