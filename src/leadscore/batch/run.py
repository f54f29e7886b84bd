"""Rescore a whole file: read it in chunks, score them in threads of this process, write them in input order.

One process: a reader thread reads chunks ahead, scoring threads (one per core) score them (the predictor and
most of the core's kernels release the GIL), and the calling thread writes them in input order. The model loads
once, in its own thread, while the first chunks are read. Against a pool of processes (each loading the model,
chunks pickled between them) this costs less CPU and less memory, as `bench/batch.py` measures.

Memory stays flat whatever the file size: a bounded number of chunks is in flight (read ahead, being scored, or
waiting to be written in order), and the output, the rejects file and the lake receive each chunk as it is done.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from leadscore.batch.io import Chunk, Reader, Writer, file_format, open_reader, open_writer, remove_partial
from leadscore.batch.options import FileFormat, chunk_rows_for, commit_rows_for
from leadscore.batch.progress import ProgressBar
from leadscore.batch.work import Done, Task, load_model, score_chunk
from leadscore.features.spec import SCORES

if TYPE_CHECKING:
    from leadscore.batch.record import Recorder
    from leadscore.columnar import ModelBundle
    from leadscore.config import Settings

# Chunks submitted and not yet written: one per scoring thread and one more (done, or waiting for a thread);
# one more read ahead of them. Enough to keep the cores busy while a chunk is written (writing is fast) and to
# read ahead while the model loads; more only costs memory (a chunk of input columns is tens of MB).
_IN_FLIGHT_EXTRA: Final = 1
_READ_AHEAD: Final = 1
# A run shorter than this says no rows/s: its rate would measure start-up (loading the model), not scoring.
_RATE_FROM_ROWS: Final = 10_000
_REJECTS_SCHEMA: Final = pa.schema(
    [
        ("row", pa.int64()),
        ("data_row", pa.int64()),
        ("lead_id", pa.string()),
        ("field", pa.string()),
        ("message", pa.string()),
    ]
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
    workers: int  # scoring threads
    model_version: str | None
    as_of: str
    run_id: str | None = None  # set when the run was recorded in the lake
    recorded_rows: int = 0
    already_recorded_rows: int = 0  # rows of this run id that an earlier run had recorded (not added again)
    input_format: str = ""
    # What the run made of the input's columns (leadscore.columns): fields it lacks, columns it ignored.
    absent_fields: tuple[str, ...] = ()
    absent_custom_features: int = 0
    ignored_columns: tuple[str, ...] = ()
    column_notes: tuple[str, ...] = ()

    @property
    def rows_per_second(self) -> float:
        """Input rows per second of the whole run."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready values."""
        values = asdict(self)
        for name in ("absent_fields", "ignored_columns", "column_notes"):
            values[name] = list(values[name])
        values["scores"] = {str(k): v for k, v in self.scores.items()}
        values["rows_per_second"] = round(self.rows_per_second, 1)
        values["seconds"] = round(self.seconds, 3)
        return values

    def text(self) -> str:
        """The summary as a few lines for people."""
        rate = f"{self.rows_per_second:,.0f} rows/s, " if self.rows >= _RATE_FROM_ROWS else ""
        lines = [
            f"scored {self.scored:,} of {self.rows:,} rows in {self.seconds:.1f} s "
            f"({rate}{self.workers} scoring thread(s), model {self.model_version})",
            f"rejected {self.rejected:,}" + (f": see {self.rejects}" if self.rejected else ""),
        ]
        if self.scored:
            shares = "  ".join(f"{s}: {n:,} ({100 * n / self.scored:.1f}%)" for s, n in self.scores.items())
            lines.append(f"scores  {shares}")
        lines.extend(self.column_notes)
        if self.run_id is not None:
            again = f", {self.already_recorded_rows:,} already recorded" if self.already_recorded_rows else ""
            lines.append(f"run_id {self.run_id}: {self.recorded_rows:,} rows recorded in the lake{again}")
        return "\n".join(lines)


def default_rejects(output: str) -> str:
    """Where the rejects go by default: beside the output, `<out>.rejects.csv`."""
    return f"{output}.rejects.csv"


def _rejects_of(scored: pa.Table) -> pa.Table:
    """The refused rows: `row` is the output's (0-based, to join the two files on), `data_row` counts from 1."""
    refused = scored.filter(pc.is_valid(scored["error_field"]))
    return pa.Table.from_arrays(
        [
            refused["row"],
            pc.add(refused["row"], pa.scalar(1, pa.int64())),  # as a person counts the data rows
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


class _End:
    """The reader's last item: no more chunks."""


class _Pipeline:
    """Chunks read ahead in a reader thread, scored by `threads` threads, handed back in input order.

    The model loads in its own thread as the pipeline starts: the first chunks are read meanwhile (reading and
    decompressing Parquet release the GIL), and scoring threads wait for it.
    """

    def __init__(self, reader: Reader, threads: int, bundle: Path | None) -> None:
        self._reader = reader
        self._threads = threads
        self._stop = threading.Event()
        self._chunks: queue.Queue[Chunk | _End | BaseException] = queue.Queue(_READ_AHEAD)
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="leadscore-load")
        self._model: Future[ModelBundle] = self._loader.submit(load_model, bundle)
        self._scoring = ThreadPoolExecutor(threads, thread_name_prefix="leadscore-score")
        self._reading = threading.Thread(target=self._read, name="leadscore-read", daemon=True)
        self._reading.start()

    def _put(self, item: Chunk | _End | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._chunks.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def _read(self) -> None:
        try:
            for chunk in self._reader.chunks():
                if not self._put(chunk):
                    return
            self._put(_End())
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which raises it
            self._put(exc)

    def _score(self, task: Task) -> Done:
        return score_chunk(task, self._model.result())

    def results(self, task_of: Callable[[Chunk], Task]) -> Iterator[tuple[Done, int]]:
        """Every chunk scored, in input order, with the reader's position after it."""
        pending: deque[tuple[Future[Done], int]] = deque()
        while True:
            item = self._chunks.get()
            if isinstance(item, _End):
                break
            if isinstance(item, BaseException):
                raise item
            pending.append((self._scoring.submit(self._score, task_of(item)), item.progress))
            while len(pending) > self._threads + _IN_FLIGHT_EXTRA:
                future, position = pending.popleft()
                yield future.result(), position
        while pending:
            future, position = pending.popleft()
            yield future.result(), position

    def close(self) -> None:
        """Stop reading, drop the chunks not yet scored, wait for the chunks being scored (a second at most)."""
        self._stop.set()
        self._scoring.shutdown(wait=True, cancel_futures=True)
        self._loader.shutdown(wait=True)
        self._reading.join()


class _LazyWriter:
    """An output file, opened with the schema of the first scored chunk (or `schema`, when `open` is called).

    The output's schema is the core's (`leadscore.columnar.output_schema`); importing the core here, before the run
    starts, would hold up reading ahead while the model stack is imported (in the loader thread); an empty input
    asks it. The rejects file has a schema of its own, and is opened first thing in the run (an unwritable path
    fails the run before any scoring), inside the run's `try`, so that an interrupt as it opens deletes it too.
    """

    def __init__(self, path: str, fmt: FileFormat, schema: pa.Schema | None = None) -> None:
        self._path, self._format, self._schema = path, fmt, schema
        self._writer: Writer | None = None

    def open(self) -> None:
        """Open the file now, with the schema given (`ValueError` without one)."""
        if self._schema is None:
            raise ValueError("no schema to open the file with")
        self._writer = self._writer or self._open(self._schema)

    def write(self, table: pa.Table) -> None:
        writer = self._writer or self._open(table.schema)
        writer.write(table)

    def _open(self, schema: pa.Schema) -> Writer:
        if self._schema is not None:  # the rejects file (CSV): no dictionaries, nothing to import
            self._writer = open_writer(self._path, self._format, schema)
            return self._writer
        from leadscore.columnar import dictionary_columns  # noqa: PLC0415 - see the class docstring

        self._writer = open_writer(self._path, self._format, schema, dictionary_columns(schema))
        return self._writer

    def close(self, explain: bool) -> None:
        from leadscore.columnar import output_schema  # noqa: PLC0415 - see the class docstring

        (self._writer or self._open(self._schema or output_schema(explain))).close()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
        else:  # never opened, or interrupted while opening: its partial file may exist all the same
            remove_partial(self._path)


def _recorder(
    settings: Settings | None, run_id: str | None, moment: datetime, chunk_rows: int | None
) -> tuple[Recorder, str, str]:
    """The run's recorder, opened (an unreachable lake fails the run before any scoring), its id and environment."""
    from leadscore.batch.record import Recorder, check_run_id, new_run_id  # noqa: PLC0415 - pyiceberg
    from leadscore.config import load_settings  # noqa: PLC0415 - only a recorded run needs the settings

    settings = settings or load_settings()
    run_id = check_run_id(run_id) if run_id is not None else new_run_id(moment)
    recorder = Recorder(settings.lake_table_config(), run_id, commit_rows_for(chunk_rows))
    recorder.open()
    return recorder, run_id, settings.env.value


def score_file(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    input_format: FileFormat | None = None,
    output_format: FileFormat | None = None,
    rejects: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    chunk_rows: int | None = None,
    as_of: datetime | None = None,
    explain: bool = False,
    bundle: Path | None = None,
    record: bool = False,
    run_id: str | None = None,
    settings: Settings | None = None,
    progress: bool = False,
    columns: Mapping[str, str] | None = None,
    encoding: str | None = None,
) -> Summary:
    """Score every lead of `input` (CSV or Parquet, local or s3://) into `output`, rejects into `rejects`.

    `as_of`: the time recency features are measured from (default: now, the same for every row).
    `record`: write the predictions to the lake as a batch run (`run_id`: the run's id; the same id again adds
    nothing already recorded). `settings`: where the lake is (default: the LEADSCORE_* environment).
    `chunk_rows`: rows read and scored at a time (default `DEFAULT_CHUNK_ROWS`); a recorded run commits a chunk at
    a time when it is given, else `RECORDED_COMMIT_ROWS` input rows at a time.
    `columns`: input columns read as lead fields ({"Company Size": "company_size"}); the others are read by their
    names. A file with no lead field among its columns is refused (ColumnError) before anything is written.
    `encoding`: a CSV input's character encoding (default UTF-8), e.g. "cp1252" for a CSV Excel saved on Windows.
    """
    started = time.perf_counter()
    source, target = os.fspath(input), os.fspath(output)
    rejects_path = os.fspath(rejects) if rejects is not None else default_rejects(target)
    in_format = file_format(source, input_format)
    out_format = file_format(target, output_format)
    workers = workers or os.cpu_count() or 1
    moment = as_of or datetime.now(UTC)
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    chunk = chunk_rows_for(chunk_rows)
    reader = open_reader(source, in_format, chunk, columns, encoding)
    recorder, run_id, environment = _recorder(settings, run_id, moment, chunk_rows) if record else (None, None, "")
    if reader.unit == "rows" and reader.total is not None:
        # No more threads than chunks.
        workers = max(1, min(workers, math.ceil(reader.total / chunk)))
    tally = _Tally()
    writer = _LazyWriter(target, out_format)
    rejects_writer = _LazyWriter(rejects_path, FileFormat.CSV, _REJECTS_SCHEMA)
    bar = ProgressBar(enabled=progress, unit=reader.unit, total=reader.total)
    recorded_run = run_id if record else None

    def task_of(chunk: Chunk) -> Task:
        return Task(chunk.start, chunk.rows, moment, explain, recorded_run, environment)

    finished = False
    try:
        rejects_writer.open()
        with bar:
            pipeline = _Pipeline(reader, workers, bundle)
            try:
                for done, position in pipeline.results(task_of):
                    writer.write(done.scored)
                    rejects_writer.write(_rejects_of(done.scored))
                    tally.add(done.scored)
                    if recorder is not None and done.lake is not None:
                        recorder.add(done.start, done.start + done.scored.num_rows, done.lake)
                    bar.update(position, tally.rows)
                if recorder is not None:
                    recorder.finish()  # the last chunks' commit
            finally:
                pipeline.close()
        writer.close(explain)
        rejects_writer.close(explain)
        finished = True
    finally:
        if not finished:  # failed or interrupted: no output file under its name
            writer.abort()
            rejects_writer.abort()
            if recorder is not None:
                recorder.discard()  # rows not yet committed: their data files go
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
        absent_fields=reader.plan.absent,
        absent_custom_features=reader.plan.absent_custom,
        ignored_columns=reader.plan.ignored,
        column_notes=tuple(reader.plan.notes()),
    )
