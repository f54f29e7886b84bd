"""Table maintenance: merge a day's small files into one, and forget a lead (erasure requests).

Compaction is one Iceberg snapshot that deletes exactly the files it read and adds the merged file: readers see
the old files or the new one, never both. Two compactions of the same day cannot both win (the second finds its
input files gone and fails validation), and rows appended to the day meanwhile are untouched (they are in files
the compaction did not read). In AWS, Athena's `OPTIMIZE ... REWRITE DATA USING BIN_PACK` does the same job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.expressions import And, BooleanExpression, EqualTo, Or

from leadscore.lake import _compat
from leadscore.lake.errors import LakeError

if TYPE_CHECKING:
    from pyiceberg.table import Table


class CompactionConflict(LakeError):
    """Another change to the same files won (e.g. a concurrent compaction): nothing was done; run again later."""


@dataclass(frozen=True, slots=True)
class CompactionResult:
    """What a compaction did."""

    partition: str
    input_files: int
    rows: int
    output_files: int
    snapshot_id: int | None


def equal(column: str, value: object) -> BooleanExpression:
    """`column = value` as a pyiceberg expression."""
    return EqualTo(term=column, value=value)


def day_filter(day: date) -> BooleanExpression:
    """Rows of the UTC day `day` (the table's partition columns)."""
    return And(And(equal("year", day.year), equal("month", day.month)), equal("day", day.day))


def compact_day(table: Table, day: date) -> CompactionResult:
    """Merge the data files of `day` into one file (sorted by time and request id) in one snapshot."""
    partition = f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"
    scan = table.scan(row_filter=day_filter(day))
    tasks = list(scan.plan_files())
    if len(tasks) < 2:
        return CompactionResult(partition, len(tasks), 0, 0, None)
    rows = scan.to_arrow().sort_by([("timestamp", "ascending"), ("request_id", "ascending")])
    try:
        properties = {"leadscore.compaction": partition}
        tx = _compat.transaction(table)
        with tx, tx.update_snapshot(snapshot_properties=properties).overwrite() as rewrite:
            for task in tasks:
                rewrite.delete_data_file(task.file)
            outputs = list(_compat.write_data_files(tx, rows))
            for data_file in outputs:
                rewrite.append_data_file(data_file)
    except (ValidationException, CommitFailedException) as exc:
        raise CompactionConflict(f"compaction of {partition} lost to a concurrent change: {exc}") from exc
    snapshot = table.current_snapshot()
    return CompactionResult(
        partition, len(tasks), rows.num_rows, len(outputs), snapshot.snapshot_id if snapshot else None
    )


def forget(table: Table, lead_ids: list[str], request_ids: list[str]) -> int:
    """Delete every row of the given leads and requests; returns how many rows were deleted."""
    terms = [equal("lead_id", v) for v in lead_ids] + [equal("request_id", v) for v in request_ids]
    if not terms:
        raise ValueError("name at least one lead id or request id")
    condition = terms[0]
    for term in terms[1:]:
        condition = Or(condition, term)
    matching: pa.Table = table.scan(row_filter=condition, selected_fields=("request_id",)).to_arrow()
    if not matching.num_rows:
        return 0
    table.delete(condition, snapshot_properties={"leadscore.forget": str(matching.num_rows)})
    return int(matching.num_rows)
