"""Lake rows: every column derived from the spec, filled from a scored batch."""

from __future__ import annotations

import dataclasses
import struct
from datetime import UTC, datetime

import numpy as np
import orjson
import pyarrow as pa
import pytest

from leadscore.api.recording import lake_rows
from leadscore.api.schemas import EXAMPLE_LEAD, ScoreRequest, to_columns
from leadscore.features.encode import OTHER_INPUTS
from leadscore.features.explained import EXPLAIN_COLUMNS
from leadscore.features.spec import ENGINEERED_FEATURES, INPUT_FIELDS
from leadscore.lake.records import (
    BLOCK_ROWS,
    RowBlock,
    RowGroup,
    deserialize,
    deserialize_blocks,
    is_test_request,
    segment_rows,
    serialize,
    to_record_batch,
)
from leadscore.lake.schema import ARROW_SCHEMA
from leadscore.lake.spool import frame
from leadscore.model.bundle import Scorer
from leadscore.model.reasons import explain
from leadscore.scoring import score_columns

TEST_PATTERNS = ["prod-verification", "prod-baseline-test", "prod-*", "load-test-*", "smoke-*"]


def _group(scorer: Scorer, leads: list[dict[str, object]], request_id: str = "r-1") -> RowGroup:
    payload = ScoreRequest.model_validate({"leads": leads})
    columns = to_columns(payload.leads)
    batch = score_columns(scorer, columns, len(payload.leads), datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC))
    return lake_rows(
        batch, columns, request_id=request_id, processing_ms=1.5, is_test=False, environment="dev", api_key_id="k1"
    )


@pytest.mark.parametrize(
    ("request_id", "expected"),
    [
        ("prod-verification", True),
        ("prod-baseline-test", True),
        ("prod-anything", True),
        ("load-test-3-1700000000", True),
        ("smoke-1", True),
        ("batch-scoring-001", False),
        ("my-prod-run", False),
    ],
)
def test_test_traffic_is_recognised_by_request_id(request_id: str, expected: bool) -> None:
    """Request ids matching the test patterns (and only those) mark rows as test traffic."""
    assert is_test_request(request_id, TEST_PATTERNS) is expected


def test_record_batch_has_the_lake_schema_and_one_row_per_lead(tiny_scorer: Scorer) -> None:
    """Rows of two requests form one batch in the lake schema, in order, with their own request ids."""
    batch = to_record_batch([_group(tiny_scorer, [EXAMPLE_LEAD, {}]), _group(tiny_scorer, [{}], "r-2")])
    assert batch.schema == ARROW_SCHEMA
    assert batch.num_rows == 3
    assert batch.column("request_id").to_pylist() == ["r-1", "r-1", "r-2"]
    assert batch.column("lead_index").to_pylist() == [0, 1, 0]
    assert batch.column("lead_id").to_pylist() == [None, None, None]


def test_a_lead_without_an_id_is_stored_with_a_null_id(tiny_scorer: Scorer) -> None:
    """The API answers lead_id null for a lead sent without one: the lake stores null, its position apart."""
    row = to_record_batch([_group(tiny_scorer, [{}, {"lead_id": "L1"}])]).to_pylist()
    assert [(r["lead_id"], r["lead_index"]) for r in row] == [(None, 0), ("L1", 1)]


def test_raw_custom_and_engineered_values_are_recorded(tiny_scorer: Scorer) -> None:
    """Raw inputs (custom features flattened), engineered inputs and outputs land in their columns."""
    row = to_record_batch([_group(tiny_scorer, [{**EXAMPLE_LEAD, "lead_id": "L9"}])]).to_pylist()[0]
    assert row["lead_id"] == "L9"
    assert row["raw_company_size"] == "Enterprise"
    assert row["raw_account_employees"] == 500
    assert row["raw_existing_customer"] is False
    assert row["raw_last_campaign_interaction"] == datetime(2024, 8, 20, 10, 30)  # noqa: DTZ001 - UTC, as Iceberg `timestamp`
    assert row["raw_custom_feature_34"] == pytest.approx(1.7)
    assert row["engineered_company_size_ordinal"] == 5
    assert row["engineered_job_level_ordinal"] == 5
    assert row["engineered_pages_per_session"] == pytest.approx(3.0)
    assert row["timestamp"] == datetime(2026, 3, 4, 5, 6, 7, 123456)  # noqa: DTZ001 - UTC wall time
    assert (row["year"], row["month"], row["day"]) == (2026, 3, 4)
    assert row["score"] in {1, 2, 3, 4, 5}
    assert row["confidence"] == pytest.approx(row[f"prob_{row['score']}"])
    assert row["features_used"] == 50
    assert row["api_key_id"] == "k1"
    assert row["environment"] == "dev"


def test_missing_inputs_are_null_not_zero(tiny_scorer: Scorer) -> None:
    """A lead with no inputs has null raw and engineered values, not zeros."""
    row = to_record_batch([_group(tiny_scorer, [{}])]).to_pylist()[0]
    assert row["raw_company_size"] is None
    assert row["raw_website_sessions"] is None
    assert row["engineered_company_size_ordinal"] is None
    assert row["engineered_log_account_revenue"] is None
    assert row["features_used"] == 0


def test_serialized_rows_read_back_unchanged(tiny_scorer: Scorer) -> None:
    """A spool record deserializes to the same rows it was made from."""
    group = _group(tiny_scorer, [EXAMPLE_LEAD])
    assert deserialize(serialize([group])).to_pylist() == to_record_batch([group]).to_pylist()


def test_timestamps_are_stored_as_utc_wall_time(tiny_scorer: Scorer) -> None:
    """A scoring time given in another zone is stored as its UTC wall time, and partitioned by the UTC day."""
    payload = ScoreRequest.model_validate({"leads": [{}]})
    columns = to_columns(payload.leads)
    local = datetime.fromisoformat("2026-03-04T23:30:00-05:00")
    group = lake_rows(
        score_columns(tiny_scorer, columns, 1, local),
        columns,
        request_id="tz",
        processing_ms=1.0,
        is_test=False,
        environment="dev",
        api_key_id=None,
    )
    row = to_record_batch([group]).to_pylist()[0]
    assert row["timestamp"] == datetime(2026, 3, 5, 4, 30)  # noqa: DTZ001 - UTC wall time
    assert (row["year"], row["month"], row["day"]) == (2026, 3, 5)


def test_raw_timestamps_in_another_zone_are_stored_as_utc_wall_time(tiny_scorer: Scorer) -> None:
    """A raw timestamp input sent with an offset is stored as its UTC wall time; one sent without stays as sent."""
    leads = [
        {"last_campaign_interaction": "2026-03-04T23:30:00-05:00"},
        {"last_campaign_interaction": "2026-03-04T23:30:00"},
        {},
    ]
    group = _group(tiny_scorer, leads)
    stored = to_record_batch([group]).column("raw_last_campaign_interaction").to_pylist()
    assert stored == [datetime(2026, 3, 5, 4, 30), datetime(2026, 3, 4, 23, 30), None]  # noqa: DTZ001 - UTC wall time


def test_raw_timestamps_read_back_from_the_spool_as_utc_wall_time(tiny_scorer: Scorer) -> None:
    """Through a spool record, a raw timestamp with an offset, one without and a missing one keep their meaning."""
    leads = [
        {"last_campaign_interaction": "2026-03-04T23:30:00.250-05:00"},
        {"last_campaign_interaction": "2026-03-04T23:30:00"},
        {},
    ]
    stored = deserialize(serialize([_group(tiny_scorer, leads)])).column("raw_last_campaign_interaction")
    expected = [datetime(2026, 3, 5, 4, 30, 0, 250000), datetime(2026, 3, 4, 23, 30), None]  # noqa: DTZ001
    assert stored.to_pylist() == expected


def test_segment_rows_counts_readable_records_only(tmp_path, tiny_scorer: Scorer) -> None:
    """Rows of a segment are counted from record headers; a record this version cannot read counts 0."""
    path = tmp_path / "000000000001.seg"
    good = serialize([_group(tiny_scorer, [{}, {}])])
    path.write_bytes(frame(good) + frame(b"\x05\x00\x00\x00junk!") + frame(good))
    assert segment_rows(path) == 4


def _explained_group(scorer: Scorer, leads: list[dict[str, object]], request_id: str = "r-x") -> RowGroup:
    payload = ScoreRequest.model_validate({"leads": leads})
    columns = to_columns(payload.leads)
    batch = score_columns(scorer, columns, len(payload.leads), datetime(2026, 3, 4, tzinfo=UTC))
    explanations = explain(scorer.explainer, batch.encoded.matrix, batch.scores - 1)
    return lake_rows(
        batch,
        columns,
        request_id=request_id,
        processing_ms=1.0,
        is_test=False,
        environment="dev",
        api_key_id=None,
        explanations=explanations,
    )


def test_explained_and_plain_requests_share_a_batch(tiny_scorer: Scorer) -> None:
    """An explained request's rows carry their reasons and drivers; a plain request's are false and null."""
    explained = _explained_group(tiny_scorer, [EXAMPLE_LEAD, {}])
    rows = to_record_batch([_group(tiny_scorer, [{}]), explained]).to_pylist()
    assert [r["explained"] for r in rows] == [False, True, True]
    assert all(rows[0][c.name] is None for c in EXPLAIN_COLUMNS if c.name != "explained")
    first = explained.explanation
    assert first is not None
    names = [INPUT_FIELDS[i].name for i in first.raising[0] if i >= 0]
    assert rows[1]["reason_raising_fields"] == names
    assert rows[1]["reason_raising_contributions"] == first.raising_contributions[0, : len(names)].tolist()
    assert rows[1]["driver_base"] == first.drivers[0, 0]


def test_explained_rows_read_back_from_the_spool_unchanged(tiny_scorer: Scorer) -> None:
    """A spool record of explained and plain requests deserializes to the same rows."""
    groups = [_explained_group(tiny_scorer, [EXAMPLE_LEAD, {}]), _group(tiny_scorer, [{}])]
    assert deserialize(serialize(groups)).to_pylist() == to_record_batch(groups).to_pylist()


def _version_4_record(groups: list[RowGroup], version: int = 4) -> bytes:
    """A spool record as versions 3 and 4 wrote it: a header entry and a set of arrays per request."""
    metas, buffers = [], []
    for g in groups:
        meta = {
            "request_id": g.request_id,
            "scored_at": g.scored_at,
            "model_version": g.model_version,
            "prediction_ms": g.prediction_ms,
            "processing_ms": g.processing_ms,
            "is_test": g.is_test,
            "environment": g.environment,
            "api_key_id": g.api_key_id,
            "source": g.source,
            "run_id": g.run_id,
            "columns": {name: list(g.columns[name]) for name in (*OTHER_INPUTS, "lead_id")},
        }
        if version == 4:
            meta["explain_k"] = None if g.explanation is None else int(g.explanation.raising.shape[1])
        metas.append(meta)
        arrays = (
            (g.matrix, np.float32),
            (g.probabilities, np.float64),
            (g.scores, np.int64),
            (g.confidence, np.float64),
            (g.features_used, np.int64),
            (g.raw_numeric, np.float64),
        )
        buffers.extend(np.ascontiguousarray(a, dtype=dtype).tobytes() for a, dtype in arrays)
        if version == 4 and g.explanation is not None:
            e = g.explanation
            explained = (e.raising, e.raising_contributions, e.lowering, e.lowering_contributions, e.drivers)
            buffers.extend(np.ascontiguousarray(a).tobytes() for a in explained)
    header = orjson.dumps({"v": version, "groups": metas}, option=orjson.OPT_UTC_Z)
    return struct.pack("<I", len(header)) + header + b"".join(buffers)


def test_a_version_4_record_reads_as_the_rows_it_was_made_from(tiny_scorer: Scorer) -> None:
    """A spool record written before records held one block (version 4) still reads, explained rows and all."""
    groups = [_explained_group(tiny_scorer, [EXAMPLE_LEAD, {}]), _group(tiny_scorer, [{"lead_id": "L2"}], "r-2")]
    assert deserialize(_version_4_record(groups)).to_pylist() == to_record_batch(groups).to_pylist()


def test_a_record_from_before_the_explain_columns_reads_as_not_explained(tiny_scorer: Scorer) -> None:
    """A version 3 spool record (no explain part) still reads: its rows are not explained, their reasons null."""
    group = _group(tiny_scorer, [EXAMPLE_LEAD, {}])
    rows = deserialize(_version_4_record([group], version=3)).to_pylist()
    assert [r["explained"] for r in rows] == [False, False]
    assert [r["reason_lowering_fields"] for r in rows] == [None, None]
    assert [r["score"] for r in rows] == [r["score"] for r in to_record_batch([group]).to_pylist()]


def test_segment_rows_counts_the_rows_of_old_records_too(tmp_path, tiny_scorer: Scorer) -> None:
    """A segment's row count reads version 4 headers as well as current ones."""
    path = tmp_path / "000000000001.seg"
    groups = [_group(tiny_scorer, [{}, {}]), _group(tiny_scorer, [{}], "r-2")]
    path.write_bytes(frame(_version_4_record(groups)) + frame(serialize(groups)))
    assert segment_rows(path) == 6


def test_a_record_reads_as_blocks_cut_between_requests(tiny_scorer: Scorer) -> None:
    """A record of many requests reads as blocks of at most BLOCK_ROWS rows, each request whole, all rows in order."""
    groups = [_group(tiny_scorer, [{"lead_id": f"{r}-{i}"} for i in range(3)], f"r-{r}") for r in range(5)]
    blocks = RowBlock.of(groups).split(7)
    assert [b.sizes.tolist() for b in blocks] == [[3, 3], [3, 3], [3]]
    assert to_record_batch(blocks).to_pylist() == to_record_batch(groups).to_pylist()
    assert all(b.size <= BLOCK_ROWS for b in deserialize_blocks(serialize(groups)))


def test_a_request_bigger_than_a_block_stays_whole(tiny_scorer: Scorer) -> None:
    """A request of more rows than a block holds is its own block, not cut."""
    groups = [_group(tiny_scorer, [{}], "r-1"), _group(tiny_scorer, [{}] * 4, "r-2"), _group(tiny_scorer, [{}], "r-3")]
    assert [b.sizes.tolist() for b in RowBlock.of(groups).split(2)] == [[1], [4], [1]]


def test_an_engineered_value_the_column_cannot_hold_fails_the_conversion(tiny_scorer: Scorer) -> None:
    """An integer input too big for its int32 lake column fails the batch (its records are kept), never wraps."""
    group = _group(tiny_scorer, [{}])
    column = next(j for j, f in enumerate(ENGINEERED_FEATURES) if f.integer)
    matrix = group.matrix.copy()
    matrix[0, column] = 2.0**40
    with pytest.raises(pa.ArrowInvalid):
        to_record_batch([dataclasses.replace(group, matrix=matrix)])
