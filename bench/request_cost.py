"""CPU per scoring request, stage by stage, in process: what a request costs the service before HTTP.

For the benchmark's own varied bodies (bench/run.py `payloads`: CRM picklist forms, unknown values, empty
booleans), 1 lead and 500 leads, it times each stage of the scoring route on this thread's CPU clock (so other
load on the machine inflates the figures less than wall time would): decoding the body, encoding, the predictor,
the lake's rows and spool record (one request's alone), and the response body. Then the lake committer's CPU per
row: the same rows as spool segments whose records hold `--requests-per-record` requests each, as a spool writer's
group commit under load does, committed to a local Iceberg table (all threads of this process counted).

The sum is a floor under the server's CPU per request (HTTP, the event loop, metrics and logs come on top), to
set beside a peer's measured CPU per request (bench/run.py `server_cpu_cores` / requests per second).

    uv run python bench/request_cost.py [--repeats 20] [--requests-per-record 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from run import payloads  # bench/run.py, beside this script: the same bodies as the HTTP benchmark

from leadscore.api.decode import parse_leads
from leadscore.api.recording import lake_rows
from leadscore.api.routes import render_scores
from leadscore.config import Settings
from leadscore.features.encode import encode_arrays
from leadscore.lake import flush
from leadscore.lake.records import RowGroup, serialize
from leadscore.lake.spool import frame
from leadscore.model.bundle import Scorer, default_bundle_dir, load_bundle
from leadscore.scoring import score_arrays


def _cpu(run: Callable[[], Any]) -> tuple[float, Any]:
    start = time.thread_time()
    value = run()
    return time.thread_time() - start, value


def stages(scorer: Scorer, bodies: list[bytes], repeats: int) -> tuple[dict[str, float], list[RowGroup]]:
    """Median CPU milliseconds of each stage over the bodies, and the lake rows of each request."""
    times: dict[str, list[float]] = {}
    groups: list[RowGroup] = []
    for repeat in range(repeats + 1):
        for body in bodies:
            now = datetime.now(UTC)
            spent = {}
            spent["decode"], parsed = _cpu(lambda body=body: parse_leads(body))
            spent["encode"], encoded = _cpu(
                lambda parsed=parsed, now=now: encode_arrays(parsed.lead_arrays(), now, None, scorer.categories)
            )
            spent["predict"], _ = _cpu(lambda encoded=encoded: scorer.predict_proba(encoded.matrix))
            # The route's own function for the rest (it encodes and predicts again; only its output is used).
            batch = score_arrays(scorer, parsed.lead_arrays(), now)
            spent["lake_rows"], group = _cpu(
                lambda batch=batch, parsed=parsed: lake_rows(
                    batch,
                    parsed.columns,
                    request_id="r",
                    processing_ms=1.0,
                    is_test=False,
                    environment="bench",
                    api_key_id=None,
                )
            )
            spent["spool_record"], _ = _cpu(lambda group=group: serialize([group]))
            spent["response"], _ = _cpu(
                lambda batch=batch, parsed=parsed: render_scores("r", batch, parsed.columns["lead_id"], 1.0)
            )
            if repeat == 0:  # warm-up pass
                groups.append(group)
                continue
            for name, seconds in spent.items():
                times.setdefault(name, []).append(seconds * 1000.0)
    return {name: round(statistics.median(values), 4) for name, values in times.items()}, groups


def commit_cost(groups: list[RowGroup], per_record: int, workdir: Path, segments: int = 4) -> float:
    """The committer's CPU microseconds per row, committing `segments` spool segments at once.

    Each spool record holds `per_record` requests, as one group commit of the spool writer does under load.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["LEADSCORE_LAKE_URI"] = str(workdir / "lake")
    os.environ["LEADSCORE_SPOOL_DIR"] = str(workdir / "spool")
    config = Settings().lake_table_config()
    # About 25,000 rows per segment, as a busy worker's segments hold.
    records = [serialize(groups[i : i + per_record]) for i in range(0, len(groups), per_record)]
    copies = max(1, 25_000 // sum(g.size for g in groups))
    paths = []
    for k in range(segments + 1):
        path = workdir / f"segment-{k}.seg"
        path.write_bytes(b"".join(frame(r) for r in records * copies))
        paths.append((f"bench-{k}", str(path)))
    flush.commit_segments(config, paths[:1])  # creates the table, warms the committer
    start = time.process_time()
    report = flush.commit_segments(config, paths[1:])
    return round(1e6 * (time.process_time() - start) / report.rows, 2)


def main() -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    # 32 connections shared by 2 workers: up to 16 requests pending in a worker when its spool writer takes a group
    # (an estimate, not a measurement of the server; 1 is the cost of a lone request's record).
    parser.add_argument("--requests-per-record", type=int, default=16, help="requests in one spool record")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    scorer = load_bundle(default_bundle_dir(), warm_explainer=False)
    figures: dict[str, Any] = {"load_average": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-request-cost-") as tmp:
        workdir = Path(tmp)
        for case, (path, leads) in payloads(workdir).items():
            bodies = [orjson.dumps(orjson.loads(line)) for line in path.read_bytes().splitlines() if line]
            costs, groups = stages(scorer, bodies, args.repeats)
            per_row = commit_cost(groups, args.requests_per_record, workdir / case)
            costs["lake_commit"] = round(per_row * leads / 1000.0, 4)
            costs["total"] = round(sum(costs.values()), 4)
            figures[case] = {
                "leads": leads,
                "cpu_ms_per_request": costs,
                "commit_cpu_us_per_row": per_row,
                "requests_per_record": args.requests_per_record,
            }
            print(case, json.dumps(figures[case]), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
