"""What a batch run can be asked for, without importing the scoring stack (the CLI's --help stays fast)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

# Rows read and scored at a time. A few chunks are in flight (read ahead, being scored, waiting to be written),
# so the chunk sets the run's memory: 1 M rows, peak RSS 690 -> 515 MiB for Parquet and 931 -> 643 MiB for CSV
# (read as text) at 65,536 -> 16,384 rows, at the same speed (bench/batch.py; the predictor's cost per row is flat
# from a few thousand rows up).
DEFAULT_CHUNK_ROWS: Final = 16_384
# A recorded run commits each chunk to the lake (one snapshot naming its rows): larger chunks, fewer commits and
# files; and the chunk boundaries of runs recorded before stay those of a rerun with the same id.
RECORDED_CHUNK_ROWS: Final = 65_536


def chunk_rows_for(given: int | None, *, record: bool) -> int:
    """The chunk size of a run: the one given, else the default for a recorded run or a plain one."""
    if given is not None:
        return given
    return RECORDED_CHUNK_ROWS if record else DEFAULT_CHUNK_ROWS


class FileFormat(StrEnum):
    """A batch file's format."""

    CSV = "csv"
    PARQUET = "parquet"
