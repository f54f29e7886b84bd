"""`leadscore train --from-lake`: a challenger trained on the lake's own predictions and the outcomes that followed.

The training set, point in time:
- each lead's **first production score** (test traffic excluded: `is_test` and the test request patterns), with its
  inputs exactly as scored (the lake's `raw_*` columns);
- its label: the **first outcome that occurred after that score** and within the window (default 90 days). An
  outcome dated at or before the score is never used: the model could not have known it. The label is the outcome's
  `outcome` (1..5); an outcome that only says `converted` counts as 5 (converted) or 1 (not converted).
- recency as it was at scoring time: the encoder measures recency from one reference time, so each lead's
  `last_campaign_interaction` is moved by (reference - scored_at), which gives the same days-since as when it was
  scored.

A share of the leads (by a seeded draw) is held out before training; the champion (the bundle the service is
configured with) and the challenger are both scored on exactly those leads and compared: accuracy and macro-F1 on
the label, AUC of converted (ranked by expected score), and the conversion rate per score. The challenger is only
a bundle on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from leadscore.errors import LeadscoreError
from leadscore.features.picklists import load_category_map
from leadscore.features.spec import CORE_FIELDS, CUSTOM_FIELDS, SCORES, Kind
from leadscore.lake.errors import LakeError
from leadscore.lake.records import is_test_request
from leadscore.lake.table import load_table
from leadscore.model.bundle import Manifest, Scorer, default_bundle_dir, default_category_map, load_bundle
from leadscore.outcomes.table import read_outcomes
from leadscore.scoring import score_columns
from leadscore.training.contract import OUTCOME, validate_training_table
from leadscore.training.synth import AS_OF
from leadscore.training.train import Progress, TrainConfig, train_bundle

if TYPE_CHECKING:
    from leadscore.config import Settings

WINDOW_DAYS: Final = 90.0
HOLDOUT_FRACTION: Final = 0.2
MIN_LEADS: Final = 50  # fewer labelled leads than this train nothing worth comparing
CONVERTED_LABELS: Final = {True: SCORES[-1], False: SCORES[0]}
_INPUTS: Final = tuple(f.name for f in (*CORE_FIELDS, *CUSTOM_FIELDS))
_TIMESTAMP_INPUTS: Final = tuple(f.name for f in CORE_FIELDS if f.kind is Kind.TIMESTAMP)
_PREDICTION_COLUMNS: Final = (
    "request_id", "lead_id", "lead_index", "model_version", "timestamp", "score", "is_test",
    *(f"prob_{s}" for s in SCORES), *(f"raw_{name}" for name in _INPUTS),
)  # fmt: skip
# Each lead's first production score, and the first outcome after it within the window (DuckDB over Arrow).
_JOIN_SQL: Final = """
WITH first_score AS (
    SELECT * EXCLUDE (nth) FROM (
        SELECT *, row_number() OVER (PARTITION BY lead_id ORDER BY "timestamp", request_id, lead_index) AS nth
        FROM predictions
    ) WHERE nth = 1
), after_score AS (
    SELECT o.lead_id, o.outcome, o.converted, o.occurred_at,
           row_number() OVER (PARTITION BY o.lead_id ORDER BY o.occurred_at, o.outcome_id) AS nth
    FROM outcomes o JOIN first_score s ON o.lead_id = s.lead_id
    WHERE o.occurred_at > s."timestamp" AND o.occurred_at <= s."timestamp" + to_microseconds($window_us)
)
SELECT s.*, a.outcome AS label_outcome, a.converted AS label_converted, a.occurred_at AS outcome_at
FROM first_score s JOIN after_score a ON a.lead_id = s.lead_id AND a.nth = 1
ORDER BY s.lead_id
"""


@dataclass(frozen=True, slots=True)
class LakeTrainingSet:
    """Labelled leads from the lake: the API's fields as scored (recency moved to `as_of`), label and context."""

    table: pa.Table  # the API's field names, lead_id and `outcome` (the label): what train_bundle takes
    converted: list[bool | None]  # the label outcome's `converted`, per lead
    scored_at: list[datetime]
    as_scored: npt.NDArray[np.float64]  # (n, 5): the probabilities the lake recorded at scoring time
    model_versions: list[str]
    counts: dict[str, int]  # what was read and what was left out, for the report


def _production(predictions: pa.Table, patterns: list[str]) -> pa.Table:
    """Rows of production traffic with a lead id: test traffic (flag or request pattern) left out."""
    request_ids = pc.unique(predictions.column("request_id")).to_pylist()
    test_ids = [r for r in request_ids if r is not None and is_test_request(r, patterns)]
    keep = pc.and_(
        pc.and_(pc.invert(pc.fill_null(predictions.column("is_test"), False)), pc.is_valid(predictions["lead_id"])),
        pc.invert(pc.is_in(predictions.column("request_id"), pa.array(test_ids, pa.string()))),
    )
    return predictions.filter(keep)


def _read_predictions(settings: Settings) -> pa.Table:
    try:
        table = load_table(settings.lake_table_config(), create=False)
    except LakeError as exc:
        raise LeadscoreError(f"no predictions to train from: {exc}") from exc
    present = {f.name for f in table.schema().fields}
    return table.scan(selected_fields=tuple(c for c in _PREDICTION_COLUMNS if c in present)).to_arrow()


def build_training_set(
    settings: Settings, *, as_of: datetime = AS_OF, window_days: float = WINDOW_DAYS
) -> LakeTrainingSet:
    """The point-in-time training set of the lake of `settings` (see the module's docstring)."""
    predictions = _read_predictions(settings)
    production = _production(predictions, settings.test_request_patterns)
    outcomes = read_outcomes(settings)
    connection = duckdb.connect()
    try:
        connection.register("predictions", production)
        connection.register("outcomes", outcomes)
        window_us = int(timedelta(days=window_days) / timedelta(microseconds=1))
        joined = connection.sql(_JOIN_SQL, params={"window_us": window_us}).to_arrow_table()
    finally:
        connection.close()
    production_leads = pc.count_distinct(production.column("lead_id")).as_py()
    labelled_leads = pc.count_distinct(outcomes.column("lead_id")).as_py()
    counts = {
        "predictions": predictions.num_rows,
        "production_predictions": production.num_rows,
        "production_leads": production_leads,
        "leads_with_outcomes": labelled_leads,
        "leads_labelled_after_score": joined.num_rows,
    }
    scored_at = joined.column("timestamp").to_pylist()
    columns: dict[str, Any] = {}
    for name in _INPUTS:
        values = joined.column(f"raw_{name}").to_pylist()
        if name in _TIMESTAMP_INPUTS:
            values = _as_of_scoring(values, scored_at, as_of)
        columns[name] = values
    label = [
        outcome if outcome is not None else CONVERTED_LABELS.get(converted)
        for outcome, converted in zip(
            joined.column("label_outcome").to_pylist(), joined.column("label_converted").to_pylist(), strict=True
        )
    ]
    columns["lead_id"] = joined.column("lead_id").to_pylist()
    columns[OUTCOME] = pa.array(label, pa.int64())
    as_scored = np.column_stack([joined.column(f"prob_{s}").to_numpy(zero_copy_only=False) for s in SCORES])
    return LakeTrainingSet(
        table=pa.table(columns),
        converted=joined.column("label_converted").to_pylist(),
        scored_at=scored_at,
        as_scored=as_scored.reshape(joined.num_rows, len(SCORES)).astype(np.float64),
        model_versions=joined.column("model_version").to_pylist(),
        counts=counts,
    )


def _as_of_scoring(values: list[datetime | None], scored_at: list[datetime], as_of: datetime) -> list[datetime | None]:
    """Timestamps moved by (as_of - scored_at): recency measured from `as_of` equals recency at scoring time."""
    reference = as_of.astimezone(UTC).replace(tzinfo=None)
    return [None if v is None else v + (reference - s) for v, s in zip(values, scored_at, strict=True)]


def comparison_metrics(
    probabilities: npt.NDArray[np.float64], label: npt.NDArray[np.int64], converted: list[bool | None]
) -> dict[str, Any]:
    """Accuracy and macro-F1 on the label, AUC of converted by expected score, and conversion per predicted score."""
    predicted = np.asarray(SCORES)[probabilities.argmax(axis=1)]
    expected = probabilities @ np.asarray(SCORES, dtype=np.float64)
    known = np.array([c is not None for c in converted])
    conv = np.array([bool(c) for c in converted])
    auc = None
    if known.any() and 0 < conv[known].sum() < known.sum():
        auc = round(float(roc_auc_score(conv[known], expected[known])), 5)
    per_score = []
    for score in SCORES:
        mine = predicted == score
        with_outcome = mine & known
        converted_here = int((conv & with_outcome).sum())
        per_score.append(
            {
                "score": score,
                "leads": int(mine.sum()),
                "share": round(float(mine.mean()), 5) if mine.size else 0.0,
                "converted": converted_here,
                "conversion_rate": round(converted_here / int(with_outcome.sum()), 5) if with_outcome.any() else None,
            }
        )
    return {
        "rows": int(label.size),
        "accuracy": round(float(accuracy_score(label, predicted)), 5),
        "macro_f1": round(float(f1_score(label, predicted, labels=list(SCORES), average="macro", zero_division=0)), 5),
        "auc_converted": auc,
        "per_score": per_score,
    }


def _probabilities(scorer: Scorer, table: pa.Table, as_of: datetime) -> npt.NDArray[np.float64]:
    data = validate_training_table(table, allow_missing=True)
    batch = score_columns(scorer, data.columns, data.rows, as_of)
    return np.asarray(batch.probabilities, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class ChallengerReport:
    """What `train --from-lake` did: the data it used and champion vs challenger on the same held-out leads."""

    bundle: str
    version: str
    counts: dict[str, int]
    held_out: int
    champion: dict[str, Any]
    challenger: dict[str, Any]
    as_scored: dict[str, Any]  # the probabilities the lake recorded for those leads, by whichever model scored them

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {
            "bundle": self.bundle,
            "version": self.version,
            "data": {**self.counts, "held_out": self.held_out, "trained_on": self.counts["leads_labelled_after_score"]
                     - self.held_out},
            "champion": self.champion,
            "challenger": self.challenger,
            "as_scored": self.as_scored,
        }  # fmt: skip


def train_from_lake(
    settings: Settings,
    out_dir: Path,
    config: TrainConfig,
    *,
    champion_dir: Path | None = None,
    window_days: float = WINDOW_DAYS,
    holdout_fraction: float = HOLDOUT_FRACTION,
    force: bool = False,
    progress: Progress | None = None,
) -> ChallengerReport:
    """Build the lake's training set, train a challenger at `out_dir`, compare it with the champion on held-out leads.

    The champion is `champion_dir`, else the bundle the service is configured with (LEADSCORE_MODEL_DIR, else the
    packaged one).
    """
    say = progress or (lambda _: None)
    data = build_training_set(settings, as_of=config.as_of, window_days=window_days)
    n = data.table.num_rows
    say(f"lake: {data.counts}")
    if n < MIN_LEADS:
        raise LeadscoreError(
            f"only {n} production leads have an outcome after their score (within {window_days:g} days); "
            f"at least {MIN_LEADS} are needed to train a challenger"
        )
    order = np.random.default_rng(config.seed).permutation(n)
    n_held = max(1, int(n * holdout_fraction))
    held, train = np.sort(order[:n_held]), np.sort(order[n_held:])
    categories = default_category_map()
    if settings.category_map_file is not None:
        categories = categories.merged(load_category_map(settings.category_map_file))
    manifest: Manifest = train_bundle(
        data.table.take(pa.array(train)),
        out_dir,
        config,
        source="lake",
        force=force,
        allow_missing=True,
        progress=progress,
        categories=categories,
    )
    held_table = data.table.take(pa.array(held))
    label = held_table.column(OUTCOME).to_numpy()
    converted = [data.converted[i] for i in held.tolist()]
    # XGBoost's own predictor: the same probabilities, without building (and checking) the serving fast path.
    champion = load_bundle(
        champion_dir or settings.model_dir or default_bundle_dir(),
        predictor="xgboost",
        category_map=settings.category_map_file,
    )
    challenger = load_bundle(out_dir, predictor="xgboost")
    say(f"comparing champion {champion.version} and challenger {challenger.version} on {n_held} held-out leads")
    return ChallengerReport(
        bundle=str(out_dir),
        version=manifest.version,
        counts=data.counts,
        held_out=n_held,
        champion={"version": champion.version, **comparison_metrics(
            _probabilities(champion, held_table, config.as_of), label, converted)},
        challenger={"version": challenger.version, **comparison_metrics(
            _probabilities(challenger, held_table, config.as_of), label, converted)},
        as_scored={"versions": sorted({data.model_versions[i] for i in held.tolist()}),
                   **comparison_metrics(data.as_scored[held], label, converted)},
    )  # fmt: skip
