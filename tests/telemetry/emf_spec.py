"""A checker for CloudWatch Embedded Metric Format documents, written from the published specification.

Structure: a root object with an `_aws` metadata object (`Timestamp` in epoch milliseconds, `CloudWatchMetrics`:
an array of directives with `Namespace`, `Dimensions` and `Metrics`); every dimension and metric a directive names
must be a top-level member of the root. Limits: at most 30 dimensions per dimension set, at most 100 metrics per
document, at most 100 values per metric, `Unit` from CloudWatch's list, `StorageResolution` 1 or 60.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

UNITS = frozenset({
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
})  # fmt: skip
MAX_DIMENSIONS = 30
MAX_METRICS = 100
MAX_VALUES = 100
MAX_EVENT_BYTES = 256 * 1024
_STATISTICS = ("Min", "Max", "Sum", "Count")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _value_problems(name: str, value: Any) -> list[str]:
    if _is_number(value):
        return []
    if isinstance(value, list):
        problems = [] if len(value) <= MAX_VALUES else [f"{name}: {len(value)} values (max {MAX_VALUES})"]
        return problems + [f"{name}: non-numeric value {v!r}" for v in value if not _is_number(v)]
    if isinstance(value, dict):
        problems = [
            f"{name}: statistic {s} missing or not a number" for s in _STATISTICS if not _is_number(value.get(s))
        ]
        if "Values" in value or "Counts" in value:
            values, counts = value.get("Values"), value.get("Counts")
            if not isinstance(values, list) or not isinstance(counts, list) or len(values) != len(counts):
                problems.append(f"{name}: Values and Counts must be arrays of one length")
            elif len(values) > MAX_VALUES:
                problems.append(f"{name}: {len(values)} values (max {MAX_VALUES})")
            elif sum(counts) != value.get("Count"):
                problems.append(f"{name}: Counts add up to {sum(counts)}, Count is {value.get('Count')}")
        extra = set(value) - {*_STATISTICS, "Values", "Counts"}
        return problems + ([f"{name}: unknown members {sorted(extra)}"] if extra else [])
    return [f"{name}: value {value!r} is neither a number, an array of numbers nor a statistic set"]


def _metric_problems(where: str, definition: Any, document: dict[str, Any]) -> list[str]:
    name = definition.get("Name") if isinstance(definition, dict) else None
    if not isinstance(name, str) or not 1 <= len(name) <= 255:
        return [f"{where}: a metric definition has no valid Name"]
    problems = []
    if set(definition) - {"Name", "Unit", "StorageResolution"}:
        problems.append(f"{where}: metric {name} has unknown members")
    if "Unit" in definition and definition["Unit"] not in UNITS:
        problems.append(f"{where}: metric {name} has unit {definition['Unit']!r}")
    if definition.get("StorageResolution", 60) not in (1, 60):
        problems.append(f"{where}: metric {name} has a storage resolution other than 1 or 60")
    if name not in document:
        return [*problems, f"{where}: metric {name} is not a top-level member"]
    return problems + _value_problems(name, document[name])


def _dimension_problems(where: str, dimension_sets: Any, document: dict[str, Any]) -> list[str]:
    if not isinstance(dimension_sets, list):
        return [f"{where}.Dimensions is not an array"]
    problems = []
    for dimension_set in dimension_sets:
        if not isinstance(dimension_set, list) or len(dimension_set) > MAX_DIMENSIONS:
            problems.append(f"{where}: a dimension set is not an array of at most {MAX_DIMENSIONS} names")
            continue
        for key in dimension_set:
            value = document.get(key)
            if not isinstance(value, str) or not 1 <= len(value) <= 1024:
                problems.append(f"{where}: dimension {key!r} is not a top-level string member")
    return problems


def _directive_problems(where: str, directive: Any, document: dict[str, Any]) -> tuple[list[str], int]:
    if not isinstance(directive, dict):
        return [f"{where} is not an object"], 0
    problems = []
    if set(directive) - {"Namespace", "Dimensions", "Metrics"}:
        problems.append(f"{where} has unknown members")
    namespace = directive.get("Namespace")
    if not isinstance(namespace, str) or not 1 <= len(namespace) <= 255 or namespace.startswith("AWS/"):
        problems.append(f"{where}.Namespace is not a valid custom namespace")
    problems.extend(_dimension_problems(where, directive.get("Dimensions"), document))
    metrics = directive.get("Metrics")
    if not isinstance(metrics, list):
        return [*problems, f"{where}.Metrics is not an array"], 0
    for definition in metrics:
        problems.extend(_metric_problems(where, definition, document))
    return problems, len(metrics)


def emf_problems(document: Any, now_ms: int | None = None) -> list[str]:
    """Everything in `document` that breaks the EMF specification (empty: a valid document)."""
    if not isinstance(document, dict):
        return ["the root is not an object"]
    if len(orjson.dumps(document)) > MAX_EVENT_BYTES:
        return ["larger than a log event may be"]
    meta = document.get("_aws")
    if not isinstance(meta, dict):
        return ["no _aws metadata object"]
    problems: list[str] = []
    stamp = meta.get("Timestamp")
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    if not isinstance(stamp, int) or isinstance(stamp, bool):
        problems.append("_aws.Timestamp is not an integer")
    elif abs(stamp - now_ms) > 14 * 24 * 3600 * 1000:
        problems.append("_aws.Timestamp is not epoch milliseconds near now")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        return [*problems, "_aws.CloudWatchMetrics is not a non-empty array"]
    metric_count = 0
    for i, directive in enumerate(directives):
        found, count = _directive_problems(f"CloudWatchMetrics[{i}]", directive, document)
        problems.extend(found)
        metric_count += count
    if metric_count > MAX_METRICS:
        problems.append(f"{metric_count} metrics in one document (max {MAX_METRICS})")
    return problems
