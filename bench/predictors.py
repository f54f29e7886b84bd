"""In-process predictor benchmark: us per call and rows/s per batch size on the shipped model, one thread.

Compares XGBoost's `inplace_predict` (the reference) with the service's fast path (oneDAL, as served: missing
inputs as infinities, tail padded to whole blocks), oneDAL unpadded, oneDAL fed NaN for missing (the path before
`MissingAsBounds`), and the walk the service uses for small calls (under 26 rows on Intel, 48 elsewhere:
`leadscore.model.walk`). ONNX Runtime and tl2cgen rows are added when their packages are importable (they are not
dependencies of the service: install onnxruntime + onnxmltools, or treelite + tl2cgen + a C compiler, to see
them). Every predictor is checked against
XGBoost before it is timed.

    uv run python bench/predictors.py --cpu 1            # pin to core 1 (as `taskset -c 1` would)
    uv run python bench/predictors.py --json out.json    # also write the figures as JSON
    uv run python bench/predictors.py --inputs synthetic # training-like rows instead of the API bench's leads

Timings interleave predictors and batch sizes over several rounds and report the median round, so a
machine busy with other work skews every predictor alike; the spread column shows how noisy it was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import xgboost as xgb

from leadscore.api.decode import parse_leads
from leadscore.features.encode import encode, encode_arrays
from leadscore.features.picklists import load_category_map
from leadscore.model.bundle import BOOSTER_FILE, CATEGORY_MAP_FILE, default_bundle_dir
from leadscore.model.predictors import (
    MissingAsBounds,
    OneDalPredictor,
    XGBoostPredictor,
    booster_trees,
    cpu_vendor,
    default_block_rows,
    disagreement,
)
from leadscore.model.walk import WalkedForest, WalkPredictor
from leadscore.training.synth import AS_OF, synthesize, table_to_columns

Predict = Callable[[np.ndarray], np.ndarray]
SIZES = (1, 8, 32, 128, 500)


def onnxruntime_predict(booster: xgb.Booster) -> Predict | None:
    """ONNX Runtime on the booster converted by onnxmltools (one thread, sequential), if installed."""
    try:
        import onnxruntime as ort  # noqa: PLC0415 - optional: not a dependency of the service
        from onnxmltools.convert import convert_xgboost  # noqa: PLC0415 - optional
        from onnxmltools.convert.common.data_types import FloatTensorType  # noqa: PLC0415 - optional
    except ImportError:
        return None
    plain = booster.copy()
    plain.feature_names = None  # the converter wants f0..fN names
    plain.feature_types = None
    model = convert_xgboost(plain, initial_types=[("input", FloatTensorType([None, booster.num_features()]))])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda m: session.run(["probabilities"], {"input": m})[0]


def tl2cgen_predict(booster: xgb.Booster) -> Predict | None:
    """tl2cgen's compiled C predictor (needs a C compiler at build time), if installed."""
    try:
        import tl2cgen  # noqa: PLC0415 - optional: not a dependency of the service
        import treelite  # noqa: PLC0415 - optional
    except ImportError:
        return None
    library = Path(tempfile.mkdtemp()) / "model.so"
    tl2cgen.export_lib(
        treelite.frontend.from_xgboost(booster),
        toolchain="gcc",
        libpath=str(library),
        params={"parallel_comp": 16},
        nthread=os.cpu_count() or 1,
    )
    predictor = tl2cgen.Predictor(str(library), nthread=1)
    classes = 5
    return lambda m: predictor.predict(tl2cgen.DMatrix(m, dtype="float32")).reshape(m.shape[0], classes)


def candidates(booster: xgb.Booster) -> dict[str, Predict]:
    """Every predictor that can be built here, by name."""
    found: dict[str, Predict] = {"xgboost inplace_predict": XGBoostPredictor(booster).predict}
    block = default_block_rows(cpu_vendor())
    found["onedal (served: padded)"] = OneDalPredictor(booster, 1, block).predict
    if block is not None:
        found["onedal unpadded"] = OneDalPredictor(booster, 1, None).predict
    found["onedal, NaN for missing"] = OneDalPredictor(booster, 1, block, missing_as_bounds=False).predict
    trees = booster_trees(booster)
    plan = MissingAsBounds.of(trees, booster.num_features())
    found["walk (served for small calls)"] = WalkPredictor(WalkedForest.of_booster(booster, trees, plan), plan).predict
    for name, build in (("onnxruntime", onnxruntime_predict), ("tl2cgen (reference only)", tl2cgen_predict)):
        predict = build(booster)
        if predict is not None:
            found[name] = predict
    return found


def per_call_seconds(predict: Predict, matrix: np.ndarray, budget: float) -> float:
    """Mean seconds per call over a loop of about `budget` seconds."""
    predict(matrix)
    calls, start = 0, time.perf_counter()
    while True:
        predict(matrix)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            return elapsed / calls


def request_rows(n: int) -> np.ndarray:
    """The model inputs of the API benchmark's varied leads (bench/run.py), as the service decodes and encodes them."""
    from run import varied_leads  # noqa: PLC0415 - bench/run.py, beside this script

    categories = load_category_map(default_bundle_dir() / CATEGORY_MAP_FILE)
    parts = []
    for seed in range(-(-n // 500)):  # requests of at most 500 leads, as the API takes them
        parsed = parse_leads(orjson.dumps({"leads": varied_leads(500, seed=100 + seed)}))
        parts.append(encode_arrays(parsed.lead_arrays(), AS_OF, None, categories).matrix)
    return np.concatenate(parts)[:n]


def main() -> None:
    """Build, check, time and print."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", type=int, help="pin this process to one core (default: leave as started)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the median is reported")
    parser.add_argument("--budget", type=float, default=0.05, help="seconds of calls per measurement")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="batch sizes, comma-separated")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--inputs",
        choices=("requests", "synthetic"),
        default="requests",
        help="the API bench's varied leads (nine in ten miss an input), or synthetic training-like rows",
    )
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    sizes = [int(s) for s in args.sizes.split(",")]

    booster = xgb.Booster()
    booster.load_model(str(default_bundle_dir() / BOOSTER_FILE))
    booster.set_param({"nthread": 1})
    if args.inputs == "requests":
        rows = request_rows(5000)
    else:
        table = synthesize(5000, seed=99)
        rows = encode(table_to_columns(table), table.num_rows, AS_OF).matrix
    predictors = candidates(booster)

    reference = predictors["xgboost inplace_predict"](rows)
    for name, predict in predictors.items():
        problem = disagreement(reference, np.asarray(predict(rows), dtype=np.float32))
        print(f"check {name}: {problem or 'agrees with XGBoost (max abs diff <= 1e-6, same scores)'}")

    rng = np.random.default_rng(0)
    timings: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for n in sizes:
            batch = np.ascontiguousarray(rows[rng.integers(0, rows.shape[0], n)])
            for name, predict in predictors.items():
                timings.setdefault((name, n), []).append(per_call_seconds(predict, batch, args.budget))

    load = os.getloadavg()
    print(
        f"\n{platform.processor() or platform.machine()} {cpu_vendor() or 'unknown vendor'}, "
        f"{os.cpu_count()} cores, pinned to {sorted(os.sched_getaffinity(0))}, "
        f"load average {load[0]:.2f}; median of {args.rounds} rounds\n"
    )
    print(f"| {'predictor':26s} | {'rows':>4s} | {'us/call':>8s} | {'rows/s':>9s} | {'spread':>11s} | {'vs xgb':>6s} |")
    print(f"|{'-' * 28}|{'-' * 6}|{'-' * 10}|{'-' * 11}|{'-' * 13}|{'-' * 8}|")
    results: list[dict[str, Any]] = []
    for n in sizes:
        base = statistics.median(timings[("xgboost inplace_predict", n)])
        for name in predictors:
            seconds = timings[(name, n)]
            median = statistics.median(seconds)
            spread = f"{min(seconds) * 1e6:.0f}-{max(seconds) * 1e6:.0f}"
            print(
                f"| {name:26s} | {n:4d} | {median * 1e6:8.0f} | {n / median:9,.0f} | {spread:>11s} | "
                f"{base / median:5.2f}x |"
            )
            results.append({"predictor": name, "rows": n, "us_per_call": median * 1e6, "rows_per_s": n / median})
    if args.json:
        args.json.write_text(json.dumps({"load_average": load, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
