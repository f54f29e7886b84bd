"""`leadscore outcomes import FILE`: outcomes from a CRM export (CSV or Parquet), validated like the API's.

CSV cells are text: a CRM's `converted` column (`true/false`, `yes/no`, `1/0`, empty) and a numeric `outcome` are read
into the contract's types here, then every row goes through the same contract as the API (`validate_outcomes`).
Valid rows are committed to the outcomes table at once, in one snapshot; rejected rows are reported by row number
(1 = the first data row) and field.

A date alone (a Salesforce `CloseDate`) says which day, not when: the contract refuses it, as the API does. With
`end_of_day`, it is read as the last moment of that day in UTC (now, for today): every score of that day comes before
it, so a lead scored the morning its deal closed is labelled by that outcome (midnight would be before that score).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeGuard

from leadscore.errors import LeadscoreError
from leadscore.features.spec import FALSE_TEXT, TRUE_TEXT
from leadscore.outcomes.schema import OutcomeIn, Problem, to_columns, validate_outcomes
from leadscore.outcomes.table import distinct, outcome_batch, outcomes_table_config, write_outcomes
from leadscore.training.contract import read_table

if TYPE_CHECKING:
    from leadscore.config import Settings

SOURCE: Final = "import"
FIELDS: Final = tuple(OutcomeIn.model_fields)
_TRUE: Final = frozenset(TRUE_TEXT)
_FALSE: Final = frozenset(FALSE_TEXT)
_DATE_ALONE: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
END_OF_DAY_HINT: Final = "a date alone: --date-as-end-of-day reads it as the end of that day (UTC)"


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did."""

    file: str
    request_id: str
    rows: int
    imported: int  # distinct outcomes committed
    duplicates: int  # rows repeating an earlier row of the file
    rejected: tuple[Problem, ...]  # index: 0-based data row
    ignored_columns: tuple[str, ...]
    snapshot_id: int | None

    @property
    def rejected_rows(self) -> int:
        """Rows with at least one problem."""
        return len({p.index for p in self.rejected})


def crm_bool(value: object) -> object:
    """A CRM's boolean cell as a bool (true/false, yes/no, 1/0, any case; empty: None); anything else as it is."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return value  # the contract names it


def _outcome(value: object) -> object:
    """An outcome cell as an int ("4", "4.0", 4.0); anything else as it is, for the contract to name."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return value
        return int(number) if number.is_integer() else value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _occurred_at(value: object) -> object:
    """A Parquet timestamp as ISO text (one without a zone is UTC, as the lake's are); text as it is."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, date):
        return value.isoformat()  # a Parquet date: the text a CSV would hold
    if isinstance(value, str):
        return value.strip() or None
    return value


def is_date_alone(value: object) -> TypeGuard[str]:
    """Whether an occurred_at cell (as read) is a calendar date with no time."""
    return isinstance(value, str) and _DATE_ALONE.match(value) is not None


def end_of_day(value: str, now: datetime) -> str:
    """The last microsecond of the day `value` (YYYY-MM-DD) in UTC, or `now` when that is still to come."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return value  # no such day (2026-02-30): the contract names it
    return min(datetime.combine(day, time.max, tzinfo=UTC), now).isoformat()


def _text(value: object) -> object:
    if isinstance(value, str):
        return value.strip() or None
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


_READERS: Final = {
    "lead_id": _text,
    "outcome": _outcome,
    "converted": crm_bool,
    "occurred_at": _occurred_at,
    "source": _text,
    "stage": _text,
}


def read_items(
    path: Path, end_of_day_dates: bool = False, encoding: str | None = None
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The file's rows as contract items (names matched case-insensitively), and the columns it ignores.

    `end_of_day_dates`: an occurred_at that is a date alone is read as the end of that day (see the module docstring).
    `encoding`: a CSV file's character encoding (default UTF-8).
    """
    table = read_table(path, encoding)
    by_name = {name.strip().lower(): name for name in table.column_names}
    missing = [name for name in ("lead_id", "occurred_at") if name not in by_name]
    if missing or not ({"outcome", "converted"} & by_name.keys()):
        raise LeadscoreError(
            f"{path.name} needs the columns lead_id, occurred_at and outcome and/or converted"
            f"{' (missing: ' + ', '.join(missing) + ')' if missing else ''}; it has {', '.join(table.column_names)}"
        )
    columns = {field: table.column(by_name[field]).to_pylist() for field in FIELDS if field in by_name}
    items = [{field: _READERS[field](values[i]) for field, values in columns.items()} for i in range(table.num_rows)]
    if end_of_day_dates:
        now = datetime.now(UTC)
        for item in items:
            value = item["occurred_at"]
            if is_date_alone(value):
                item["occurred_at"] = end_of_day(value, now)
    ignored = tuple(name for key, name in by_name.items() if key not in FIELDS)
    return items, ignored


def import_outcomes(
    settings: Settings,
    path: Path,
    source: str | None = None,
    strict: bool = False,
    end_of_day_dates: bool = False,
    encoding: str | None = None,
) -> ImportReport:
    """Validate every row of `path` and commit the valid ones (none at all when `strict` and any is rejected).

    `end_of_day_dates`: read an occurred_at that is a date alone as the end of that day (else it is refused, with a
    hint naming the option).
    """
    items, ignored = read_items(path, end_of_day_dates, encoding)
    valid, problems = validate_outcomes(items)
    problems = [
        replace(p, message=f"{p.message}; {END_OF_DAY_HINT}")
        if p.field == "occurred_at" and is_date_alone(items[p.index].get("occurred_at"))
        else p
        for p in problems
    ]
    request_id = f"import-{uuid.uuid4().hex[:16]}"
    imported = duplicates = 0
    snapshot_id = None
    if valid and not (strict and problems):
        batch = outcome_batch(
            to_columns(valid), received_at=datetime.now(UTC), request_id=request_id, source=source or SOURCE
        )
        unique = distinct(batch)
        imported, duplicates = unique.num_rows, batch.num_rows - unique.num_rows
        snapshot_id = write_outcomes(outcomes_table_config(settings), unique, request_id)
    return ImportReport(
        file=str(path),
        request_id=request_id,
        rows=len(items),
        imported=imported,
        duplicates=duplicates,
        rejected=tuple(problems),
        ignored_columns=ignored,
        snapshot_id=snapshot_id,
    )
