"""Explanation benchmark: our TreeSHAP kernel beside XGBoost's `pred_contribs`, same model, same rows, one thread.

    uv run python bench/explain.py --cpu 1            # pin to core 1 (as `taskset -c 1` would)
    uv run python bench/explain.py --json out.json    # also write the figures as JSON
    ./dev bench --explain-cases --seconds 5           # also the real server: bench/run.py calls server_cases

Both explain the packaged model's leads. XGBoost computes every class's contributions (it has no way to ask
for one); the service needs only the predicted class's, which is what the kernel computes, so the ratio is of
what each costs to answer the same question. `whole explanation` adds the mapping to business fields, the top
factors and the rendered reasons. The kernel's answers are checked against XGBoost's before anything is timed.
Rounds interleave the cases and the median round is reported, so a busy machine skews all alike; each call is
timed in this thread's CPU time (XGBoost runs with one thread, in this one).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import xgboost as xgb

from leadscore.features.encode import encode
from leadscore.model.bundle import BOOSTER_FILE, bundle_category_map, default_bundle_dir
from leadscore.model.explain import TreeExplainer
from leadscore.model.reasons import explain, render
from leadscore.training.synth import AS_OF, synthesize, table_to_columns

BATCHES = (1, 500)


def seconds_per_call(call: Callable[[], object], budget: float) -> float:
    """Median CPU seconds of `call` (this thread's) over as many calls as fit in `budget` seconds (at least 3).

    CPU time, not wall time: on a machine shared with other work, time spent preempted does not count.
    """
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < 3 or time.perf_counter() < deadline:
        start = time.thread_time()
        call()
        times.append(time.thread_time() - start)
    return statistics.median(times)


def kernel_figures(leads: int = 500, rounds: int = 3, budget: float = 1.0) -> dict[str, Any]:
    """Per-lead costs of XGBoost's pred_contribs, of our kernel and of the whole explanation, and their ratios."""
    directory = default_bundle_dir()
    started = time.perf_counter()
    booster = xgb.Booster()
    booster.load_model(str(directory / BOOSTER_FILE))
    booster.set_param({"nthread": 1})
    explainer = TreeExplainer.from_booster(booster)
    explainer.warm_up()
    load_seconds = time.perf_counter() - started

    table = synthesize(leads, seed=99)
    columns = table_to_columns(table)
    matrix = encode(columns, table.num_rows, AS_OF, categories=bundle_category_map(directory)).matrix
    classes = booster.inplace_predict(matrix).reshape(-1, 5).argmax(axis=1)
    reference = booster.predict(xgb.DMatrix(matrix, feature_names=booster.feature_names), pred_contribs=True)
    worst = float(np.abs(explainer.contributions(matrix, classes) - reference[np.arange(len(classes)), classes]).max())
    print(f"kernel vs pred_contribs on {len(classes)} leads: largest difference {worst:.2g}")
    print(f"explainer built and warmed up in {load_seconds:.2f} s (booster load + extraction + numba cache load)")

    figures: dict[str, dict[str, float]] = {}
    for n in BATCHES:
        rows, wanted = matrix[:n], classes[:n]
        lead_columns = {name: values[:n] for name, values in columns.items()}
        dmatrix = xgb.DMatrix(rows, feature_names=booster.feature_names)
        cases: dict[str, Callable[[], object]] = {
            "xgboost pred_contribs": lambda d=dmatrix: booster.predict(d, pred_contribs=True),
            "kernel (predicted class)": lambda r=rows, w=wanted: explainer.contributions(r, w),
            "whole explanation": lambda r=rows, w=wanted, c=lead_columns: render(explain(explainer, r, w), c),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, call in cases.items():
                times[name].append(seconds_per_call(call, budget) / n)
        figures[str(n)] = {name: statistics.median(values) * 1000.0 for name, values in times.items()}

    print(f"\nms per lead, one thread, batches of {' and '.join(map(str, BATCHES))} leads")
    print(f"{'case':28}" + "".join(f"{f'batch {n}':>12}" for n in BATCHES))
    for name in figures[str(BATCHES[0])]:
        print(f"{name:28}" + "".join(f"{figures[str(n)][name]:12.4f}" for n in BATCHES))
    ratio: dict[str, Any] = {}
    for n in BATCHES:
        xgb_ms = figures[str(n)]["xgboost pred_contribs"]
        ratio[str(n)] = {
            "kernel": xgb_ms / figures[str(n)]["kernel (predicted class)"],
            "whole": xgb_ms / figures[str(n)]["whole explanation"],
        }
    print(f"{'xgboost / kernel':28}" + "".join(f"{ratio[str(n)]['kernel']:11.1f}x" for n in BATCHES))
    print(f"{'xgboost / whole explanation':28}" + "".join(f"{ratio[str(n)]['whole']:11.1f}x" for n in BATCHES))
    return {"ms_per_lead": figures, "ratio": ratio, "load_seconds": load_seconds, "max_difference": worst}


class Server(Protocol):
    """bench/run.py's running server, as far as these cases use it."""

    def stop(self) -> None:
        """Stop it (SIGTERM, by its PID)."""


def server_cases(
    server: Server,
    measure: Callable[[Server, str, Path, int, int, int], dict[str, Any]],
    bodies: dict[str, tuple[Path, int]],
    seconds: int,
) -> dict[str, Any]:
    """Each body with `explain` beside the same body without, at 1 and more connections, then the kernel's figures.

    500-lead bodies use 4 connections, not 32: with explain, 32 of them queue seconds of work each warm-up leaves
    behind (the server finishes requests whose client left), which the timed run would wait behind.

    `server` is started by bench/run.py and stopped here; `measure` is bench/run.py's (wrk against the server);
    `bodies` are its payloads (name -> (JSON file, leads per request)), the explained ones hold the same leads.
    """
    runs: list[dict[str, Any]] = []
    try:
        for case, (body, leads) in bodies.items():
            explained = body.with_name(f"{body.stem}-explain{body.suffix}")  # one body per line, wrk cycles
            lines = body.read_text().splitlines()
            explained.write_text("".join(json.dumps({**json.loads(line), "explain": True}) + "\n" for line in lines))
            for connections in (1, 32 if leads == 1 else 4):
                for label, path in ((case, body), (f"{case} explain", explained)):
                    row = {"case": label, **measure(server, "/api/v1/scoring/score", path, leads, connections, seconds)}
                    runs.append(row)
                    print(f"{label:18} {row}")
    finally:
        server.stop()
    return {"server": runs, "kernel": kernel_figures(rounds=1, budget=min(float(seconds), 2.0))}


def main() -> None:
    """Print per-lead costs of XGBoost's pred_contribs and of our kernel, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", type=int, help="pin this process to one core (default: leave as started)")
    parser.add_argument("--leads", type=int, default=500, help="distinct synthetic leads to explain")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per case per round")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    report = kernel_figures(args.leads, args.rounds, args.budget)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
