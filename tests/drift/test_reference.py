"""Reference bins and the indices computed against them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from leadscore.drift.reference import (
    MISSING,
    UNKNOWN,
    bin_index,
    category_label,
    jensen_shannon,
    numeric_reference,
    numeric_values,
    psi,
)
from leadscore.features.encode import PLAIN_CATEGORIES
from leadscore.model.bundle import default_category_map


def test_identical_shares_have_zero_psi_and_distance():
    """The same distribution against itself is no drift by either index."""
    shares = [0.1, 0.2, 0.3, 0.4]
    assert psi(shares, shares) == 0.0
    assert jensen_shannon(shares, shares) == 0.0


def test_psi_of_a_moved_half_is_above_the_alert_level():
    """Half the mass moved from the first two bins to the last two is a significant shift (PSI > 0.25)."""
    assert psi([0.25] * 4, [0.05, 0.05, 0.45, 0.45]) > 0.25
    assert psi([0.25] * 4, [0.24, 0.26, 0.25, 0.25]) < 0.01


def test_empty_bins_keep_psi_finite():
    """A bin empty on one side is floored, so PSI stays a number."""
    assert np.isfinite(psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]))


def test_decile_bins_hold_a_tenth_each_and_the_missing_share_apart():
    """Continuous values fall a tenth per decile bin; missing ones are counted apart."""
    values = np.concatenate([np.arange(1000, dtype=np.float64), [np.nan] * 100])
    reference = numeric_reference(values)
    assert len(reference["edges"]) == 9
    assert reference["shares"] == pytest.approx([1000 / 1100 / 10] * 10, abs=1e-3)
    assert reference["missing"] == pytest.approx(100 / 1100)


def test_tied_counts_keep_distinct_edges_only():
    """A count with few distinct values gets as many bins as it has distinct deciles."""
    reference = numeric_reference(np.array([0.0] * 80 + [1.0] * 15 + [5.0] * 5))
    assert reference["edges"] == [0.0, 1.0]
    assert sum(reference["shares"]) == pytest.approx(1.0)


def test_bins_count_the_edges_at_or_below_a_value():
    """A value on an edge belongs to the bin above it, as the SQL counts it."""
    assert bin_index([1.0, 2.0], np.array([0.5, 1.0, 1.5, 2.0, 9.0])).tolist() == [0, 1, 1, 2, 2]


def test_categories_are_read_through_the_category_map():
    """CRM forms map to their vocabulary value; what the map does not know is unknown, None is missing."""
    assert category_label("geography", "north_america", default_category_map()) == "North America"
    assert category_label("geography", "Atlantis", PLAIN_CATEGORIES) == UNKNOWN
    assert category_label("geography", None, PLAIN_CATEGORIES) == MISSING
    assert category_label("existing_customer", False, PLAIN_CATEGORIES) == "false"


def test_timestamps_are_binned_as_days_before_the_reference_time():
    """The last interaction is measured in days before `as_of`, as the model sees recency."""
    as_of = datetime(2026, 1, 1, tzinfo=UTC)
    days = numeric_values("last_campaign_interaction", [as_of - timedelta(days=3), None], as_of)
    assert days[0] == pytest.approx(3.0)
    assert np.isnan(days[1])
