"""The progress bar of a batch run on stderr (rich): rows done, rows/s and, when the size is known, the ETA."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeRemainingColumn


class ProgressBar:
    """Rows scored so far; the bar moves in the reader's unit (rows of a Parquet file, bytes of a CSV file).

    Shown only when `enabled` and stderr is a terminal: a log or a pipe gets the summary alone.
    """

    def __init__(self, *, enabled: bool, unit: str, total: int | None) -> None:
        console = Console(stderr=True)
        self._started = time.perf_counter()
        self._progress = Progress(
            TextColumn("scoring"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]:,} rows"),
            TextColumn("{task.fields[rate]:,.0f} rows/s"),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled or not console.is_terminal,
        )
        self._task: TaskID = self._progress.add_task(unit, total=total, rows=0, rate=0.0)

    def update(self, position: int, rows: int) -> None:
        """The reader is at `position` (its unit) and `rows` rows are written."""
        elapsed = time.perf_counter() - self._started
        self._progress.update(self._task, completed=position, rows=rows, rate=rows / elapsed if elapsed else 0.0)

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._progress.stop()
