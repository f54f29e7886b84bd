"""What a batch run can be asked for, without importing the scoring stack (the CLI's --help stays fast)."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

DEFAULT_CHUNK_ROWS: Final = 65_536


class FileFormat(StrEnum):
    """A batch file's format."""

    CSV = "csv"
    PARQUET = "parquet"
