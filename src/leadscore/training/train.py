"""Train a model bundle from a table of leads with an outcome column (1..5)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import xgboost as xgb

from leadscore.drift.reference import compute_reference
from leadscore.errors import LeadscoreError
from leadscore.features.encode import encode
from leadscore.features.picklists import CategoryMap
from leadscore.features.spec import ENGINEERED_NAMES, SCORES, SPEC
from leadscore.model.bundle import (
    BOOSTER_FILE,
    MANIFEST_FILE,
    Manifest,
    bundle_category_map,
    default_category_map,
    save_bundle,
    spec_vocabularies,
    write_reference,
)
from leadscore.model.explain import TreeExplainer
from leadscore.model.reasons import global_importance
from leadscore.report.html import training_page
from leadscore.training.contract import validate_training_table
from leadscore.training.evaluate import evaluate
from leadscore.training.synth import AS_OF, synthesize

# The training run's report, beside the booster: one HTML file with its charts (leadscore.report.html).
TRAINING_REPORT_FILE = "training_report.html"
# Held-out leads explained for the global importance: enough for stable means, a few seconds of the kernel.
IMPORTANCE_ROWS = 5000


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


Progress = Callable[[str], None]


class _RoundProgress(xgb.callback.TrainingCallback):
    """A line every tenth of the rounds (or every `every_seconds`, whichever comes first) with the time left."""

    def __init__(self, rounds: int, progress: Progress, every_seconds: float = 10.0) -> None:
        super().__init__()
        self.rounds = rounds
        self.progress = progress
        self.every_seconds = every_seconds
        self.step = max(1, rounds // 10)
        self.started = self.last = time.monotonic()

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:  # noqa: ANN401, ARG002 - xgboost's
        """Report the round just done when a tenth of the rounds or `every_seconds` have passed; never stop."""
        done = epoch + 1
        now = time.monotonic()
        if done == self.rounds or done % self.step == 0 or now - self.last >= self.every_seconds:
            self.last = now
            elapsed = now - self.started
            left = elapsed / done * (self.rounds - done)
            self.progress(
                f"round {done}/{self.rounds} ({done * 100 // self.rounds}%), {elapsed:.0f} s, ~{left:.0f} s left"
            )
        return False


def check_output_dir(out_dir: Path, force: bool = False) -> None:
    """Refuse, before any training, an output that is a file, a non-empty directory (unless `force`) or not writable."""
    if out_dir.exists() and not out_dir.is_dir():
        raise LeadscoreError(f"--out {out_dir} is a file, not a bundle directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        what = "a model bundle" if (out_dir / MANIFEST_FILE).is_file() else "a non-empty directory"
        raise LeadscoreError(f"--out {out_dir} is already {what}; pass --force to replace it")
    parent = out_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise LeadscoreError(f"--out {out_dir}: cannot write under {parent}")


def _replace_dir(staged: Path, out_dir: Path) -> None:
    """Put the staged bundle at `out_dir`: a reader sees the old bundle or the new one, never half of one."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
        staged.rename(out_dir)
        shutil.rmtree(old)
    else:
        staged.rename(out_dir)


def train_bundle(
    table: pa.Table,
    out_dir: Path,
    config: TrainConfig,
    source: str = "",
    *,
    force: bool = False,
    allow_missing: bool = False,
    progress: Progress | None = None,
    categories: CategoryMap | None = None,
) -> Manifest:
    """Check the table against the API's contract, train, evaluate on a held-out split, write the bundle.

    The bundle is written beside `out_dir` and moved into place at the end, so a failed run leaves nothing and
    an existing bundle is replaced only with `force`. `categories` (default: the packaged CRM map) encodes the
    categorical values and is written into the bundle, so the model is served with the encoding it learnt.
    """
    say = progress or (lambda _: None)
    check_output_dir(out_dir, force)
    started = time.monotonic()
    data = validate_training_table(table, allow_missing=allow_missing, progress=progress)
    say(f"checked {data.rows} rows in {time.monotonic() - started:.1f} s")
    if data.ignored_columns:
        say(f"ignored columns not in the contract: {', '.join(data.ignored_columns)}")
    if data.missing_columns:
        say(f"training without columns: {', '.join(data.missing_columns)} (every value missing)")
    outcome = data.outcome
    n = data.rows
    categories = categories or default_category_map()
    matrix = encode(data.columns, n, config.as_of, categories=categories).matrix
    order = np.random.default_rng(config.seed).permutation(n)
    n_test = max(1, int(n * config.test_fraction))
    test, train = order[:n_test], order[n_test:]

    dtrain = xgb.DMatrix(matrix[train], label=outcome[train] - 1, feature_names=list(ENGINEERED_NAMES))
    dtest = xgb.DMatrix(matrix[test], label=outcome[test] - 1, feature_names=list(ENGINEERED_NAMES))
    params = config.params()
    say(f"training {config.num_boost_round} rounds x {len(SCORES)} classes on {train.size} rows")
    callbacks = [_RoundProgress(config.num_boost_round, progress)] if progress is not None else None
    # Log loss per round on both splits, for the report's learning curve (XGBoost caches the evals' predictions).
    curves: dict[str, Any] = {}
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=config.num_boost_round,
        evals=[(dtrain, "training"), (dtest, "held_out")],  # XGBoost parses the names: no spaces
        evals_result=curves,
        verbose_eval=False,
        callbacks=callbacks,
    )
    metrics = evaluate(booster.predict(dtest), outcome[test])
    metrics["train_rows"] = int(train.size)
    held_out = matrix[test[:IMPORTANCE_ROWS]]
    say(f"explaining {held_out.shape[0]} held-out rows for the global importance")
    importance = booster_importance(booster, held_out)
    reference = compute_reference(data.columns, n, config.as_of, categories)

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
        importance=importance,
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new-", dir=out_dir.parent))
    try:
        save_bundle(staged, booster, manifest, categories, reference)
        say("writing the training report")
        learning = {name.replace("_", "-") + " rows": list(values["mlogloss"]) for name, values in curves.items()}
        (staged / TRAINING_REPORT_FILE).write_text(training_page(json.loads(manifest.to_json()), learning), "utf-8")
        _replace_dir(staged, out_dir)
    finally:
        if staged.exists():
            shutil.rmtree(staged)
    say(f"wrote bundle {out_dir} in {time.monotonic() - started:.0f} s")
    return manifest


def booster_importance(booster: xgb.Booster, matrix: np.ndarray) -> dict[str, float]:
    """Mean |SHAP| per business field of the predicted score, over the encoded leads of `matrix`."""
    classes = np.asarray(booster.inplace_predict(matrix)).reshape(matrix.shape[0], len(SCORES)).argmax(axis=1)
    return global_importance(TreeExplainer.from_booster(booster), matrix, classes)


def record_importance(directory: Path, rows: int = IMPORTANCE_ROWS, seed: int = 8) -> Manifest:
    """Compute a bundle's global importance over `rows` fresh synthetic leads and write it into its manifest.

    For bundles trained before `train_bundle` recorded it (the held-out split is gone; synthetic leads stand in).
    """
    manifest_path = directory / MANIFEST_FILE
    manifest = Manifest.from_json(manifest_path.read_text(encoding="utf-8"))
    booster = xgb.Booster()
    booster.load_model(str(directory / BOOSTER_FILE))
    table = synthesize(rows, seed=seed)
    columns = validate_training_table(table, allow_missing=True).columns
    matrix = encode(columns, rows, AS_OF, categories=bundle_category_map(directory)).matrix
    updated = replace(manifest, importance=booster_importance(booster, matrix))
    staged = manifest_path.with_name(f".{MANIFEST_FILE}.new-{os.getpid()}")
    staged.write_text(updated.to_json(), encoding="utf-8")
    staged.replace(manifest_path)  # a reader sees the old manifest or the new one
    return updated


def record_reference(directory: Path, table: pa.Table, as_of: datetime = AS_OF) -> dict[str, Any]:
    """Compute a bundle's reference bins from the table it was trained on and write them beside its manifest.

    For bundles trained before `train_bundle` kept them: the booster and the manifest are left as they are.
    """
    data = validate_training_table(table, allow_missing=True)
    reference = compute_reference(data.columns, data.rows, as_of, bundle_category_map(directory))
    write_reference(directory, reference)
    return reference
