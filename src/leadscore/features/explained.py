"""The explain columns of a scored lead (reasons and drivers), declared once and built as Arrow arrays.

The lake's schema appends them (`leadscore.lake.schema`), the lake builds them from its spool rows, and batch
scoring builds them from its explanations (`leadscore.model.reasons.explanation_columns`): one declaration and one
builder, below the layers that use it. A factor is a raw input field, named as in the feature spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from leadscore.features.spec import DRIVERS, INPUT_FIELDS


@cache
def _field_names() -> pa.Array:
    # Built on first use, not on import: a conversion at import time would load pandas where it is installed
    # before a process can leave it out (`leadscore.runtime.leave_out_pandas`).
    return pa.array([f.name for f in INPUT_FIELDS], pa.string())


# The sums by driver, the model's base value first (together they add up to the explained score's log-odds).
DRIVER_PARTS: Final = ("base", *DRIVERS)


@dataclass(frozen=True, slots=True)
class ExplainColumn:
    """One explain column: its name, Arrow type and what it holds."""

    name: str
    arrow: pa.DataType
    description: str


EXPLAIN_COLUMNS: Final[tuple[ExplainColumn, ...]] = (
    ExplainColumn("explained", pa.bool_(), "True when the reasons and drivers were computed with the score."),
    ExplainColumn(
        "reason_raising_fields",
        pa.list_(pa.string()),
        "Raw fields raising the chance of the score most, largest first (null when not explained).",
    ),
    ExplainColumn(
        "reason_raising_contributions",
        pa.list_(pa.float64()),
        "Their contributions to the log-odds of the score, in the same order.",
    ),
    ExplainColumn(
        "reason_lowering_fields",
        pa.list_(pa.string()),
        "Raw fields lowering the chance of the score most, most negative first (null when not explained).",
    ),
    ExplainColumn(
        "reason_lowering_contributions",
        pa.list_(pa.float64()),
        "Their contributions to the log-odds of the score, in the same order.",
    ),
    ExplainColumn(
        "driver_base",
        pa.float64(),
        "Log-odds of the score for a lead about whom nothing is known (null when not explained).",
    ),
    *(
        ExplainColumn(
            f"driver_{d}", pa.float64(), f"Sum of the {d} fields' contributions to the log-odds of the score."
        )
        for d in DRIVERS
    ),
)


@dataclass(frozen=True, slots=True)
class ExplainedRows:
    """The explained part of a batch of leads as arrays: top factors by field index, and the driver sums."""

    raising: npt.NDArray[np.int64]  # (n, k): indexes into INPUT_FIELDS, largest contribution first; -1: none
    raising_contributions: npt.NDArray[np.float64]  # (n, k): their contributions (ignored where the index is -1)
    lowering: npt.NDArray[np.int64]  # (n, k): most negative first; -1: none
    lowering_contributions: npt.NDArray[np.float64]  # (n, k)
    drivers: npt.NDArray[np.float64]  # (n, len(DRIVER_PARTS)): base, then each driver

    @property
    def size(self) -> int:
        """Number of leads."""
        return int(self.drivers.shape[0])


def explained_rows(parts: Sequence[ExplainedRows | None], sizes: Sequence[int]) -> tuple[ExplainedRows, np.ndarray]:
    """Several batches' rows as one (a batch not explained: no factors, NaN drivers), and the explained mask."""
    width = max((p.raising.shape[1] for p in parts if p is not None), default=0)

    def pad(array: np.ndarray, fill: float) -> np.ndarray:
        return np.pad(array, ((0, 0), (0, width - array.shape[1])), constant_values=fill)

    def whole(part: ExplainedRows | None, n: int) -> ExplainedRows:
        if part is None:
            none = np.full((n, width), -1, dtype=np.int64)
            zeros = np.zeros((n, width))
            return ExplainedRows(none, zeros, none, zeros, np.full((n, len(DRIVER_PARTS)), np.nan))
        return ExplainedRows(
            pad(part.raising, -1),
            pad(part.raising_contributions, 0.0),
            pad(part.lowering, -1),
            pad(part.lowering_contributions, 0.0),
            part.drivers,
        )

    filled = [whole(p, n) for p, n in zip(parts, sizes, strict=True)]
    mask = np.concatenate([np.full(n, p is not None) for p, n in zip(parts, sizes, strict=True)]).astype(np.bool_)
    return (
        ExplainedRows(
            *(np.concatenate([getattr(f, name) for f in filled]) for name in ExplainedRows.__dataclass_fields__)
        ),
        mask,
    )


def _ranked(
    index: npt.NDArray[np.int64], contributions: npt.NDArray[np.float64], missing: pa.Array
) -> tuple[pa.Array, pa.Array]:
    chosen = index >= 0
    offsets = pa.array(np.concatenate([[0], np.cumsum(chosen.sum(axis=1))]).astype(np.int32))
    # Row-major boolean indexing keeps each row's factors in rank order, rows one after another.
    names = _field_names().take(pa.array(index[chosen]))
    values = pa.array(contributions[chosen], pa.float64())
    return (
        pa.ListArray.from_arrays(offsets, names, mask=missing),
        pa.ListArray.from_arrays(offsets, values, mask=missing),
    )


def explain_arrays(rows: ExplainedRows, explained: npt.NDArray[np.bool_]) -> dict[str, pa.Array]:
    """The explain columns (EXPLAIN_COLUMNS, by name) of `rows`; a row not `explained` holds false and nulls."""
    missing = pa.array(~explained)
    # A lead not explained has no factors: its lists are null, not empty (an explained lead may have none).
    keep = explained[:, None]
    raising_fields, raising_values = _ranked(np.where(keep, rows.raising, -1), rows.raising_contributions, missing)
    lowering_fields, lowering_values = _ranked(np.where(keep, rows.lowering, -1), rows.lowering_contributions, missing)
    arrays: dict[str, pa.Array] = {
        "explained": pa.array(explained, pa.bool_()),
        "reason_raising_fields": raising_fields,
        "reason_raising_contributions": raising_values,
        "reason_lowering_fields": lowering_fields,
        "reason_lowering_contributions": lowering_values,
    }
    for j, part in enumerate(DRIVER_PARTS):
        arrays[f"driver_{part}"] = pa.array(rows.drivers[:, j], pa.float64(), mask=~explained)
    return arrays
