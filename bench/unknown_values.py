"""In-process cost of leads full of CRM-style or unknown categorical values, beside clean ones.

Scores the same synthetic leads four ways with the packaged model (the service's predictor and encoder, no HTTP):
clean (vocabulary values), CRM-style (every categorical value a picklist form the category map translates),
unknown (every categorical value one no map knows, the same few again and again) and unknown-distinct (a new
unknown value in every field of every lead: each one misses the lookup cache and gets a warning). Prints the time
per call of encoding alone, of encoding + prediction, and of both plus the metrics summary of the batch, for 1
and 500 leads, and each case as a ratio of clean.

    uv run --no-sync python bench/unknown_values.py   # or ./dev bench --unknown-values (into latest.json)
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from leadscore.api.decode import parse_leads
from leadscore.features.encode import encode
from leadscore.features.spec import CATEGORY_FIELDS
from leadscore.loadtest.data import synthetic_leads
from leadscore.model.bundle import default_bundle_dir, load_bundle
from leadscore.scoring import score_columns
from leadscore.telemetry.metrics import summarize

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CRM_FORMS = {
    "company_size": {"Startup": "1-10", "Small": "11-50", "Medium": "201-500", "Large": "1001-5000",
                     "Enterprise": "10,001+"},
    "seniority_level": {"Entry": "junior", "Mid-Level": "individual_contributor", "Senior": "SENIOR_LEVEL",
                        "Manager": "mgr", "Director": "head of", "VP": "vice_president", "Executive": "c_level"},
    "geography": {"North America": "north_america", "Europe": "EU", "Asia Pacific": "APAC",
                  "Latin America": "LATAM", "Middle East": "MENA", "Africa": "sub-saharan africa"},
    "industry": {"Technology": "INFORMATION_TECHNOLOGY_AND_SERVICES", "Software": "COMPUTER_SOFTWARE",
                 "Financial Services": "banking", "Healthcare": "hospital_health_care", "Manufacturing": "machinery",
                 "Retail": "e-commerce", "Education": "higher education", "Government": "public sector",
                 "Media": "broadcast media", "Telecommunications": "telecom", "Energy": "oil & energy",
                 "Professional Services": "management consulting", "Other": "logistics"},
}  # fmt: skip
CATEGORY_NAMES = tuple(f.name for f in CATEGORY_FIELDS)
REQUEST_SETS = 64  # distinct request bodies per case, cycled through


def _columns(leads: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(parse_leads(orjson.dumps({"leads": leads})).columns)


def cases(n: int) -> dict[str, list[dict[str, Any]]]:
    """Per case, REQUEST_SETS column sets of `n` leads (the same leads, categorical values rewritten)."""
    out: dict[str, list[dict[str, Any]]] = {"clean": [], "crm-style": [], "unknown": [], "unknown-distinct": []}
    counter = itertools.count()
    for s in range(REQUEST_SETS):
        clean = _columns(synthetic_leads(n, seed=100 + s))
        out["clean"].append(clean)
        crm = dict(clean)
        unknown = dict(clean)
        distinct = dict(clean)
        for name in CATEGORY_NAMES:
            values = clean[name]
            crm[name] = [None if v is None else CRM_FORMS[name].get(v, v) for v in values]
            unknown[name] = [None if v is None else f"unheard-of {name} {i % 7}" for i, v in enumerate(values)]
            distinct[name] = [None if v is None else f"unheard-of {name} {next(counter)}" for v in values]
        out["crm-style"].append(crm)
        out["unknown"].append(unknown)
        out["unknown-distinct"].append(distinct)
    return out


def best_time(call: Callable[[dict[str, Any]], object], column_sets: list[dict[str, Any]], calls: int) -> float:
    """Best of 5 rounds of the mean seconds per call, cycling through the column sets."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(calls):
            call(column_sets[i % len(column_sets)])
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def figures() -> dict[str, dict[str, float]]:
    """Per `<leads>-lead <case>`: microseconds per call of encode, encode + predict, + metrics, and the ratios."""
    scorer = load_bundle(default_bundle_dir())
    out: dict[str, dict[str, float]] = {}
    for n, calls in ((1, 2000), (500, 40)):
        times: dict[str, tuple[float, float, float]] = {}
        for name, column_sets in cases(n).items():
            encode_s = best_time(lambda c, n=n: encode(c, n, NOW, categories=scorer.categories), column_sets, calls)
            score_s = best_time(lambda c, n=n: score_columns(scorer, c, n, NOW), column_sets, calls)
            metrics_s = best_time(lambda c, n=n: summarize(score_columns(scorer, c, n, NOW)), column_sets, calls)
            times[name] = (encode_s, score_s, metrics_s)
        clean = times["clean"]
        for name, measured in times.items():
            row = {k: round(v * 1e6, 1) for k, v in zip(("encode_us", "score_us", "metrics_us"), measured, strict=True)}
            ratios = {
                f"{k}_ratio": round(a / b, 3)
                for k, a, b in zip(("encode", "score", "metrics"), measured, clean, strict=True)
            }
            out[f"{n}-lead {name}"] = {**row, **ratios}
    return out


def main() -> None:
    """Print the figures and the ratios to clean."""
    print(f"{'case':<24} {'encode us':>10} {'+predict us':>12} {'+metrics us':>12}  ratios to clean")
    for case, row in figures().items():
        ratios = " ".join(f"{row[k]:.2f}x" for k in ("encode_ratio", "score_ratio", "metrics_ratio"))
        print(f"{case:<24} {row['encode_us']:>10.1f} {row['score_us']:>12.1f} {row['metrics_us']:>12.1f}  {ratios}")


if __name__ == "__main__":
    main()
