"""Train a model bundle from a table of leads with an outcome column (1..5)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import xgboost as xgb

from leadscore.errors import LeadscoreError
from leadscore.features.encode import encode
from leadscore.features.spec import ENGINEERED_NAMES, SCORES, SPEC
from leadscore.model.bundle import Manifest, save_bundle, spec_vocabularies
from leadscore.training.evaluate import evaluate
from leadscore.training.synth import AS_OF, OUTCOME, table_to_columns


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters and split; defaults give the shipped model's capacity (200 rounds x 5 classes)."""

    num_boost_round: int = 200
    max_depth: int = 6
    eta: float = 0.1
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    min_child_weight: float = 1.0
    test_fraction: float = 0.2
    seed: int = 7
    nthread: int = 0  # 0 = all cores
    as_of: datetime = AS_OF  # reference time for recency features of historical rows
    version: str | None = None
    extra_params: dict[str, Any] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        """XGBoost parameters."""
        return {
            "objective": "multi:softprob",
            "num_class": len(SCORES),
            "eval_metric": "mlogloss",
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.eta,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "seed": self.seed,
            "nthread": self.nthread,
            **self.extra_params,
        }


def train_bundle(table: pa.Table, out_dir: Path, config: TrainConfig, source: str = "") -> Manifest:
    """Encode the table with the serving encoder, train, evaluate on a held-out split, write the bundle."""
    if OUTCOME not in table.column_names:
        raise LeadscoreError(f"training data needs an `{OUTCOME}` column with scores 1..5")
    column = table.column(OUTCOME)
    if column.null_count or not pa.types.is_integer(column.type):
        # Checked first: nulls or text would otherwise be cast to arbitrary integers.
        raise LeadscoreError(
            f"`{OUTCOME}` must hold integer scores 1..5 for every row "
            f"(found type {column.type}, {column.null_count} missing)"
        )
    outcome = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)
    if outcome.size == 0 or outcome.min() < 1 or outcome.max() > len(SCORES):
        raise LeadscoreError(f"`{OUTCOME}` must hold scores 1..5 for every row")
    n = table.num_rows
    matrix = encode(table_to_columns(table), n, config.as_of).matrix
    order = np.random.default_rng(config.seed).permutation(n)
    n_test = max(1, int(n * config.test_fraction))
    test, train = order[:n_test], order[n_test:]

    dtrain = xgb.DMatrix(matrix[train], label=outcome[train] - 1, feature_names=list(ENGINEERED_NAMES))
    dtest = xgb.DMatrix(matrix[test], label=outcome[test] - 1, feature_names=list(ENGINEERED_NAMES))
    params = config.params()
    booster = xgb.train(params, dtrain, num_boost_round=config.num_boost_round, verbose_eval=False)
    metrics = evaluate(booster.predict(dtest), outcome[test])
    metrics["train_rows"] = int(train.size)

    raw = booster.save_raw("ubj")
    version = config.version or f"{datetime.now(UTC):%Y.%m.%d}-{hashlib.sha256(raw).hexdigest()[:8]}"
    manifest = Manifest(
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        xgboost_version=xgb.__version__,
        feature_spec_fingerprint=SPEC.fingerprint(),
        feature_names=ENGINEERED_NAMES,
        params=params,
        num_boost_round=config.num_boost_round,
        metrics=metrics,
        vocabularies=spec_vocabularies(),
        training_data={
            "source": source,
            "rows": n,
            "as_of": config.as_of.isoformat(),
            "outcome_distribution": {str(s): int((outcome == s).sum()) for s in SCORES},
        },
    )
    save_bundle(out_dir, booster, manifest)
    return manifest
