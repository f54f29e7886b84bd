"""The explain columns as Arrow arrays: a lead not explained is null, an explained lead with no factor is empty."""

from __future__ import annotations

import numpy as np

from leadscore.features.explained import DRIVER_PARTS, EXPLAIN_COLUMNS, ExplainedRows, explain_arrays, explained_rows


def _rows(raising: list[list[int]]) -> ExplainedRows:
    index = np.asarray(raising, dtype=np.int64)
    values = np.where(index >= 0, 0.5, 0.0)
    return ExplainedRows(index, values, np.full_like(index, -1), values, np.ones((len(raising), len(DRIVER_PARTS))))


def test_an_explained_lead_without_factors_has_empty_lists_and_one_not_explained_has_nulls():
    """Empty lists say "nothing raised it"; null says "not explained"."""
    rows, explained = explained_rows([_rows([[0, 2, -1], [-1, -1, -1]]), None], [2, 1])
    arrays = explain_arrays(rows, explained)
    assert [c.name for c in EXPLAIN_COLUMNS] == list(arrays)
    assert arrays["explained"].to_pylist() == [True, True, False]
    assert arrays["reason_raising_fields"].to_pylist() == [["company_size", "job_title"], [], None]
    assert arrays["reason_raising_contributions"].to_pylist() == [[0.5, 0.5], [], None]
    assert arrays["reason_lowering_fields"].to_pylist() == [[], [], None]
    assert arrays["driver_base"].to_pylist() == [1.0, 1.0, None]
