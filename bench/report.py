"""Report benchmark: `leadscore report`'s queries (judgement and drift) over 1 M predictions in Parquet files.

    uv run python bench/report.py                 # 1,000,000 predictions, one outcome each
    uv run python bench/report.py --rows 200000   # fewer

100,000 synthetic leads are scored by the packaged model and laid out as lake rows (the service's own path:
encode, predict, `to_record_batch`), then repeated under new lead ids and days up to `--rows`, written as Parquet
files of 100,000 rows, and read back by DuckDB as the lake's live files are (a pyarrow dataset). Outcomes: one
per lead, its synthetic outcome, ten days after the score. Times are wall seconds of one run after a warm-up run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from leadscore.api.recording import lake_rows
from leadscore.drift.figures import drift
from leadscore.lake.records import to_record_batch
from leadscore.lake.schema import ARROW_SCHEMA
from leadscore.model.bundle import default_bundle_dir, load_bundle, load_reference
from leadscore.report.html import report_page
from leadscore.report.judge import judge
from leadscore.report.sql import Scope, probability
from leadscore.report.text import report_text
from leadscore.scoring import score_columns
from leadscore.training.synth import AS_OF, synthesize, table_to_columns

BLOCK = 100_000
# Scored at the generator's reference time, so recency is as in training: the bench's leads do not drift.
START = AS_OF


def write_lake(directory: Path, rows: int) -> pa.Table:
    """Write `rows` lake rows as Parquet files under `directory`; return the outcomes (one per lead)."""
    scorer = load_bundle(default_bundle_dir())
    # The packaged model's own training rows (seed 7): another seed draws other scales for the custom features.
    leads = synthesize(BLOCK, seed=7)
    columns = table_to_columns(leads)
    batch = score_columns(scorer, columns, BLOCK, START)
    group = lake_rows(
        batch, columns, request_id="bench", processing_ms=1.0, is_test=False, environment="dev", api_key_id=None
    )
    block = pa.Table.from_batches([to_record_batch([group])])
    outcomes = []
    for k in range((rows + BLOCK - 1) // BLOCK):
        n = min(BLOCK, rows - k * BLOCK)
        ids = pa.array([f"L{k}-{i}" for i in range(n)])
        day = START + timedelta(days=k)
        part = block.slice(0, n)
        part = part.set_column(ARROW_SCHEMA.get_field_index("lead_id"), "lead_id", ids)
        stamps = pa.array(np.full(n, np.datetime64(day.replace(tzinfo=None), "us")))
        part = part.set_column(ARROW_SCHEMA.get_field_index("timestamp"), "timestamp", stamps)
        pq.write_table(part, directory / f"part-{k:03d}.parquet")
        outcomes.append(
            pa.table(
                {
                    "lead_id": ids,
                    "outcome": leads["outcome"].slice(0, n).cast(pa.int32()),
                    "converted": pa.nulls(n, pa.bool_()),
                    "occurred_at": pc.add(stamps, pa.scalar(timedelta(days=10))),
                }
            )
        )
    return pa.concat_tables(outcomes)


def main() -> None:
    """Write the lake, run the report's queries twice, print the second run's times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--print", action="store_true", help="also print the report's text")
    parser.add_argument("--html", type=Path, help="also write the report as HTML here")
    args = parser.parse_args()
    reference = load_reference(default_bundle_dir())
    if reference is None:
        raise SystemExit("the packaged bundle has no reference.json")
    categories = load_bundle(default_bundle_dir()).categories
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        outcomes = write_lake(Path(tmp), args.rows)
        took = time.perf_counter() - started
        print(f"wrote {args.rows:,} predictions and {outcomes.num_rows:,} outcomes in {took:.1f} s")
        scope = Scope(predictions="lead_score_dev", outcomes="lead_outcomes_dev", test_patterns=("load-test-*",))
        for attempt in ("warm-up", "measured"):
            connection = duckdb.connect()
            connection.register("lead_score_dev", ds.dataset(tmp, format="parquet", schema=ARROW_SCHEMA))
            connection.register("lead_outcomes_dev", outcomes)
            t0 = time.perf_counter()
            reports = judge(connection, scope)
            t1 = time.perf_counter()
            figures = drift(connection, scope, reference, categories)
            t2 = time.perf_counter()
            connection.close()
            if attempt == "measured":
                print(f"judgement (join, per score, calibration, AUC): {t1 - t0:.2f} s")
                print(f"drift ({len(figures.inputs)} inputs, {len(figures.days)} days): {t2 - t1:.2f} s")
                print(f"whole report: {t2 - t0:.2f} s")
                print(f"leads judged: {sum(r.leads for r in reports):,}; AUC (score) {reports[0].auc_score:.3f}")
                if args.print:
                    print(report_text(reports, figures, probability(scope)))
                if args.html:
                    args.html.write_text(report_page(reports, figures, probability(scope), "bench/report.py"))


if __name__ == "__main__":
    main()
