"""Encoding raw lead columns into the model matrix."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from leadscore.features.encode import LeadArrays, encode, encode_arrays
from leadscore.features.jobtitle import FUNCTION_INDEX, LEVEL_ORDINAL
from leadscore.features.picklists import picklist_key
from leadscore.features.spec import ENGINEERED_NAMES, INPUT_FIELDS, N_MODEL_INPUTS

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
COLUMN = {name: i for i, name in enumerate(ENGINEERED_NAMES)}


def columns(n: int = 1, **values: list[Any]) -> dict[str, list[Any]]:
    """Columns of `n` leads with every input missing except the ones given."""
    out: dict[str, list[Any]] = {f.name: [None] * n for f in INPUT_FIELDS}
    out.update(values)
    return out


def feature(encoded_matrix: np.ndarray, name: str, row: int = 0) -> float:
    """One model input of one lead."""
    return float(encoded_matrix[row, COLUMN[name]])


def test_shape_and_dtype():
    """A batch of n leads becomes an (n, N_MODEL_INPUTS) float32 matrix."""
    encoded = encode(columns(3), 3, NOW)
    assert encoded.matrix.shape == (3, N_MODEL_INPUTS)
    assert encoded.matrix.dtype == np.float32


def test_missing_inputs_are_nan():
    """A lead with no inputs is all NaN (XGBoost's missing), with no warnings and no features used."""
    encoded = encode(columns(2), 2, NOW)
    assert np.isnan(encoded.matrix).all()
    assert encoded.features_used.tolist() == [0, 0]
    assert encoded.warnings == ()


def test_vocabulary_matching_ignores_case_and_whitespace():
    """Padded, upper- and mixed-case spellings of a value encode alike; so do spaced-out multi-word values."""
    encoded = encode(
        columns(
            3,
            company_size=["Enterprise", " enterprise  ", "ENTERPRISE"],
            geography=["North America", "north   AMERICA", "\tNorth America\n"],
        ),
        3,
        NOW,
    )
    assert encoded.matrix[:, COLUMN["company_size_ordinal"]].tolist() == [5.0, 5.0, 5.0]
    assert len(set(encoded.matrix[:, COLUMN["geography_code"]].tolist())) == 1
    assert encoded.warnings == ()
    assert picklist_key("  Mid_Level ") == picklist_key("mid-level") == "mid level"


def test_ordinals_follow_the_vocabulary_order():
    """Company size and seniority are ordinals starting at 1 (Startup=1, Executive=7)."""
    encoded = encode(columns(2, company_size=["Startup", "Large"], seniority_level=["Executive", "Entry"]), 2, NOW)
    assert encoded.matrix[:, COLUMN["company_size_ordinal"]].tolist() == [1.0, 4.0]
    assert encoded.matrix[:, COLUMN["seniority_ordinal"]].tolist() == [7.0, 1.0]


def test_unknown_category_is_nan_with_a_warning():
    """An unknown value is encoded as missing and reported with lead index, field and value."""
    encoded = encode(columns(2, industry=["Technology", "Underwater Basket Weaving"]), 2, NOW)
    assert not math.isnan(feature(encoded.matrix, "industry_code", 0))
    assert math.isnan(feature(encoded.matrix, "industry_code", 1))
    assert len(encoded.warnings) == 1
    warning = encoded.warnings[0]
    assert (warning.lead_index, warning.field, warning.value) == (1, "industry", "Underwater Basket Weaving")
    assert "industry" in warning.message
    # Present though unknown: the caller did send it.
    assert encoded.features_used.tolist() == [1, 1]


def test_job_title_becomes_function_and_level():
    """The free-text title fills the job function and level columns."""
    encoded = encode(columns(job_title=["VP Marketing"]), 1, NOW)
    assert feature(encoded.matrix, "job_function_code") == FUNCTION_INDEX["marketing"]
    assert feature(encoded.matrix, "job_level_ordinal") == LEVEL_ORDINAL["vp"]


def test_days_since_is_relative_to_scoring_time():
    """Days since the last interaction are counted from the scoring time passed in."""
    ten_days_ago = NOW - timedelta(days=10, hours=12)
    encoded = encode(columns(last_campaign_interaction=[ten_days_ago]), 1, NOW)
    assert feature(encoded.matrix, "days_since_last_interaction") == pytest.approx(10.5)
    later = encode(columns(last_campaign_interaction=[ten_days_ago]), 1, NOW + timedelta(days=1))
    assert feature(later.matrix, "days_since_last_interaction") == pytest.approx(11.5)


def test_days_since_is_never_negative():
    """An interaction stamped in the future (clock skew) counts as 0 days ago."""
    encoded = encode(columns(last_campaign_interaction=[NOW + timedelta(hours=3)]), 1, NOW)
    assert feature(encoded.matrix, "days_since_last_interaction") == 0.0


def test_ratios_are_computed():
    """Pages and minutes per session, revenue per employee and log amounts come from the raw fields."""
    encoded = encode(
        columns(
            website_sessions=[4],
            pages_viewed=[10],
            time_on_site=[30.0],
            account_revenue=[1_000_000.0],
            account_employees=[50],
            form_fills=[2],
            content_downloads=[3],
        ),
        1,
        NOW,
    )
    assert feature(encoded.matrix, "pages_per_session") == pytest.approx(2.5)
    assert feature(encoded.matrix, "minutes_per_session") == pytest.approx(7.5)
    assert feature(encoded.matrix, "revenue_per_employee") == pytest.approx(20_000.0)
    assert feature(encoded.matrix, "log_account_revenue") == pytest.approx(math.log1p(1_000_000.0))
    assert feature(encoded.matrix, "log_account_employees") == pytest.approx(math.log1p(50))
    assert feature(encoded.matrix, "conversion_actions") == 5.0


def test_ratios_are_missing_when_the_denominator_is_zero():
    """Zero sessions or zero employees make the ratio missing, never inf or a division error."""
    encoded = encode(
        columns(
            website_sessions=[0], pages_viewed=[3], time_on_site=[1.0], account_revenue=[5.0], account_employees=[0]
        ),
        1,
        NOW,
    )
    for name in ("pages_per_session", "minutes_per_session", "revenue_per_employee"):
        assert math.isnan(feature(encoded.matrix, name)), name
    assert feature(encoded.matrix, "website_sessions") == 0.0


def test_ratios_are_missing_when_a_part_is_missing():
    """A ratio or sum with one part missing is missing."""
    encoded = encode(columns(pages_viewed=[3], form_fills=[1]), 1, NOW)
    assert math.isnan(feature(encoded.matrix, "pages_per_session"))
    assert math.isnan(feature(encoded.matrix, "conversion_actions"))


def test_custom_features_and_flags_pass_through():
    """Custom features land in their own columns; existing_customer is 1/0."""
    encoded = encode(columns(2, custom_feature_7=[0.25, None], existing_customer=[True, False]), 2, NOW)
    assert feature(encoded.matrix, "custom_feature_7", 0) == 0.25
    assert math.isnan(feature(encoded.matrix, "custom_feature_7", 1))
    assert encoded.matrix[:, COLUMN["existing_customer"]].tolist() == [1.0, 0.0]


def test_features_used_counts_present_inputs():
    """features_used counts the raw inputs present per lead, custom features included; False and 0 count."""
    encoded = encode(
        columns(
            3,
            industry=["Retail", None, None],
            existing_customer=[False, None, None],
            website_sessions=[0, None, None],
            custom_feature_1=[1.0, 2.0, None],
            custom_feature_34=[1.0, None, None],
        ),
        3,
        NOW,
    )
    assert encoded.features_used.tolist() == [5, 1, 0]


def test_joined_requests_encode_as_each_request_alone():
    """Requests' columns joined into one set of arrays encode, lead for lead, as each request's own arrays do."""
    parts = [
        (columns(1, industry=["Software"], website_sessions=[3], last_campaign_interaction=[NOW]), 1),
        (columns(2, industry=[None, "Retail"], job_title=["VP Sales", None], form_fills=[1, None]), 2),
        (columns(1, industry=["Software"], geography=["Atlantis"]), 1),
    ]
    joined = encode_arrays(LeadArrays.joined(parts), NOW).matrix
    alone = np.vstack([encode_arrays(LeadArrays.of(part, n), NOW).matrix for part, n in parts])
    np.testing.assert_array_equal(joined, alone)
