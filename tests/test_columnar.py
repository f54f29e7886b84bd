"""score_table: the API's rules, normalisation, encoder and model on Arrow columns, row for row."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest
from pydantic import ValidationError as PydanticValidationError

from leadscore import columnar
from leadscore.api.decode import parse_leads
from leadscore.api.schemas import CustomFeatures, Lead, parse_score_request
from leadscore.columnar import output_schema, score_table
from leadscore.columns import ColumnError
from leadscore.errors import ValidationFailed
from leadscore.features.spec import CATEGORY_FIELDS, CORE_FIELDS, CUSTOM_FIELDS, MAX_TEXT_LENGTH, SCORES
from leadscore.loadtest.data import synthetic_leads
from leadscore.model.bundle import Scorer
from leadscore.model.reasons import explain, render
from leadscore.scoring import score_columns
from leadscore.training.synth import synthesize

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
# CRM picklist forms the packaged category map knows, and values no map knows.
CRM_FORMS = {
    "company_size": ["11-50", "201-500", "10,001+", "1-10"],
    "seniority_level": ["c_level", "individual_contributor", "vice_president", "mgr"],
    "geography": ["north_america", "EU", "APAC", "LATAM"],
    "industry": ["COMPUTER_SOFTWARE", "banking", "e-commerce", "telecom"],
}
UNKNOWN = "  Unheard-of value "


def realistic_leads(n: int, seed: int) -> list[dict[str, Any]]:
    """Synthetic leads in the API's shape, a third with CRM-style categories and a sixth with unknown ones."""
    leads = synthetic_leads(n, seed=seed)
    rng = np.random.default_rng(seed)
    for lead in leads:
        draw = rng.random()
        for spec in CATEGORY_FIELDS:
            if spec.name not in lead:
                continue
            if draw < 1 / 3:
                forms = CRM_FORMS[spec.name]
                lead[spec.name] = forms[int(rng.integers(len(forms)))]
            elif draw < 0.5:
                lead[spec.name] = UNKNOWN
    return leads


def api_scores(scorer: Scorer, leads: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and confidences the API's scoring function gives, 500-lead requests at a time."""
    scores, confidences = [], []
    for start in range(0, len(leads), 500):
        parsed = parse_leads(orjson.dumps({"leads": leads[start : start + 500]}))
        batch = score_columns(scorer, parsed.columns, parsed.size, AS_OF)
        scores.append(batch.scores)
        confidences.append(batch.confidence)
    return np.concatenate(scores), np.concatenate(confidences)


def api_first_error(lead: dict[str, Any]) -> tuple[str, str]:
    """The field and message of the first error the API reports for a request of this one lead."""
    with pytest.raises(ValidationFailed) as caught:
        parse_score_request(orjson.dumps({"leads": [lead]}))
    first = caught.value.errors[0]
    assert first.field is not None
    return first.field.removeprefix("custom_features."), first.message


@pytest.fixture(scope="module")
def leads() -> list[dict[str, Any]]:
    """4,000 realistic leads, CRM-style and unknown categorical values included."""
    return realistic_leads(4000, seed=21)


def test_scores_equal_the_apis_for_the_same_leads(default_scorer: Scorer, leads: list[dict[str, Any]]) -> None:
    """Every lead gets the API's score and confidence, with its lead_id, in input order."""
    out = score_table(pa.Table.from_pylist(leads), bundle=default_scorer, as_of=AS_OF)
    scores, confidences = api_scores(default_scorer, leads)
    assert out.schema == output_schema(False)
    assert out["row"].to_pylist() == list(range(len(leads)))
    assert out["lead_id"].to_pylist() == [lead["lead_id"] for lead in leads]
    np.testing.assert_array_equal(out["score"].to_numpy(), scores)
    np.testing.assert_array_equal(out["confidence"].to_numpy(), confidences)
    assert out["error_field"].null_count == len(leads)
    assert set(out["model_version"].to_pylist()) == {default_scorer.version}


def test_flat_custom_columns_score_as_the_struct(default_scorer: Scorer) -> None:
    """Custom features as flat columns (a synthetic training table) score as the API scores the same leads."""
    table = synthesize(3000, seed=4)
    out = score_table(table, bundle=default_scorer, as_of=AS_OF)
    scores, confidences = api_scores(default_scorer, synthetic_leads(3000, seed=4))
    np.testing.assert_array_equal(out["score"].to_numpy(), scores)
    np.testing.assert_array_equal(out["confidence"].to_numpy(), confidences)


def test_a_table_with_no_lead_field_is_refused(tiny_scorer: Scorer) -> None:
    """Rows whose columns are all named otherwise are a naming mismatch, not leads to score on nothing."""
    crm = pa.table({"Record ID": ["a"], "Job Title": ["VP Sales"]})
    with pytest.raises(ColumnError, match="Read yours as fields: 'Job Title': 'job_title'"):
        score_table(crm, bundle=tiny_scorer, as_of=AS_OF)
    assert score_table(crm.slice(0, 0), bundle=tiny_scorer, as_of=AS_OF).num_rows == 0


def test_chunks_keep_rows_in_order(
    tiny_scorer: Scorer, leads: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table scored in many chunks (in threads) gives the rows in input order, numbered from 0."""
    table = pa.Table.from_pylist(leads[:1000])
    whole = score_table(table, bundle=tiny_scorer, as_of=AS_OF)
    monkeypatch.setattr(columnar, "CHUNK_ROWS", 97)
    chunked = score_table(table, bundle=tiny_scorer, as_of=AS_OF)
    assert chunked.drop_columns(["scored_at"]).equals(whole.drop_columns(["scored_at"]))


BAD_VALUES: list[tuple[str, object]] = [
    ("website_sessions", -1),
    ("pages_viewed", 2.5),
    ("account_employees", 10**13),
    ("email_engagement_score", 1.5),
    ("time_on_site", -0.1),
    ("industry", "x" * 201),
    ("job_title", "t" * 300),
    ("last_campaign_interaction", "yesterday"),
    ("last_campaign_interaction", "2024-02-30T10:00:00Z"),
    ("last_campaign_interaction", "2024-02-30"),
    ("last_campaign_interaction", "2024-08-20Z"),
    ("existing_customer", "maybe"),
    ("lead_id", "i" * 129),
    ("custom_feature_3", 1e31),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_bad_value_is_rejected_with_the_apis_message(tiny_scorer: Scorer, name: str, value: object) -> None:
    """A value the contract refuses rejects its row (no score) with the API's field and message; others score."""
    bad: dict[str, Any] = {"lead_id": "bad"}
    if name.startswith("custom_feature_"):
        bad["custom_features"] = {name: value}
    else:
        bad[name] = value
    api_lead = copy.deepcopy(bad)
    if name == "existing_customer":
        api_lead[name] = 2  # JSON refuses what a CRM export writes; the API's message for a non-boolean
    table_value = pa.array([None, value])
    table = pa.table({"lead_id": ["good", bad["lead_id"]], "industry": ["Retail", None], name: table_value})
    out = score_table(table, bundle=tiny_scorer, as_of=AS_OF).to_pylist()
    assert out[0]["score"] in SCORES
    assert out[0]["error_field"] is None
    assert out[1]["score"] is None
    assert out[1]["confidence"] is None
    assert (out[1]["error_field"], out[1]["error_message"]) == api_first_error(api_lead)


@pytest.mark.parametrize(
    ("name", "value"), [("time_on_site", math.inf), ("custom_feature_5", -math.inf), ("website_sessions", math.inf)]
)
def test_an_infinite_value_is_rejected_with_the_contracts_message(tiny_scorer: Scorer, name: str, value: float) -> None:
    """An infinity in a float column (JSON cannot carry one; Parquet can) is rejected as the contract rejects it."""
    model = CustomFeatures if name.startswith("custom_feature_") else Lead
    with pytest.raises(PydanticValidationError) as caught:
        model.model_validate({name: value})
    expected = caught.value.errors(include_url=False)[0]["msg"]
    out = score_table(pa.table({name: pa.array([1.0, value])}), bundle=tiny_scorer, as_of=AS_OF).to_pylist()
    assert out[0]["error_field"] is None
    assert (out[1]["score"], out[1]["error_field"], out[1]["error_message"]) == (None, name, expected)


def test_values_on_the_bounds_are_accepted_as_the_api_accepts_them(tiny_scorer: Scorer) -> None:
    """On a bound, whole floats in integer fields, and 200 two-byte characters all score (as in the API)."""
    on_bounds: dict[str, list[Any]] = {
        "email_engagement_score": [0.0, 1.0],
        "website_sessions": [0, 1_000_000_000_000],
        "industry": ["é" * 200, "Retail"],
        "custom_feature_1": [-1e30, 1e30],
    }
    parse_score_request(orjson.dumps({"leads": [
        {k: v[i] for k, v in on_bounds.items() if k in Lead.model_fields}
        | {"custom_features": {"custom_feature_1": on_bounds["custom_feature_1"][i]}}
        for i in range(2)
    ]}))  # fmt: skip
    table = pa.table(on_bounds | {"pages_viewed": pa.array([3.0, 0.0])})
    out = score_table(table, bundle=tiny_scorer, as_of=AS_OF)
    assert out["error_field"].null_count == 2
    assert out["score"].null_count == 0


def test_a_date_alone_scores_as_its_midnight_utc(tiny_scorer: Scorer) -> None:
    """A date alone (a CRM's "last activity date") scores as that day's midnight UTC written in full, as in the API."""
    table = pa.table({"last_campaign_interaction": ["2024-08-20", "2024-08-20T00:00:00Z"]})
    out = score_table(table, bundle=tiny_scorer, as_of=AS_OF).to_pylist()
    assert out[0]["error_field"] is None
    assert (out[0]["score"], out[0]["confidence"]) == (out[1]["score"], out[1]["confidence"])
    api = parse_score_request(orjson.dumps({"leads": [{"last_campaign_interaction": "2024-08-20"}]}))
    assert api.leads[0].last_campaign_interaction == datetime(2024, 8, 20, tzinfo=UTC)


def test_first_error_in_the_apis_order_is_reported(tiny_scorer: Scorer) -> None:
    """A row with several bad fields reports the one the API lists first (custom features before core fields)."""
    lead = {"website_sessions": -1, "custom_features": {"custom_feature_2": 1e31}}
    table = pa.table({"website_sessions": [-1], "custom_feature_2": [1e31]})
    out = score_table(table, bundle=tiny_scorer, as_of=AS_OF).to_pylist()[0]
    assert (out["error_field"], out["error_message"]) == api_first_error(lead)


def test_crm_booleans_and_numeric_text_are_normalised(tiny_scorer: Scorer) -> None:
    """true/false/yes/no/1/0 (any case, spaced) and numbers as text score as the API scores the typed values."""
    texts = pa.table(
        {
            "existing_customer": [" Yes", "no", "TRUE", "false", "1", "0", "", None],
            "website_sessions": ["3", " 12 ", "0", "7.0", "", None, "5", "1e1"],
        }
    )
    typed = pa.table(
        {
            "existing_customer": [True, False, True, False, True, False, None, None],
            "website_sessions": [3, 12, 0, 7, None, None, 5, 10],
        }
    )
    from_text = score_table(texts, bundle=tiny_scorer, as_of=AS_OF)
    from_typed = score_table(typed, bundle=tiny_scorer, as_of=AS_OF)
    assert from_text["error_field"].null_count == texts.num_rows
    assert from_text["score"].equals(from_typed["score"])
    assert from_text["confidence"].equals(from_typed["confidence"])


def test_numeric_text_that_is_no_number_is_rejected(tiny_scorer: Scorer) -> None:
    """A count written as words is rejected with the API's message for text in an integer field."""
    out = score_table(pa.table({"form_fills": ["three"]}), bundle=tiny_scorer, as_of=AS_OF).to_pylist()[0]
    assert (out["error_field"], out["error_message"]) == api_first_error({"form_fills": "three"})


def test_missing_columns_and_nulls_score_as_an_empty_lead(tiny_scorer: Scorer) -> None:
    """Lead columns all null, or only some lead columns, score as the API scores a lead without those fields."""
    columns = {"lead_id": ["a"]} | {f.name: pa.nulls(1) for f in (*CORE_FIELDS, *CUSTOM_FIELDS)}
    nulls = score_table(pa.table(columns), bundle=tiny_scorer, as_of=AS_OF)
    few = score_table(pa.table({"other_column": [1], "form_fills": pa.nulls(1)}), bundle=tiny_scorer, as_of=AS_OF)
    scores, confidences = api_scores(tiny_scorer, [{}])
    for out in (nulls, few):
        assert out["score"].to_pylist() == scores.tolist()
        assert out["confidence"].to_pylist() == confidences.tolist()
    assert few["lead_id"].to_pylist() == [None]


def test_empty_table_gives_an_empty_result_with_the_schema(tiny_scorer: Scorer) -> None:
    """Zero rows in, zero rows out, with the output schema."""
    out = score_table(pa.table({"industry": pa.array([], pa.string())}), bundle=tiny_scorer, explain=True)
    assert out.num_rows == 0
    assert out.schema == output_schema(True)


def test_record_batch_and_dictionary_columns_score_as_a_table(tiny_scorer: Scorer, leads: list[dict[str, Any]]) -> None:
    """A RecordBatch with dictionary-encoded and large-string columns scores as the plain table does."""
    table = pa.Table.from_pylist(leads[:300])
    plain = score_table(table, bundle=tiny_scorer, as_of=AS_OF)
    industry = table["industry"].combine_chunks().dictionary_encode()
    job_title = table["job_title"].cast(pa.large_string()).combine_chunks()
    other = table.set_column(table.schema.get_field_index("industry"), "industry", industry)
    other = other.set_column(other.schema.get_field_index("job_title"), "job_title", job_title)
    batch = other.combine_chunks().to_batches()[0]
    out = score_table(batch, bundle=tiny_scorer, as_of=AS_OF)
    assert out["score"].equals(plain["score"])
    assert out["confidence"].equals(plain["confidence"])


def test_dictionary_text_is_checked_and_encoded_as_plain_text(tiny_scorer: Scorer) -> None:
    """A dictionary column (as Parquet reads it) gives the plain column's output, rejections and messages included.

    Its dictionary may hold values no row uses and a value twice: neither changes a row's score.
    """
    too_long = "x" * (MAX_TEXT_LENGTH + 1)
    titles = ["VP Marketing", too_long, None, "VP Marketing", "Engineer", "Head of Sales"]
    dictionary = pa.array(["VP Marketing", too_long, "Never used", "Engineer", "VP Marketing", "Head of Sales"])
    indices = pa.array([0, 1, None, 4, 3, 5], pa.int32())
    base = {"lead_id": [f"l{i}" for i in range(len(titles))], "form_fills": [1, 2, 3, 4, 5, 6]}
    plain = score_table(pa.table({**base, "job_title": titles}), bundle=tiny_scorer, as_of=AS_OF)
    encoded = pa.DictionaryArray.from_arrays(indices, dictionary)
    assert encoded.to_pylist() == titles
    out = score_table(pa.table({**base, "job_title": encoded}), bundle=tiny_scorer, as_of=AS_OF)
    assert out.drop_columns(["scored_at"]).equals(plain.drop_columns(["scored_at"]))
    assert out["error_field"].to_pylist() == [None, "job_title", None, None, None, None]


TIMESTAMP_FORMS = [
    "2024-08-20T10:30:00Z",
    "2024-08-20T10:30:00+02:00",
    "2024-08-20T10:30:00.123456-0530",
    "2024-08-20 10:30:00",
    "2024-08-20T10:30",
    "2024-08-20t10:30:00z",
]


def test_timestamp_text_reads_as_the_api_reads_it(default_scorer: Scorer) -> None:
    """ISO 8601 text in every form the API takes (offsets, none, a space, lower case) gives the API's scores."""
    leads = [{"last_campaign_interaction": form, "form_fills": 2} for form in TIMESTAMP_FORMS]
    out = score_table(pa.Table.from_pylist(leads), bundle=default_scorer, as_of=AS_OF)
    scores, confidences = api_scores(default_scorer, leads)
    assert out["error_field"].null_count == len(leads)
    np.testing.assert_array_equal(out["confidence"].to_numpy(), confidences)
    np.testing.assert_array_equal(out["score"].to_numpy(), scores)


def test_timestamp_columns_naive_means_utc(default_scorer: Scorer) -> None:
    """A naive timestamp column is read as UTC, an aware one as its instant."""
    naive = pa.table(
        {"last_campaign_interaction": pa.array([datetime(2025, 6, 1, 12, tzinfo=UTC)]).cast(pa.timestamp("us"))}
    )
    aware = pa.table({"last_campaign_interaction": pa.array([datetime(2025, 6, 1, 12, tzinfo=UTC)])})
    text = pa.table({"last_campaign_interaction": ["2025-06-01T12:00:00Z"]})
    results = [score_table(t, bundle=default_scorer, as_of=AS_OF)["confidence"] for t in (naive, aware, text)]
    assert results[0].equals(results[1])
    assert results[1].equals(results[2])


def test_explain_columns_match_the_apis_reasons(default_scorer: Scorer, leads: list[dict[str, Any]]) -> None:
    """explain=True gives each row the API's raising and lowering fields, contributions and drivers."""
    sample = leads[:200]
    out = score_table(pa.Table.from_pylist(sample), bundle=default_scorer, as_of=AS_OF, explain=True)
    assert out.schema == output_schema(True)
    parsed = parse_leads(orjson.dumps({"leads": sample}))
    batch = score_columns(default_scorer, parsed.columns, parsed.size, AS_OF)
    expected = render(explain(default_scorer.explainer, batch.encoded.matrix, batch.scores - 1), parsed.columns)
    for row, api in zip(out.to_pylist(), expected, strict=True):
        assert row["explained"] is True
        assert row["reason_raising_fields"] == [f["field"] for f in api["reasons"]["raising"]]
        assert row["reason_raising_contributions"] == [f["contribution"] for f in api["reasons"]["raising"]]
        assert row["reason_lowering_fields"] == [f["field"] for f in api["reasons"]["lowering"]]
        assert row["reason_lowering_contributions"] == [f["contribution"] for f in api["reasons"]["lowering"]]
        assert {k: row[f"driver_{k}"] for k in api["drivers"]} == api["drivers"]


def test_rejected_rows_are_not_explained(tiny_scorer: Scorer) -> None:
    """A rejected row has explained false and null reasons and drivers."""
    out = score_table(pa.table({"form_fills": [1, -1]}), bundle=tiny_scorer, explain=True).to_pylist()
    assert out[0]["explained"] is True
    assert out[1]["explained"] is False
    assert out[1]["reason_raising_fields"] is None
    assert out[1]["driver_base"] is None


def test_unknown_custom_struct_field_is_refused(tiny_scorer: Scorer) -> None:
    """A custom_features struct with a field the contract does not know is an error naming it."""
    table = pa.table({"custom_features": [{"custom_feature_35": 1.0}]})
    with pytest.raises(ValueError, match="custom_feature_35"):
        score_table(table, bundle=tiny_scorer)


def test_package_exports_score_table() -> None:
    """`leadscore.score_table` is the columnar core's function."""
    import leadscore  # noqa: PLC0415 - the lazy export is what is tested

    assert leadscore.score_table is score_table


def test_bundle_directory_is_loaded_once(tiny_bundle: Path) -> None:
    """A bundle given by its directory is loaded on first use and reused for the next tables."""
    first = columnar.resolve_bundle(tiny_bundle)
    assert columnar.resolve_bundle(str(tiny_bundle)) is first
    out = score_table(pa.table({"form_fills": [1]}), bundle=tiny_bundle)
    assert out["model_version"].to_pylist() == [first.version]
