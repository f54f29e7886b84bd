"""The model bundle: a directory with the booster (UBJSON), a manifest and a category map, and the scorer built from it.

The category map (`category_map.json`, features/picklists.py) is the encoding of CRM picklist values the model was
trained with; a bundle written before maps existed is served with the packaged default bundle's map.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from leadscore.errors import ConfigError, ModelBundleError
from leadscore.features.encode import PLAIN_CATEGORIES
from leadscore.features.picklists import CategoryMap, load_category_map
from leadscore.features.spec import ENGINEERED_NAMES, SCORES, SPEC
from leadscore.model.lean import import_xgboost, xgboost_error
from leadscore.model.predictors import (
    PredictorMode,
    SavedOneDal,
    Selection,
    XGBoostPredictor,
    release_freed_memory,
    saved_predictor,
    select_predictor,
)
from leadscore.model.saved import booster_digest, read_onedal, save_onedal

if TYPE_CHECKING:
    import xgboost as xgb

    from leadscore.model.explain import TreeExplainer

# The standard library's logger, as in predictors.py (the model layer knows nothing of the service's telemetry).
log = logging.getLogger(__name__)

BOOSTER_FILE: Final = "model.ubj"
MANIFEST_FILE: Final = "manifest.json"
CATEGORY_MAP_FILE: Final = "category_map.json"
# Reference bins of the training data's inputs (leadscore.drift.reference); absent in bundles made before them.
REFERENCE_FILE: Final = "reference.json"
FORMAT_VERSION: Final = 1


def default_bundle_dir() -> Path:
    """The bundle shipped inside the package (trained on synthetic data by `leadscore train`)."""
    return Path(str(resources.files("leadscore.model") / "default_bundle"))


def default_category_map() -> CategoryMap:
    """The packaged map of common CRM picklist forms (the default bundle's)."""
    return load_category_map(default_bundle_dir() / CATEGORY_MAP_FILE)


def bundle_category_map(directory: Path, override: Path | None = None) -> CategoryMap:
    """The bundle's category map (the packaged default when it has none), extended by the `override` file."""
    path = directory / CATEGORY_MAP_FILE
    categories = load_category_map(path) if path.is_file() else default_category_map()
    return categories if override is None else categories.merged(load_category_map(override))


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a bundle says about itself; written next to the booster."""

    version: str
    created_at: str
    xgboost_version: str
    feature_spec_fingerprint: str
    feature_names: tuple[str, ...]
    params: dict[str, Any]
    num_boost_round: int
    metrics: dict[str, Any]
    vocabularies: dict[str, list[str]]
    training_data: dict[str, Any]
    format_version: int = FORMAT_VERSION
    # Mean |SHAP| per business field over held-out leads (model/reasons.py); empty in bundles made before it.
    importance: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise as pretty JSON (reviewable in a diff)."""
        data = {
            "format_version": self.format_version,
            "version": self.version,
            "created_at": self.created_at,
            "xgboost_version": self.xgboost_version,
            "feature_spec_fingerprint": self.feature_spec_fingerprint,
            "feature_names": list(self.feature_names),
            "params": self.params,
            "num_boost_round": self.num_boost_round,
            "metrics": self.metrics,
            "vocabularies": self.vocabularies,
            "training_data": self.training_data,
            "importance": self.importance,
        }
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse a manifest; raise ModelBundleError on anything malformed."""
        try:
            data = json.loads(text)
            return cls(
                version=str(data["version"]),
                created_at=str(data["created_at"]),
                xgboost_version=str(data["xgboost_version"]),
                feature_spec_fingerprint=str(data["feature_spec_fingerprint"]),
                feature_names=tuple(data["feature_names"]),
                params=dict(data["params"]),
                num_boost_round=int(data["num_boost_round"]),
                metrics=dict(data["metrics"]),
                vocabularies={k: list(v) for k, v in data["vocabularies"].items()},
                training_data=dict(data["training_data"]),
                format_version=int(data["format_version"]),
                importance={str(k): float(v) for k, v in data.get("importance", {}).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelBundleError(f"manifest is malformed: {exc!r}") from exc


def spec_vocabularies() -> dict[str, list[str]]:
    """The vocabularies of the current feature spec, as recorded in a manifest."""
    return {f.name: list(f.vocabulary) for f in SPEC.inputs if f.vocabulary}


def save_bundle(
    directory: Path,
    booster: xgb.Booster,
    manifest: Manifest,
    categories: CategoryMap,
    reference: dict[str, Any] | None = None,
) -> None:
    """Write booster, oneDAL model, category map, reference bins and manifest (last: a half-written bundle has none).

    The oneDAL model (`leadscore.model.saved`) spares every process that loads the bundle the conversion; where it
    cannot be made the bundle is written without it, and the reason logged.
    """
    directory.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(directory / BOOSTER_FILE))
    unsaved = save_onedal(directory, booster, booster_digest((directory / BOOSTER_FILE).read_bytes()))
    if unsaved is not None:
        log.warning("onedal_model_not_saved reason=%s", unsaved, extra={"reason": unsaved})
    (directory / CATEGORY_MAP_FILE).write_text(categories.to_json(), encoding="utf-8")
    if reference is not None:
        write_reference(directory, reference)
    (directory / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")


def write_reference(directory: Path, reference: dict[str, Any]) -> None:
    """Write a bundle's reference bins (replacing the file in one step: a reader sees the old or the new)."""
    staged = directory / f".{REFERENCE_FILE}.new"
    staged.write_text(json.dumps(reference, indent=1) + "\n", encoding="utf-8")
    staged.replace(directory / REFERENCE_FILE)


def load_reference(directory: Path) -> dict[str, Any] | None:
    """A bundle's reference bins, or None when it has none; ModelBundleError when the file is not JSON."""
    path = directory / REFERENCE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelBundleError(f"{REFERENCE_FILE} is malformed: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelBundleError(f"{REFERENCE_FILE} is not a JSON object")
    return data


class Scorer:
    """A loaded bundle: predicts class probabilities for encoded leads.

    `ready` is true only after a warm-up prediction on this very booster succeeded.
    """

    def __init__(
        self,
        booster: xgb.Booster | None,
        manifest: Manifest,
        nthread: int = 1,
        predictor: PredictorMode = "auto",
        categories: CategoryMap = PLAIN_CATEGORIES,
        warm_explainer: bool = True,
        saved: SavedOneDal | None = None,
        booster_file: Path | None = None,
        walk_small_calls: bool = True,
    ) -> None:
        """`booster` None: read from `booster_file` when first needed (to explain, or where `saved` is unfit).

        `walk_small_calls`: calls of few rows are walked (`leadscore.model.walk`), not scored by oneDAL row by row;
        a process whose calls are all large (batch scoring) leaves it out and never imports numba.
        """
        if booster is None and booster_file is None:
            raise ValueError("a Scorer needs a booster or the file to read it from")
        self._booster = booster
        self._booster_file = booster_file
        self._booster_lock = threading.Lock()
        # One thread per prediction: the server runs one worker per core, and threads would fight them.
        self._nthread = nthread
        if booster is not None:
            booster.set_param({"nthread": nthread})
        self.manifest = manifest
        # How the encoder reads categorical values for this model (CRM forms included).
        self.categories = categories
        self.ready = False
        self._local = threading.local()
        selection: Selection | None = None
        if saved is not None and predictor == "auto":
            selection = saved_predictor(saved, len(ENGINEERED_NAMES), nthread, walk=walk_small_calls)
        if selection is None:
            selection = select_predictor(self.booster, predictor, nthread, walk=walk_small_calls)
        self._predictor = selection.predictor
        self.predictor = selection.predictor.name
        self.predictor_fallback_reason = selection.fallback_reason
        # "bundle": the oneDAL model saved in the bundle; "converted": converted at load; "": XGBoost's predictor.
        self.predictor_model_source = selection.model_source
        # Extracted once, so explaining a request walks flat arrays, not the booster: at warm-up when
        # `warm_explainer`, else at the first explanation. It costs ~110 MB and ~1 s per process, plus numba's
        # import (~60 MB): processes that do not explain (batch scoring; the service unless it explains by default
        # or is asked to build it at start) never pay it.
        self.warm_explainer = warm_explainer
        self._explainer: TreeExplainer | None = None
        self._explainer_lock = threading.Lock()

    @property
    def booster(self) -> xgb.Booster:
        """The XGBoost booster; read from the bundle's file on first use when the scorer was made without it."""
        if self._booster is None:
            with self._booster_lock:
                if self._booster is None:
                    booster = read_booster(self._booster_file)  # type: ignore[arg-type]  # set when booster is None
                    booster.set_param({"nthread": self._nthread})
                    self._booster = booster
        return self._booster

    @property
    def booster_loaded(self) -> bool:
        """Whether the booster (and XGBoost) is loaded: not in a process serving the bundle's saved oneDAL model."""
        return self._booster is not None

    @property
    def explainer(self) -> TreeExplainer:
        """The TreeSHAP explainer of this booster, built (and its compiled kernel loaded) on first use."""
        if self._explainer is None:
            with self._explainer_lock:
                if self._explainer is None:
                    from leadscore.model.explain import TreeExplainer  # noqa: PLC0415 - numba loads only to explain

                    explainer = TreeExplainer.from_booster(self.booster)
                    explainer.warm_up()  # numba's compiled kernel is loaded (or compiled) now
                    self._explainer = explainer
                    release_freed_memory()  # the heap of the booster's JSON dump, parsed to build it
        return self._explainer

    @explainer.setter
    def explainer(self, explainer: TreeExplainer) -> None:
        self._explainer = explainer

    @property
    def explainer_built(self) -> bool:
        """Whether the explainer is built (at warm-up, or by an explanation since)."""
        return self._explainer is not None

    @property
    def version(self) -> str:
        """The model version reported with every score."""
        return self.manifest.version

    def predict_proba(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Probabilities of scores 1..5, shape (n, 5), from the selected predictor (thread-safe)."""
        return self._predictor.predict(matrix)

    def warm_up(self) -> None:
        """Run one prediction on an all-missing row and mark the scorer ready if it gives sane output."""
        check_warm_up(self.predict_proba(_warm_up_row()))
        if self.warm_explainer:
            _ = self.explainer  # built and warmed now, not on the first request
        self.ready = True


def _warm_up_row() -> npt.NDArray[np.float32]:
    return np.full((1, len(ENGINEERED_NAMES)), np.nan, dtype=np.float32)


def check_warm_up(probs: npt.NDArray[np.float32]) -> None:
    """ModelBundleError unless `probs` are one row of finite probabilities of the scores, summing to 1."""
    if probs.shape != (1, len(SCORES)):
        raise ModelBundleError(f"warm-up prediction has shape {probs.shape}, expected (1, {len(SCORES)})")
    if not np.isfinite(probs).all():
        raise ModelBundleError("warm-up prediction returned non-finite probabilities")
    if abs(float(probs.sum()) - 1.0) > 1e-3:
        raise ModelBundleError("warm-up probabilities do not sum to 1")


def _read_bundle(directory: Path, category_map: Path | None) -> tuple[Manifest, CategoryMap, str]:
    """Manifest, category map and the booster file's SHA-256, every file checked; ModelBundleError saying what is wrong.

    The booster itself is read by `read_booster`, only where it is needed.
    """
    manifest_path = directory / MANIFEST_FILE
    booster_path = directory / BOOSTER_FILE
    if not directory.is_dir():
        raise ModelBundleError(f"model bundle directory {directory} does not exist")
    for path in (manifest_path, booster_path):
        if not path.is_file():
            raise ModelBundleError(f"model bundle is missing {path.name} in {directory}")
    manifest = Manifest.from_json(manifest_path.read_text(encoding="utf-8"))
    if manifest.format_version != FORMAT_VERSION:
        raise ModelBundleError(f"bundle format {manifest.format_version} is not supported ({FORMAT_VERSION})")
    fingerprint = SPEC.fingerprint()
    if manifest.feature_spec_fingerprint != fingerprint:
        raise ModelBundleError(
            "model was trained for a different feature spec "
            f"({manifest.feature_spec_fingerprint} != {fingerprint}); retrain it with `leadscore train`"
        )
    if manifest.feature_names != ENGINEERED_NAMES:
        raise ModelBundleError("model feature names do not match the feature spec")
    try:
        categories = bundle_category_map(directory, category_map)
    except ConfigError as exc:
        raise ModelBundleError(exc.message) from exc
    return manifest, categories, booster_digest(booster_path.read_bytes())


def read_booster(path: Path) -> xgb.Booster:
    """The booster in `path`, checked against the feature spec; ModelBundleError saying what is wrong."""
    if not path.is_file():  # removed since the bundle was loaded, when it is read on first use
        raise ModelBundleError(f"model bundle is missing {path.name} in {path.parent}")
    xgboost = import_xgboost()
    booster: xgb.Booster = xgboost.Booster()
    try:
        # From the path: XGBoost aborts the process on an empty buffer, where it raises for an empty file.
        booster.load_model(str(path))
    except xgboost.core.XGBoostError as exc:
        raise ModelBundleError(f"booster {path.name} is corrupt: {exc}") from exc
    if booster.num_features() != len(ENGINEERED_NAMES):
        raise ModelBundleError(f"booster expects {booster.num_features()} inputs, the spec has {len(ENGINEERED_NAMES)}")
    return booster


def load_bundle(
    directory: Path,
    predictor: PredictorMode = "auto",
    category_map: Path | None = None,
    warm_explainer: bool = True,
    walk_small_calls: bool = True,
) -> Scorer:
    """Load and check a bundle; raise ModelBundleError saying exactly what is wrong.

    `warm_explainer` False leaves the explainer to be built at the first explanation (batch scoring, and the
    service unless it explains by default or `explainer_at_start` is set). `walk_small_calls`: see `Scorer`.

    `predictor` "auto" uses the fast path where it builds and agrees with XGBoost; "xgboost" forces XGBoost's.
    `category_map` names a JSON/YAML file of picklist forms that extends the bundle's own map.
    """
    manifest, categories, digest = _read_bundle(directory, category_map)
    booster_path = directory / BOOSTER_FILE
    saved = None
    if predictor == "auto":
        saved, unused = read_onedal(directory, digest)
        if unused is not None:
            log.info("onedal_saved_model_unused reason=%s", unused, extra={"reason": f"saved oneDAL model: {unused}"})
    # With a saved oneDAL model the booster (and XGBoost) is read only if it is needed.
    scorer = Scorer(
        None if saved is not None else read_booster(booster_path),
        manifest,
        predictor=predictor,
        categories=categories,
        warm_explainer=warm_explainer,
        saved=saved,
        booster_file=booster_path,
        walk_small_calls=walk_small_calls,
    )
    try:
        scorer.warm_up()
    except xgboost_error() as exc:
        raise ModelBundleError(f"warm-up prediction failed: {exc}") from exc
    return scorer


def save_bundle_onedal(directory: Path) -> None:
    """Save the oneDAL model of an existing bundle in it (`save_bundle` does it for new ones), or ModelBundleError."""
    _, _, digest = _read_bundle(directory, None)
    unsaved = save_onedal(directory, read_booster(directory / BOOSTER_FILE), digest)
    if unsaved is not None:
        raise ModelBundleError(f"the oneDAL model was not saved: {unsaved}")


def check_bundle(directory: Path, category_map: Path | None = None) -> Manifest:
    """The checks `load_bundle` makes that can refuse a bundle, with no predictor selection.

    For a process that only checks the bundle before its workers load it (`serve`): it builds no fast path and
    logs no predictor choice, which would describe a predictor no request is served with. A bundle whose saved
    oneDAL model is usable (made from this very booster file, by this oneDAL, its bytes intact) needs nothing more:
    the booster was read and checked when the model was saved from it, and each worker checks the model again on
    its own CPU, falling back to the booster if it must. The process then never imports XGBoost (with one worker,
    it is the worker). Otherwise the booster is read and warmed up with XGBoost's own predictor.
    """
    manifest, _, digest = _read_bundle(directory, category_map)
    if read_onedal(directory, digest)[0] is not None:
        return manifest
    booster = read_booster(directory / BOOSTER_FILE)
    try:
        check_warm_up(XGBoostPredictor(booster).predict(_warm_up_row()))
    except xgboost_error() as exc:
        raise ModelBundleError(f"warm-up prediction failed: {exc}") from exc
    return manifest
