"""The columnar core's targets beside what the benchmarks measured, each against its reference from the same run.

Reads the figures the benchmarks wrote (`bench/results/`): `latest.json` (bench/run.py: the API against the HTTP
ceiling and MLServer, and the service's memory), `memory.json` when it is the newer (bench/run.py --memory-only),
`batch.json` (bench/batch.py: `leadscore score` against the predictor's limit, and its memory), `spark.json`
(bench/spark.py: Spark local[2] against the predictor per core). Prints one line per target and writes them to
`targets.json`. A target whose figures are missing says so; none is counted as met without its figure, nor when
its ratio is beyond what its reference allows (UNSOUND: the reference was measured in a slow moment).

    uv run python bench/targets.py            # after ./dev bench (which runs it last)
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True)
class Target:
    """One target of issue 14: what is measured, against what, and the bar."""

    name: str
    measured: str
    reference: str
    value: float | None  # the ratio (or the figure, for memory), None when not measured
    bar: float
    at_most: bool = False  # True: the value must not exceed the bar (memory)
    source: str = ""
    # A ratio above this cannot be right: the reference bounds the measured part (the predictor bounds a command
    # that runs it; the HTTP ceiling bounds an endpoint). Above it the reference was measured in a slow moment.
    bound: float | None = None

    @property
    def verdict(self) -> str:
        """MET, MISSED, NOT MEASURED, or UNSOUND (the ratio exceeds what its reference allows: not counted as met)."""
        if self.value is None:
            return "NOT MEASURED"
        if self.bound is not None and self.value > self.bound:
            return "UNSOUND"
        met = self.value <= self.bar if self.at_most else self.value >= self.bar
        return "MET" if met else "MISSED"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _get(data: dict[str, Any] | None, *keys: str) -> Any:  # noqa: ANN401 - JSON values
    value: Any = data
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _run_of(api: dict[str, Any] | None, case: str, connections: int, server: str | None) -> dict[str, Any] | None:
    for run in _get(api, "runs") or []:
        if run.get("case") == case and run.get("connections") == connections and run.get("server") == server:
            if server is None and run.get("lake") not in (None, "sync"):
                continue
            return dict(run)
    return None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def _figure(run: dict[str, Any] | None, key: str, unit: str) -> str:
    value = _get(run, key)
    return f"{value:,.0f} {unit}" if isinstance(value, int | float) else "not measured"


def _against(
    name: str,
    ours: dict[str, Any] | None,
    reference: dict[str, Any] | None,
    label: str,
    key: str,
    unit: str,
    bar: float,
    bound: float | None = None,
) -> Target:
    """An API target: our run's `key` over the reference run's (named `label`), both from latest.json."""
    return Target(
        name,
        _figure(ours, key, unit),
        f"{label} {_figure(reference, key, unit)}",
        _ratio(_get(ours, key), _get(reference, key)),
        bar,
        source="latest.json",
        bound=bound,
    )


def _spark_target(spark: dict[str, Any] | None, way: str, prefix: str) -> Target:
    """Spark local[2] per core one way (`prefix`: its figures' names in spark.json) against the in-process reference.

    The reference is the faster of the predictor and score_table (files written before it was kept: the predictor).
    """
    rate = _get(spark, f"{prefix}_rows_per_s_per_core")
    reference = _get(spark, "reference_rows_per_s_per_core") or _get(spark, "predictor_rows_per_s_per_core")
    return Target(
        f"Spark local[2], per core, {way}",
        f"{rate:,.0f} rows/s per core" if rate else "not measured",
        f"predictor {reference:,.0f} rows/s per core" if reference else "not measured",
        _get(spark, f"{prefix}_per_core_vs_predictor"),
        0.7,
        source="spark.json",
        bound=1.0,
    )


def targets() -> list[Target]:
    """Every target, from the files the benchmarks wrote."""
    api, batch, spark = _load("latest.json"), _load("batch.json"), _load("spark.json")
    # The memory case of the newer run: `--memory-only` writes memory.json, a whole run latest.json.
    alone = _load("memory.json")
    memory = _get(api, "memory")
    if _get(alone, "memory") is not None and (memory is None or str(_get(alone, "when")) > str(_get(api, "when"))):
        memory = _get(alone, "memory")
    big_ours, big_peer = _run_of(api, "500-lead", 32, None), _run_of(api, "500-lead", 32, "mlserver")
    one_ours, one_peer = _run_of(api, "1-lead", 32, None), _run_of(api, "1-lead", 32, "mlserver")
    ceiling = _run_of(api, "http-ceiling", 32, None)
    score_rate = _get(batch, "score", "rows_per_s")
    limit = _get(batch, "predictor_limit", "rows_per_s")
    large_rss = _get(batch, "large", "peak_rss_mb")
    rss = large_rss if large_rss is not None else _get(batch, "score", "peak_rss_mb")
    large_rows = _get(batch, "large", "rows") or _get(batch, "score", "rows")
    return [
        Target(
            "leadscore score, 1 M-lead Parquet, end to end",
            f"{score_rate:,.0f} rows/s" if score_rate else "not measured",
            f"predictor limit {limit:,.0f} rows/s" if limit else "not measured",
            _ratio(score_rate, limit),
            0.8,
            source="batch.json",
            bound=1.0,
        ),
        Target(
            "leadscore score, peak RSS of the process tree (MB)",
            f"{rss:,.0f} MB on {large_rows:,} rows" if rss is not None and large_rows else "not measured",
            "1,000 MB",
            rss,
            1000.0,
            at_most=True,
            source="batch.json",
        ),
        _spark_target(spark, "file to file (score_parquet)", "spark_files"),
        _spark_target(spark, "DataFrame (score_dataframe)", "spark"),
        _against(
            "API 500 leads, 32 connections, lake on, vs MLServer",
            big_ours,
            big_peer,
            "MLServer",
            "leads_per_s",
            "leads/s",
            2.0,
        ),
        _against(
            "API 1 lead, 32 connections, lake on, vs HTTP ceiling",
            one_ours,
            ceiling,
            "ceiling",
            "requests_per_s",
            "req/s",
            0.5,
            bound=1.0,
        ),
        _against(
            "API 1 lead, 32 connections, lake on, vs MLServer",
            one_ours,
            one_peer,
            "MLServer",
            "requests_per_s",
            "req/s",
            5.0,
        ),
        Target(
            "service, 1 worker, peak RSS of every process (MiB)",
            f"{_get(memory, 'peak_rss_mib'):,} MiB" if _get(memory, "peak_rss_mib") is not None else "not measured",
            "800 MiB",
            _get(memory, "peak_rss_mib"),
            800.0,
            at_most=True,
            source="memory.json / latest.json",
        ),
    ]


def main() -> None:
    """Print the targets and write targets.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "targets.json")
    args = parser.parse_args()
    rows = targets()
    width = max(len(t.name) for t in rows)
    for t in rows:
        value = "-" if t.value is None else f"{t.value:g}"
        bar = f"{'<=' if t.at_most else '>='} {t.bar:g}"
        print(f"{t.name:{width}s}  {t.verdict:12s} {value:>8s} (target {bar})  {t.measured}  vs {t.reference}")
    args.out.write_text(
        json.dumps([{**asdict(t), "verdict": t.verdict} for t in rows], indent=2) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
