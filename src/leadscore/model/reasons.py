"""A score's reasons in business terms: SHAP values of model inputs summed per raw field, and per driver.

Every model input names the raw fields it is derived from in the feature spec; an input derived from several
(pages per session) splits its contribution evenly between them, so per-field and per-driver sums still add up to
the model's margin (log-odds) of the explained score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from leadscore.features.explained import DRIVER_PARTS, ExplainedRows, explain_arrays
from leadscore.features.spec import DRIVERS, ENGINEERED_FEATURES, INPUT_FIELDS, SCORES, InputField, Kind

if TYPE_CHECKING:
    from leadscore.model.explain import TreeExplainer

TOP_K: Final = 3
DECIMALS: Final = 6  # contributions and drivers as answered and as stored
_SCORES: Final = np.asarray(SCORES, dtype=np.int64)
_FIELD_INDEX: Final = {f.name: i for i, f in enumerate(INPUT_FIELDS)}


def _field_weights() -> npt.NDArray[np.float64]:
    """(model inputs, raw fields): the share of each input's contribution that goes to each field."""
    weights = np.zeros((len(ENGINEERED_FEATURES), len(INPUT_FIELDS)), dtype=np.float64)
    for row, feature in enumerate(ENGINEERED_FEATURES):
        for name in feature.fields:
            weights[row, _FIELD_INDEX[name]] = 1.0 / len(feature.fields)
    return weights


FIELD_WEIGHTS: Final = _field_weights()
# (raw fields, drivers): 1 where the field's group adds to the driver.
DRIVER_OF_FIELD: Final = np.asarray([[f.group.driver == d for d in DRIVERS] for f in INPUT_FIELDS], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Explanations:
    """Why each lead of a batch got its score, as arrays (the API and the lake both read them)."""

    fields: npt.NDArray[np.float64]  # (n, raw fields): contribution of each field to the explained score's margin
    drivers: npt.NDArray[np.float64]  # (n, len(DRIVERS)): fit, engagement, custom
    base: npt.NDArray[np.float64]  # (n,): the model's margin of that score for a lead about whom nothing is known
    raising: npt.NDArray[np.int64]  # (n, TOP_K): fields raising the score most, largest first; -1 past the last
    lowering: npt.NDArray[np.int64]  # (n, TOP_K): fields lowering it most, most negative first; -1 past the last
    scores: npt.NDArray[np.int64]  # (n,): the score explained (the predicted one)

    @property
    def size(self) -> int:
        """Number of leads."""
        return int(self.base.shape[0])


def explain(explainer: TreeExplainer, matrix: npt.NDArray[np.float32], classes: npt.ArrayLike) -> Explanations:
    """Explanations of class `classes[i]` (index into the scores) for each encoded lead `matrix[i]`."""
    wanted = np.asarray(classes, dtype=np.int64)
    phi = explainer.contributions(matrix, wanted)
    fields = phi[:, :-1] @ FIELD_WEIGHTS
    order = np.argsort(-fields, axis=1, kind="stable")
    top = order[:, :TOP_K]
    bottom = order[:, ::-1][:, :TOP_K]
    rows = np.arange(fields.shape[0])[:, None]
    return Explanations(
        fields=fields,
        drivers=fields @ DRIVER_OF_FIELD,
        base=phi[:, -1],
        raising=np.where(fields[rows, top] > 0.0, top, -1),
        lowering=np.where(fields[rows, bottom] < 0.0, bottom, -1),
        scores=_SCORES[wanted],
    )


def ranked_rows(explanations: Explanations) -> ExplainedRows:
    """The top factors and driver sums of `explanations`, rounded as the API answers them (the lake stores these)."""
    rows = np.arange(explanations.size)[:, None]
    return ExplainedRows(
        raising=explanations.raising,
        raising_contributions=np.round(explanations.fields[rows, explanations.raising], DECIMALS),
        lowering=explanations.lowering,
        lowering_contributions=np.round(explanations.fields[rows, explanations.lowering], DECIMALS),
        drivers=np.round(np.column_stack([explanations.base, explanations.drivers]), DECIMALS).astype(np.float64),
    )


def explanation_columns(explanations: Explanations | None, columns: Mapping[str, Sequence[Any]]) -> dict[str, pa.Array]:
    """The lake's explain columns for the leads of `columns` (raw fields by name, as for `render`).

    `explanations` None: the leads were not explained (`explained` false, the rest null).
    """
    if explanations is None:
        n = len(next(iter(columns.values()))) if columns else 0
        none = np.full((n, 0), -1, dtype=np.int64)
        empty = ExplainedRows(none, np.zeros((n, 0)), none, np.zeros((n, 0)), np.full((n, len(DRIVER_PARTS)), np.nan))
        return explain_arrays(empty, np.zeros(n, dtype=np.bool_))
    return explain_arrays(ranked_rows(explanations), np.ones(explanations.size, dtype=np.bool_))


def global_importance(
    explainer: TreeExplainer, matrix: npt.NDArray[np.float32], classes: npt.ArrayLike
) -> dict[str, float]:
    """Mean |contribution| of each business field to the predicted score, over the leads of `matrix`, largest first."""
    fields = explain(explainer, matrix, classes).fields
    mean = np.abs(fields).mean(axis=0) if fields.shape[0] else np.zeros(len(INPUT_FIELDS))
    order = np.argsort(-mean, kind="stable")
    return {INPUT_FIELDS[i].name: round(float(mean[i]), 6) for i in order.tolist()}


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".") if abs(value) >= 1 else f"{value:.3g}"


def describe(spec: InputField, value: object) -> str:
    """The field and the lead's value as a marketing user reads them ("Seniority: Executive", "No form fills")."""
    return _describe(spec, spec.display, value)


def _describe(spec: InputField, name: str, value: object) -> str:
    if value is None:
        return f"{name} unknown"
    if spec.kind is Kind.BOOL:
        return f"{name}: {'yes' if value else 'no'}"
    if spec.kind is Kind.INT and value == 0:
        return f"No {name[0].lower()}{name[1:]}"
    if isinstance(value, datetime):
        return f"{name}: {value:%Y-%m-%d}"
    if isinstance(value, int | float):
        unit = f" {spec.unit}" if spec.unit else ""
        return f"{name}: {_number(value)}{unit}"
    return f"{name}: {value}"


# Per raw field, what every factor of it repeats (read once here: properties cost a call per factor).
_FACTOR_FIELDS: Final = tuple((f, f.name, f.group.value, f.display) for f in INPUT_FIELDS)


def render(explanations: Explanations, columns: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Per lead, `reasons` (raising and lowering factors) and `drivers` (sums by driver plus the base), JSON-ready.

    `columns` are the leads' raw fields (field name -> value per lead), in the batch's order. The numbers are those
    of `ranked_rows` (what the lake stores); only the chosen factors are turned into Python objects.
    """
    ranked = ranked_rows(explanations)
    scores = explanations.scores.tolist()
    parts = [dict(zip(DRIVER_PARTS, row, strict=True)) for row in ranked.drivers.tolist()]

    def factors(i: int, chosen: list[int], contributions: list[float], effect: str) -> list[dict[str, Any]]:
        out = []
        # The contribution is to the log-odds of the predicted score, which for a 1 is not "raising the score".
        tail = f" {effect} the chance of a {scores[i]}"
        for f, contribution in zip(chosen, contributions, strict=True):
            if f < 0:  # -1 only past the last factor
                break
            spec, name, group, display = _FACTOR_FIELDS[f]
            value = columns[name][i]
            out.append(
                {
                    "field": name,
                    "group": group,
                    "value": value.isoformat() if isinstance(value, datetime) else value,
                    "contribution": contribution,
                    "text": _describe(spec, display, value) + tail,
                }
            )
        return out

    return [
        {
            "reasons": {
                "raising": factors(i, raising, up, "raises"),
                "lowering": factors(i, lowering, down, "lowers"),
            },
            "drivers": parts[i],
        }
        for i, (raising, up, lowering, down) in enumerate(
            zip(
                ranked.raising.tolist(),
                ranked.raising_contributions.tolist(),
                ranked.lowering.tolist(),
                ranked.lowering_contributions.tolist(),
                strict=True,
            )
        )
    ]
