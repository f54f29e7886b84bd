"""Rescore a whole file: read it in chunks, score them on a process pool, write the results in input order.

Memory stays flat whatever the file size: a bounded number of chunks is in flight (read, being scored, or waiting
to be written in order), and the output, the rejects file and the lake receive each chunk as it is done.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from leadscore.batch.io import Writer, file_format, open_reader, open_writer
from leadscore.batch.options import DEFAULT_CHUNK_ROWS, FileFormat
from leadscore.batch.progress import ProgressBar
from leadscore.batch.record import Recorder, check_run_id, new_run_id
from leadscore.batch.work import Done, Task, load_model, run_task, score_chunk, start_worker
from leadscore.features.spec import SCORES

if TYPE_CHECKING:
    from leadscore.config import Settings

# Chunks in flight per worker: one being scored, one read ahead (more only costs memory).
_IN_FLIGHT_PER_WORKER: Final = 2
_REJECTS_SCHEMA: Final = pa.schema(
    [("row", pa.int64()), ("lead_id", pa.string()), ("field", pa.string()), ("message", pa.string())]
)


@dataclass(frozen=True, slots=True)
class Summary:
    """What a batch run did."""

    input: str
    output: str
    rejects: str
    rows: int
    scored: int
    rejected: int
    scores: dict[int, int]  # leads per score 1..5
    seconds: float
    workers: int
    model_version: str | None
    as_of: str
    run_id: str | None = None  # set when the run was recorded in the lake
    recorded_rows: int = 0
    already_recorded_rows: int = 0  # rows of this run id that an earlier run had recorded (not added again)
    input_format: str = ""

    @property
    def rows_per_second(self) -> float:
        """Input rows per second of the whole run."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values."""
        values = asdict(self)
        values["scores"] = {str(k): v for k, v in self.scores.items()}
        values["rows_per_second"] = round(self.rows_per_second, 1)
        values["seconds"] = round(self.seconds, 3)
        return values

    def text(self) -> str:
        """The summary as a few lines for people."""
        lines = [
            f"scored {self.scored:,} of {self.rows:,} rows in {self.seconds:.1f} s "
            f"({self.rows_per_second:,.0f} rows/s, {self.workers} worker(s), model {self.model_version})",
            f"rejected {self.rejected:,}" + (f": see {self.rejects}" if self.rejected else ""),
        ]
        if self.scored:
            shares = "  ".join(f"{s}: {n:,} ({100 * n / self.scored:.1f}%)" for s, n in self.scores.items())
            lines.append(f"scores  {shares}")
        if self.run_id is not None:
            again = f", {self.already_recorded_rows:,} already recorded" if self.already_recorded_rows else ""
            lines.append(f"run_id {self.run_id}: {self.recorded_rows:,} rows recorded in the lake{again}")
        return "\n".join(lines)


def default_rejects(output: str) -> str:
    """Where the rejects go by default: beside the output, `<out>.rejects.csv`."""
    return f"{output}.rejects.csv"


def _rejects_of(scored: pa.Table) -> pa.Table:
    refused = scored.filter(pc.is_valid(scored["error_field"]))
    return pa.Table.from_arrays(
        [
            pc.add(refused["row"], pa.scalar(1, pa.int64())),  # 1-based data row of the input
            refused["lead_id"],
            refused["error_field"],
            refused["error_message"],
        ],
        schema=_REJECTS_SCHEMA,
    )


@dataclass
class _Tally:
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    scores: dict[int, int] = field(default_factory=lambda: dict.fromkeys(SCORES, 0))
    model_version: str | None = None

    def add(self, scored: pa.Table) -> None:
        self.rows += scored.num_rows
        valid = scored["score"].drop_null()
        self.scored += len(valid)
        self.rejected += scored.num_rows - len(valid)
        for item in pc.value_counts(valid).to_pylist():
            self.scores[int(item["values"])] += int(item["counts"])
        if self.model_version is None and scored.num_rows:
            self.model_version = scored["model_version"][0].as_py()


@contextmanager
def _scorer(workers: int, bundle: Path | None) -> Iterator[Callable[[Task], Future[Done]]]:
    """Submit chunks to `workers` processes (each loads the bundle once); one worker scores in this process."""
    if workers == 1:
        model = load_model(bundle)

        def here(task: Task) -> Future[Done]:
            future: Future[Done] = Future()
            future.set_result(score_chunk(task, model))
            return future

        yield here
        return
    # spawn: a fork of a process whose Arrow and OpenMP threads are running may deadlock in the child.
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=start_worker,
        initargs=(bundle,),
    )
    try:
        yield lambda task: pool.submit(run_task, task)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _LazyWriter:
    """The output file, opened with the schema of the first scored chunk.

    The schema is the core's (`leadscore.columnar.output_schema`), but importing the core would load the model
    stack into this process, which only reads and writes when a pool scores; an empty input asks the core.
    """

    def __init__(self, path: str, fmt: FileFormat) -> None:
        self._path, self._format = path, fmt
        self._writer: Writer | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = open_writer(self._path, self._format, table.schema)
        self._writer.write(table)

    def close(self, explain: bool) -> None:
        if self._writer is None:
            from leadscore.columnar import output_schema  # noqa: PLC0415 - see the class docstring

            self._writer = open_writer(self._path, self._format, output_schema(explain))
        self._writer.close()


def score_file(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    input_format: FileFormat | None = None,
    output_format: FileFormat | None = None,
    rejects: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    as_of: datetime | None = None,
    explain: bool = False,
    bundle: Path | None = None,
    record: bool = False,
    run_id: str | None = None,
    settings: Settings | None = None,
    progress: bool = False,
) -> Summary:
    """Score every lead of `input` (CSV or Parquet, local or s3://) into `output`, rejects into `rejects`.

    `as_of`: the time recency features are measured from (default: now, the same for every row).
    `record`: write the predictions to the lake as a batch run (`run_id`: the run's id; the same id again adds
    nothing already recorded). `settings`: where the lake is (default: the LEADSCORE_* environment).
    """
    started = time.perf_counter()
    source, target = os.fspath(input), os.fspath(output)
    rejects_path = os.fspath(rejects) if rejects is not None else default_rejects(target)
    in_format = file_format(source, input_format)
    out_format = file_format(target, output_format)
    workers = workers or os.cpu_count() or 1
    moment = as_of or datetime.now(UTC)
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    recorder = None
    environment = ""
    if record:
        from leadscore.config import load_settings  # noqa: PLC0415 - only a recorded run needs the settings

        settings = settings or load_settings()
        run_id = check_run_id(run_id) if run_id is not None else new_run_id(moment)
        environment = settings.env.value
        recorder = Recorder(settings.lake_table_config(), run_id)
        recorder.open()  # before any scoring: an unreachable lake fails the run at once
    reader = open_reader(source, in_format, chunk_rows)
    if reader.unit == "rows" and reader.total is not None:
        # No more workers than chunks: a small file is scored here, without starting (and loading) a pool.
        workers = max(1, min(workers, math.ceil(reader.total / chunk_rows)))
    tally = _Tally()
    writer = _LazyWriter(target, out_format)
    rejects_writer = open_writer(rejects_path, FileFormat.CSV, _REJECTS_SCHEMA)
    bar = ProgressBar(enabled=progress, unit=reader.unit, total=reader.total)
    try:
        with bar, _scorer(workers, bundle) as submit:
            pending: deque[tuple[Future[Done], int]] = deque()

            def finish() -> None:
                future, position = pending.popleft()
                done = future.result()
                writer.write(done.scored)
                rejects_writer.write(_rejects_of(done.scored))
                tally.add(done.scored)
                if recorder is not None and done.lake is not None:
                    recorder.add(done.start, done.start + done.scored.num_rows, done.lake)
                bar.update(position, tally.rows)

            for chunk in reader.chunks():
                task = Task(
                    chunk.start, chunk.batch, moment, explain, run_id if record else None, environment, chunk.part
                )
                pending.append((submit(task), chunk.progress))
                while len(pending) >= workers * _IN_FLIGHT_PER_WORKER:
                    finish()
            while pending:
                finish()
    finally:
        writer.close(explain)
        rejects_writer.close()
    return Summary(
        input=source,
        output=target,
        rejects=rejects_path,
        rows=tally.rows,
        scored=tally.scored,
        rejected=tally.rejected,
        scores=tally.scores,
        seconds=time.perf_counter() - started,
        workers=workers,
        model_version=tally.model_version,
        as_of=moment.isoformat(),
        run_id=run_id if record else None,
        recorded_rows=recorder.rows if recorder is not None else 0,
        already_recorded_rows=recorder.skipped_rows if recorder is not None else 0,
        input_format=in_format.value,
    )
