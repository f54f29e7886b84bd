"""Training data through the API's contract: the same fields, checks and messages, each problem with its row.

A training table is turned into the API's request body, 500 leads at a time, and read by the API's own parser
(`api.decode.parse_leads`), so a value the API refuses is refused here with the API's message, and a value it
accepts means the same thing in training as in scoring. CSV has no types: its text is read into the JSON values
the API takes (booleans written as `leadscore score` reads them, `true`/`yes`/`1` and `false`/`no`/`0`; JSON
numbers), and whatever is not one of them goes to the contract as text, which refuses it for a typed field. Rows
are numbered from 1 after the header.
"""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from leadscore.api.decode import parse_leads
from leadscore.api.schemas import MAX_LEADS
from leadscore.batch.io import UTF8, encoding_hint, input_encoding
from leadscore.errors import LeadscoreError, ValidationFailed
from leadscore.features.spec import CORE_FIELDS, CUSTOM_FIELDS, FALSE_TEXT, SCORES, TRUE_TEXT, InputField, Kind

OUTCOME: Final = "outcome"
LEAD_ID: Final = "lead_id"
MAX_REPORTED: Final = 20  # problems listed in full; the rest are counted
_FIELDS: Final = {f.name: f for f in (*CORE_FIELDS, *CUSTOM_FIELDS)}
_CORE_NAMES: Final = tuple(f.name for f in CORE_FIELDS)
_CUSTOM_NAMES: Final = tuple(f.name for f in CUSTOM_FIELDS)
_KNOWN: Final = frozenset({*_FIELDS, OUTCOME, LEAD_ID})
# A JSON number (no `nan`, `inf` or `1_000`, which Python's float() would take).
_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_JSON_INTEGER: Final = re.compile(r"-?[0-9]+")
# A boolean cell's words as the JSON values the API takes: read as `leadscore score` reads them (`Yes` in a CRM's
# export is True in training as in rescoring).
_BOOL_TEXT: Final = {**dict.fromkeys(TRUE_TEXT, True), **dict.fromkeys(FALSE_TEXT, False)}


class TrainingDataError(LeadscoreError):
    """Training data that does not meet the contract; the message lists every problem found (first ones in full)."""


@dataclass(frozen=True, slots=True)
class TrainingData:
    """Validated training data: the encoder's columns (as the API produces them) and the outcome per row."""

    columns: dict[str, list[Any]]
    outcome: npt.NDArray[np.int64]
    ignored_columns: tuple[str, ...]
    missing_columns: tuple[str, ...]

    @property
    def rows(self) -> int:
        """Number of rows."""
        return int(self.outcome.size)


def read_table(path: Path, encoding: str | None = None) -> pa.Table:
    """Read Parquet, or CSV (name ending in .csv) with every column as text; LeadscoreError naming the file.

    `encoding`: a CSV file's character encoding (default UTF-8), as `leadscore score --encoding` takes it.
    """
    csv_file = path.suffix.lower() == ".csv"
    codec = input_encoding(encoding, csv_input=csv_file)
    try:
        if not csv_file:
            return pq.read_table(path)
        # A BOM is not part of the first name.
        with path.open(newline="", encoding="utf-8-sig" if codec == UTF8 else codec) as handle:
            header = next(csv.reader(handle), [])
        # Text only: the contract decides what a value means, not pyarrow's type guess (which reads a column
        # of `true`/`false` with one `yes` as text and `bool("false")` as True). Only an empty cell is missing.
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(encoding=codec),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()), null_values=[""], strings_can_be_null=True
            ),
        )
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        hint = encoding_hint(exc) if csv_file and codec == UTF8 else ""
        raise LeadscoreError(f"cannot read {path} as {'CSV' if csv_file else 'Parquet'}: {exc}{hint}") from exc


def _hint(name: str, candidates: Iterable[str]) -> str:
    """` (did you mean `x`?)` for a column name close to an expected one."""
    pool = list(candidates)
    key = re.sub(r"[\s-]+", "_", name.strip()).casefold()
    if key in pool:
        return f" (did you mean `{key}`?)"
    close = difflib.get_close_matches(key, pool, n=1, cutoff=0.8)
    return f" (did you mean `{close[0]}`?)" if close else ""


def check_columns(names: Sequence[str], allow_missing: bool = False) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The columns that will be ignored and those missing; TrainingDataError naming what is wrong.

    A column the contract does not know is refused when it looks like one it does (`Industry ` for `industry`);
    other unknown columns are ignored. Missing feature columns are refused unless `allow_missing`.
    """
    present = set(names)
    missing = tuple(name for name in _FIELDS if name not in present)
    unknown = [name for name in names if name not in _KNOWN]
    expected = [*_FIELDS, OUTCOME]
    misspelt = [f"`{name}`{hint}" for name in unknown if (hint := _hint(name, expected))]
    problems: list[str] = []
    if OUTCOME not in present:
        problems.append(f"no `{OUTCOME}` column (the score 1..5 each lead got)")
    if misspelt:
        problems.append("columns that look like contract fields but are not spelt as them: " + ", ".join(misspelt))
    if missing and not allow_missing:
        problems.append(f"missing columns: {', '.join(missing)} (pass --allow-missing-columns to train without them)")
    if problems:
        raise TrainingDataError("training data does not match the contract: " + "; ".join(problems))
    return tuple(unknown), missing


def _from_text(kind: Kind, values: list[Any]) -> list[Any]:
    """CSV text as the JSON values the API takes; text that is not one of them stays text (the contract refuses it)."""
    if kind is Kind.BOOL:
        return [v if v is None else _BOOL_TEXT.get(v.strip().casefold(), v) for v in values]
    if kind is Kind.INT:
        return [
            int(v) if v is not None and _JSON_INTEGER.fullmatch(v.strip()) else _number(v)
            for v in values
        ]  # fmt: skip
    if kind is Kind.FLOAT:
        return [_number(v) for v in values]
    return values


def _number(value: str | None) -> Any:  # noqa: ANN401 - a float, or the text itself for the contract to refuse
    if value is None or not _JSON_NUMBER.fullmatch(value.strip()):
        return value
    return float(value)


def _outcome(values: list[Any]) -> tuple[npt.NDArray[np.int64], list[tuple[int, str]]]:
    """The outcome per row and the rows where it is not an integer score 1..5."""
    out = np.zeros(len(values), dtype=np.int64)
    bad: list[tuple[int, str]] = []
    for i, value in enumerate(values):
        score = value
        if isinstance(value, str) and _JSON_INTEGER.fullmatch(value.strip()):
            score = int(value)
        if isinstance(score, int) and not isinstance(score, bool) and SCORES[0] <= score <= SCORES[-1]:
            out[i] = score
        else:
            bad.append((i, f"{OUTCOME}: must be an integer score 1..5, got {value!r}"))
    return out, bad


def _column(table: pa.Table, spec: InputField) -> list[Any]:
    """The field's values as the API would receive them: text columns (all of a CSV's) read as JSON values."""
    if spec.name not in table.column_names:
        return [None] * table.num_rows
    column = table.column(spec.name)
    values = column.to_pylist()
    return (
        _from_text(spec.kind, values)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        else values
    )


def validate_training_table(
    table: pa.Table, allow_missing: bool = False, progress: Callable[[str], None] | None = None
) -> TrainingData:
    """Check every row of `table` against the API's contract; TrainingDataError listing the problems by row."""
    ignored, missing = check_columns(table.column_names, allow_missing)
    n = table.num_rows
    if n == 0:
        raise TrainingDataError("training data has no rows")
    outcome, problems = _outcome(table.column(OUTCOME).to_pylist())
    core = [_column(table, _FIELDS[name]) for name in _CORE_NAMES]
    custom = [_column(table, _FIELDS[name]) for name in _CUSTOM_NAMES]
    lead_ids = table.column(LEAD_ID).to_pylist() if LEAD_ID in table.column_names else [None] * n
    leads = [dict(zip(_CORE_NAMES, values, strict=True)) for values in zip(*core, strict=True)]
    for lead, lead_id, values in zip(leads, lead_ids, zip(*custom, strict=True), strict=True):
        lead[LEAD_ID] = lead_id
        lead["custom_features"] = dict(zip(_CUSTOM_NAMES, values, strict=True))

    columns: dict[str, list[Any]] = {}
    for start in range(0, n, MAX_LEADS):
        chunk = leads[start : start + MAX_LEADS]
        try:
            parsed = parse_leads(orjson.dumps({"leads": chunk}, option=orjson.OPT_NAIVE_UTC))
        except ValidationFailed as exc:
            for detail in exc.errors:
                where = (detail.field or "").removeprefix("custom_features.")
                index = start + (detail.lead_index or 0)
                given = _given(chunk[index - start], where)
                problems.append((index, f"{where}: {detail.message}{given}"))
            continue
        for name, column in parsed.columns.items():
            columns.setdefault(name, []).extend(column)
        if progress is not None and (start // MAX_LEADS) % 40 == 39:
            progress(f"checked {start + len(chunk)} of {n} rows")
    if problems:
        raise TrainingDataError(_describe(problems, n))
    return TrainingData(columns=columns, outcome=outcome, ignored_columns=ignored, missing_columns=missing)


def _given(lead: dict[str, Any], name: str) -> str:
    value = lead.get(name, lead["custom_features"].get(name))
    return "" if value is None else f", got {value!r}"[:120]


def _describe(problems: list[tuple[int, str]], n: int) -> str:
    problems.sort(key=lambda p: p[0])
    rows = len({row for row, _ in problems})
    lines = [f"row {row + 1}, {message}" for row, message in problems[:MAX_REPORTED]]
    more = len(problems) - MAX_REPORTED
    tail = f"; and {more} more" if more > 0 else ""
    return f"{len(problems)} problem(s) in {rows} of {n} rows: " + "; ".join(lines) + tail
