"""What a batch run can be asked for, without importing the scoring stack (the CLI's --help stays fast)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

# Rows read and scored at a time. A few chunks are in flight (read ahead, being scored, waiting to be written),
# so the chunk sets the run's memory: 1 M rows, peak RSS 690 -> 515 MiB for Parquet and 931 -> 643 MiB for CSV
# (read as text) at 65,536 -> 16,384 rows, at the same speed (bench/batch.py; the predictor's cost per row is flat
# from a few thousand rows up).
DEFAULT_CHUNK_ROWS: Final = 16_384
# A recorded run commits its chunks to the lake this many input rows at a time (one snapshot naming its rows): few
# commits and files (a commit's CPU grows with the table's snapshots: bench/commit_history.py). Runs recorded when
# each 65,536-row chunk was one commit have these boundaries, so a rerun with the same id matches them. Reading
# 65,536-row chunks instead held a 1 M-row recorded run at 1.13-1.24 GB RSS; 16,384-row chunks: see the README.
RECORDED_COMMIT_ROWS: Final = 65_536


def chunk_rows_for(given: int | None) -> int:
    """The chunk size of a run: the one given, else the default."""
    return given if given is not None else DEFAULT_CHUNK_ROWS


def commit_rows_for(given_chunk_rows: int | None) -> int:
    """Input rows per lake commit of a recorded run: RECORDED_COMMIT_ROWS, or a chunk when --chunk-rows is given.

    A given chunk size is the commit boundary it asked for before chunks and commits were told apart.
    """
    return given_chunk_rows if given_chunk_rows is not None else RECORDED_COMMIT_ROWS


class FileFormat(StrEnum):
    """A batch file's format."""

    CSV = "csv"
    PARQUET = "parquet"
