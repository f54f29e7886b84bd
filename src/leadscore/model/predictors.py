"""The booster's predictors: XGBoost's own, and oneDAL's tree inference where it gives XGBoost's answers.

XGBoost's `inplace_predict` has a large fixed cost per call; oneDAL's gradient-boosted-trees inference, fed
through daal4py's model builders, costs far less for small batches and less at 500 rows (`bench/predictors.py`
measures both; the figures are in `bench/README.md`). The oneDAL model is converted from the booster at load and
checked against `inplace_predict` on inputs made to reach every kind of branch; if it cannot be built or
disagrees, the service keeps XGBoost's predictor and says why. Calls too small for oneDAL's vector blocks are
walked by `leadscore.model.walk` where it builds and passes the same check.
"""

from __future__ import annotations

import functools
import gc
import importlib
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from leadscore.heap import trim_heap
from leadscore.model.lean import import_daal4py
from leadscore.model.walk import SmallCallsWalked, WalkedForest, WalkPredictor, walk_below_rows

if TYPE_CHECKING:
    import xgboost as xgb

Matrix = npt.NDArray[np.float32]
PredictorMode = Literal["auto", "xgboost"]

XGBOOST_NAME: Final = "xgboost.inplace_predict"
ONEDAL_NAME: Final = "onedal"
TOLERANCE: Final = 1e-6  # the largest probability difference from XGBoost a fast path may have

# oneDAL scores rows in vectorised blocks of 5 x 16 rows on CPUs other than Intel's (on Intel the block
# adapts to the row count) and scores the rows left over one by one, at a higher cost per row. Measured on
# this model with missing values as infinities (`MissingAsBounds`; `bench/predictors.py --sizes 16,20,24,28,32,80`
# on the API bench's leads, figures in `bench/README.md`), a tail of 26 rows or more is cheaper padded to a full
# block (it was 32 while blocks held NaN). Padding rows are zeros and are dropped from the answer.
_BLOCK_ROWS: Final = 80
_PAD_TAIL_FROM: Final = 26
# On Intel, oneDAL sizes its blocks from the call's rows (16 x n / 32, between 2 x 16 and 5 x 16 for this model): a
# call of fewer than 32 rows has no vector block and is scored row by row, about 28 us a row against ~350 us for
# 32 rows in one block. Measured on the packaged model (this machine, Intel Xeon, random inputs a fifth missing): 13
# rows 383 -> 346 us padded to 32, 20 rows 574 -> 340 us, 8 rows 289 us unpadded. Larger calls' tails were measured
# not to pay for padding (500 rows 4,466 us, 4,638 padded to 560). The service walks calls below 26 rows instead
# (`leadscore.model.walk`, faster still), so oneDAL gets these only where the walk is off or unfit.
_INTEL_SMALL_CALL_ROWS: Final = 32
_INTEL_PAD_FROM: Final = 13
# Errors that mean "this machine cannot build the fast path": the service then keeps XGBoost's predictor.
_BUILD_ERRORS: Final = (ImportError, OSError, RuntimeError, TypeError, ValueError, KeyError)

# The standard library's logger: the model layer knows nothing of the service's telemetry (which renders these
# lines as JSON like its own).
log = logging.getLogger(__name__)


class Predictor(Protocol):
    """Class probabilities for a float32 matrix (NaN = missing), shape (n, features) -> (n, classes)."""

    @property
    def name(self) -> str:
        """What computes the probabilities (reported by `GET /api/v1/model`)."""
        ...

    def predict(self, matrix: Matrix) -> Matrix:
        """Probabilities, float32, one row per input row; safe to call from several threads at once."""
        ...


def _num_classes(booster: xgb.Booster) -> int:
    config = json.loads(booster.save_config())
    return max(1, int(config["learner"]["learner_model_param"]["num_class"]))


class XGBoostPredictor:
    """XGBoost's own predictor (the reference every fast path must agree with)."""

    def __init__(self, booster: xgb.Booster) -> None:
        self.booster = booster
        self.classes = _num_classes(booster)

    @property
    def name(self) -> str:
        """The XGBoost entry point used."""
        return XGBOOST_NAME

    def predict(self, matrix: Matrix) -> Matrix:
        """XGBoost's probabilities (inplace_predict is thread-safe)."""
        out = self.booster.inplace_predict(matrix, validate_features=False)
        return np.asarray(out, dtype=np.float32).reshape(matrix.shape[0], self.classes)


def cpu_vendor(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU vendor string (`GenuineIntel`, `AuthenticAMD`), or "" where the system does not say."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "vendor_id":
            return value.strip()
    return ""


def default_block_rows(vendor: str) -> int | None:
    """The rows of oneDAL's fixed vector block on this CPU, or None where oneDAL sizes its blocks (Intel)."""
    return None if vendor == "GenuineIntel" else _BLOCK_ROWS


def padded_rows(n: int, block_rows: int | None, pad_tail_from: int = _PAD_TAIL_FROM) -> int:
    """How many rows to hand oneDAL for `n`: the tail is padded to a whole block when that is cheaper.

    `block_rows` None (Intel, where oneDAL sizes its blocks): only a call too small for one block is padded, to one.
    """
    if block_rows is None:
        return _INTEL_SMALL_CALL_ROWS if _INTEL_PAD_FROM <= n < _INTEL_SMALL_CALL_ROWS else n
    tail = n % block_rows
    return n + block_rows - tail if tail >= pad_tail_from else n


@dataclass(frozen=True, slots=True)
class MissingAsBounds:
    """Missing inputs handed to oneDAL as infinities, each on the side its splits send a missing value.

    oneDAL's vectorised blocks run about twice as slow when the block holds a NaN. Measured on the API bench's
    leads (nine in ten miss something), one core, NaN-fed model against this one (`bench/predictors.py --cpu 1`,
    figures in `bench/README.md`): 500 rows 8.9 -> 4.1 ms, 160 rows 2.6 -> 1.2 ms, 80 rows 1.15 -> 0.67 ms.
    XGBoost sends a missing value down each split's default branch. Where every split on an input sends missing
    left, -inf goes left at each of them (oneDAL splits on <= a finite threshold); where every one sends it right,
    +inf goes right. An input split both ways gets a second column, after the inputs: its left-default splits read
    the first column (missing as -inf) and its right-default splits the second (missing as +inf). Present values
    are unchanged, so every split decides as XGBoost's does and the answers are the same; the load-time check
    against XGBoost, on probe inputs a quarter missing, still decides whether the path is used.
    """

    inputs: int  # the model's own inputs
    copies: npt.NDArray[np.intp]  # the inputs given a second column, in the order of those columns
    fill: Matrix  # per column oneDAL reads: what a missing value becomes (-inf or +inf)
    # Per column oneDAL reads, the input it holds: derived once, gathered at every prediction.
    sources: npt.NDArray[np.intp] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", np.concatenate([np.arange(self.inputs, dtype=np.intp), self.copies]))

    @classmethod
    def of(cls, trees: list[dict[str, Any]], inputs: int) -> MissingAsBounds:
        """The plan for a booster's trees (`booster_trees`) over `inputs` inputs."""
        lefts: set[int] = set()
        rights: set[int] = set()
        for tree in trees:
            for feature, left, default_left in zip(
                tree["split_indices"], tree["left_children"], tree["default_left"], strict=True
            ):
                if left != -1:  # a split, not a leaf
                    (lefts if default_left else rights).add(int(feature))
        copies = np.array(sorted(lefts & rights), dtype=np.intp)
        fill = np.full(inputs + copies.size, -np.inf, dtype=np.float32)
        fill[sorted(rights - lefts)] = np.inf
        fill[inputs:] = np.inf
        return cls(inputs, copies, fill)

    @property
    def columns(self) -> int:
        """The columns oneDAL reads: the inputs, then the copies."""
        return int(self.fill.size)

    def column(self, feature: int, default_left: bool) -> int:
        """The column a split on `feature` reads."""
        if default_left or self.fill[feature] > 0:
            return feature
        return self.inputs + int(np.searchsorted(self.copies, feature))

    def rows(self, matrix: Matrix, total: int) -> Matrix:
        """`matrix` as oneDAL reads it, with no NaN, and zero rows after it up to `total` rows."""
        n = matrix.shape[0]
        rows = np.empty((total, self.columns), dtype=np.float32)
        given = rows[:n]
        # Inputs and copies in one gather: a third of the CPU of assigning them in two steps into zeros (16,384
        # rows: 5.9 -> 2.1 ms).
        np.take(np.asarray(matrix, dtype=np.float32), self.sources, axis=1, out=given, mode="clip")
        np.copyto(given, self.fill, where=np.isnan(given))
        rows[n:] = 0.0
        return rows


class OneDalPredictor:
    """oneDAL's gradient-boosted-trees inference on a model converted from the booster.

    Raises one of the build errors (ImportError when daal4py is missing, TypeError or ValueError for a
    booster oneDAL cannot represent) when it cannot be built. `from_archive` reads back a model converted before
    (`archive()`, saved in the bundle by `leadscore.model.saved`), with no booster. `missing` is how missing inputs
    reach the model (`MissingAsBounds`); None for a model that takes NaN for missing (daal4py's own conversion,
    the bundles saved before the plan existed, and `missing_as_bounds=False`, for comparison).
    """

    def __init__(
        self,
        booster: xgb.Booster,
        nthread: int = 1,
        block_rows: int | None = None,
        trees: list[dict[str, Any]] | None = None,
        *,
        missing_as_bounds: bool = True,
    ) -> None:
        # Optional accelerator, imported here: a missing one must mean fallback, not a crash.
        daal4py = import_daal4py()

        config = json.loads(booster.save_config())
        objective = config["learner"]["learner_train_param"]["objective"]
        if objective != "multi:softprob":
            raise TypeError(f"the oneDAL path serves multi:softprob boosters only, not {objective}")
        trees = booster_trees(booster) if trees is None else trees
        # A booster with a best iteration goes through daal4py's own converter (see onedal_model): NaN as missing.
        nan_fed = not missing_as_bounds or hasattr(booster, "best_iteration")
        missing = None if nan_fed else MissingAsBounds.of(trees, booster.num_features())
        model = onedal_model(booster, daal4py, trees, missing)
        self._setup(daal4py, model, _num_classes(booster), nthread, block_rows, missing)

    @classmethod
    def from_archive(
        cls,
        archive: bytes,
        classes: int,
        nthread: int = 1,
        block_rows: int | None = None,
        missing: MissingAsBounds | None = None,
    ) -> OneDalPredictor:
        """The predictor of a model in oneDAL's serialised form (`archive()`), scoring `classes` classes."""
        daal4py = import_daal4py()
        predictor = cls.__new__(cls)
        predictor._setup(daal4py, restored(daal4py, archive), classes, nthread, block_rows, missing)
        return predictor

    def _setup(
        self,
        daal4py: Any,  # noqa: ANN401 - daal4py is untyped
        model: Any,  # noqa: ANN401
        classes: int,
        nthread: int,
        block_rows: int | None,
        missing: MissingAsBounds | None,
    ) -> None:
        columns = int(model.NumberOfFeatures)
        if missing is not None and missing.columns != columns:
            raise ValueError(f"the oneDAL model reads {columns} columns, its missing-value plan {missing.columns}")
        # Process-wide thread count: the service runs one worker process per core, like the booster's nthread.
        daal4py.daalinit(nthread)
        self._daal4py: Any = daal4py
        self._model: Any = model
        self.classes = classes
        self.missing = missing
        self.features = columns if missing is None else missing.inputs
        self.block_rows = block_rows
        self._name = f"{ONEDAL_NAME} {metadata.version('daal')}"

    @property
    def name(self) -> str:
        """The engine, oneDAL, and its version."""
        return self._name

    def archive(self) -> bytes:
        """The model in oneDAL's serialised form (what daal4py pickles), for `OneDalPredictor.from_archive`."""
        state: bytes = self._model.__getstate__()
        return state

    def predict(self, matrix: Matrix) -> Matrix:
        """The probabilities oneDAL computes for `matrix`."""
        n = matrix.shape[0]
        if n == 0:
            return np.empty((0, self.classes), dtype=np.float32)
        total = padded_rows(n, self.block_rows)
        if self.missing is not None:
            rows = self.missing.rows(matrix, total)
        else:
            rows = np.ascontiguousarray(matrix, dtype=np.float32)
            if total != n:
                padded = np.zeros((total, rows.shape[1]), dtype=np.float32)
                padded[:n] = rows
                rows = padded
        # A new algorithm object per call: oneDAL's keeps the previous call's result table (sized to that
        # call's rows), so a shared one fails on the next size and would race between threads. The model
        # itself is only read, and is shared.
        algorithm = self._daal4py.gbt_classification_prediction(
            nClasses=self.classes, fptype="float", resultsToEvaluate="computeClassProbabilities"
        )
        probabilities = algorithm.compute(rows, self._model).probabilities
        return np.asarray(probabilities[:n], dtype=np.float32)


def restored(daal4py: Any, archive: bytes) -> Any:  # noqa: ANN401 - daal4py is untyped
    """A oneDAL model read back from its serialised form, as unpickling it would (without `pickle`)."""
    cls = daal4py.gbt_classification_model
    model = cls.__new__(cls)
    model.__setstate__(archive)
    return model


def booster_trees(booster: xgb.Booster) -> list[dict[str, Any]]:
    """The booster's trees as its JSON model has them: decoded once per load (7 MB for the packaged model)."""
    model: dict[str, Any] = msgspec.json.decode(booster.save_raw("json"))
    trees: list[dict[str, Any]] = model["learner"]["gradient_booster"]["model"].get("trees", [])  # none: gblinear
    return trees


def onedal_model(
    booster: xgb.Booster,
    daal4py: Any,  # noqa: ANN401 - daal4py is untyped
    trees: list[dict[str, Any]] | None = None,
    missing: MissingAsBounds | None = None,
) -> Any:  # noqa: ANN401
    """The booster as a oneDAL model: the calls daal4py's converter makes, fed from the booster's own JSON.

    `daal4py.mb.convert_model` parses a JSON text dump of every tree into Python node objects, most of the time
    a process takes to load the model; reading the booster's arrays makes the same builder calls at a fraction
    of that cost. The model is the same, bit for bit (a test pins it): leaf values and covers go through the
    dump's 9-digit decimal form, thresholds to the float below (oneDAL splits on <=, XGBoost on <). A booster
    with a best iteration (early stopping) goes through daal4py's own converter. `trees`: `booster_trees`, when
    the caller has them already. `missing`: the columns the splits read (`MissingAsBounds`); without it each
    split reads its input's own column and NaN is missing, as in daal4py's converter.
    """
    if hasattr(booster, "best_iteration"):
        if missing is not None:
            raise ValueError("daal4py's own converter takes no missing-value plan")
        return importlib.import_module("daal4py.mb").convert_model(booster).daal_model_
    learner = json.loads(booster.save_config())["learner"]
    if learner["learner_train_param"]["booster"] != "gbtree":
        raise TypeError(f"only gbtree boosters convert to oneDAL, not {learner['learner_train_param']['booster']}")
    params = learner["learner_model_param"]
    if int(params.get("num_target", 1)) > 1:
        raise TypeError("multi-target boosters do not convert to oneDAL")
    features, classes = int(params["num_feature"]), int(params["num_class"])
    base: Any = (
        json.loads(params["base_score"]) if params["base_score"].startswith("[") else float(params["base_score"])
    )
    if isinstance(base, list) and len(base) <= 1:
        base = base[0] if base else 0.5
    trees = booster_trees(booster) if trees is None else trees
    iterations = len(trees) // classes
    columns = features if missing is None else missing.columns
    builder = daal4py.gbt_clf_model_builder(n_features=columns, n_iterations=iterations, n_classes=classes)
    label = 0
    for counter, tree in enumerate(trees, start=1):
        left, right, feature = tree["left_children"], tree["right_children"], tree["split_indices"]
        default_left = tree["default_left"]
        conditions = np.asarray(tree["split_conditions"], dtype=np.float32)
        values = [float(f"{v:.9g}") for v in conditions.astype(np.float64).tolist()]
        covers = [float(f"{v:.9g}") for v in np.asarray(tree["sum_hessian"], np.float32).astype(np.float64).tolist()]
        thresholds = np.nextafter(conditions, np.float32(-np.inf)).tolist()
        # Vector intercepts (XGBoost >= 3.1) are added to the leaves of each class's first tree.
        intercept = float(base[counter - 1]) if isinstance(base, list) and counter <= classes else 0.0
        tree_id = builder.create_tree(n_nodes=len(left), class_label=label)
        if counter % iterations == 0:
            label += 1
        queue = deque([(0, -1, -1)])  # breadth first, as daal4py adds the nodes
        while queue:
            node, parent, position = queue.popleft()
            where = {} if parent < 0 else {"parent_id": parent, "position": position}
            if left[node] == -1:
                builder.add_leaf(tree_id=tree_id, response=values[node] + intercept, cover=covers[node], **where)
                continue
            column = (
                int(feature[node]) if missing is None else missing.column(int(feature[node]), bool(default_left[node]))
            )
            split = builder.add_split(
                tree_id=tree_id,
                feature_index=column,
                feature_value=thresholds[node],
                cover=covers[node],
                default_left=bool(default_left[node]),
                **where,
            )
            queue.extend([(left[node], split, 0), (right[node], split, 1)])
    return builder.model(base_score=base if isinstance(base, float) else None)


def probe_matrix(
    booster: xgb.Booster, rows: int = 400, seed: int = 20240601, trees: list[dict[str, Any]] | None = None
) -> Matrix:
    """Inputs that reach every kind of branch: split values exactly, one float step either side, missing."""
    thresholds: dict[int, list[float]] = {}
    for tree in booster_trees(booster) if trees is None else trees:
        for feature, value, left in zip(
            tree["split_indices"], tree["split_conditions"], tree["left_children"], strict=True
        ):
            if left != -1:  # leaves keep their weight in split_conditions
                thresholds.setdefault(int(feature), []).append(float(value))
    rng = np.random.default_rng(seed)
    out = rng.normal(0.0, 3.0, size=(rows, booster.num_features())).astype(np.float32)
    for feature, values in thresholds.items():
        split = rng.choice(np.asarray(values, dtype=np.float32), rows)
        kind = rng.integers(0, 4, rows)
        out[:, feature] = np.select(
            [kind == 0, kind == 1, kind == 2],
            [split, np.nextafter(split, np.float32(-np.inf)), np.nextafter(split, np.float32(np.inf))],
            out[:, feature],
        )
    out[rng.random(out.shape) < 0.25] = np.nan
    out[0] = np.nan  # a lead with nothing known
    return out


def disagreement(reference: Matrix, candidate: Matrix) -> str | None:
    """Why `candidate` does not give `reference`'s answers, or None when it does.

    Probabilities must be within TOLERANCE; the most likely class must be the same, except where the
    reference's top two probabilities are themselves within TOLERANCE (a tie either answer may break).
    """
    if candidate.shape != reference.shape:
        return f"shape {candidate.shape} != {reference.shape}"
    diff = float(np.max(np.abs(candidate.astype(np.float64) - reference), initial=0.0))
    if not diff <= TOLERANCE:  # also catches NaN
        return f"probabilities differ by up to {diff:.3g} (> {TOLERANCE:g})"
    top_two = np.sort(reference, axis=1)[:, -2:]
    clear = (top_two[:, 1] - top_two[:, 0]) > TOLERANCE
    changed = int(np.count_nonzero((candidate.argmax(axis=1) != reference.argmax(axis=1)) & clear))
    if changed:
        return f"{changed} rows get another score"
    return None


def self_check(reference: Predictor, candidate: Predictor, matrix: Matrix) -> str | None:
    """Compare `candidate` with `reference` on `matrix` (see `checked_against`)."""
    return checked_against(reference.predict(matrix), candidate, matrix)


def checked_against(expected: Matrix, candidate: Predictor, matrix: Matrix) -> str | None:
    """Compare `candidate`'s answers on `matrix`, fed in batches of 1, 17, 47 rows and the rest, with `expected`.

    The batch sizes take oneDAL's row-by-row path, its padded path and its vectorised blocks.
    """
    cuts = [0, 1, 18, 65, matrix.shape[0]]
    parts = [candidate.predict(matrix[a:b]) for a, b in pairwise(cuts) if b > a]
    return disagreement(expected, np.concatenate(parts))


@dataclass(frozen=True, slots=True)
class Selection:
    """The predictor the service uses, and why it is XGBoost's when a fast path was wanted but failed."""

    predictor: Predictor
    fallback_reason: str | None = None
    # Where the oneDAL model came from: "bundle" (its saved file) or "converted" (at load); "" for XGBoost's.
    model_source: str = ""


@dataclass(frozen=True, slots=True)
class SavedOneDal:
    """A oneDAL model converted from a bundle's booster when it was written, and what it is checked with at load.

    `probe`: the inputs; `reference`: XGBoost's probabilities for them, computed when the model was saved;
    `missing`: how missing inputs reach the model (None: as NaN, the files written before the plan existed).
    """

    archive: bytes
    probe: Matrix
    reference: Matrix
    missing: MissingAsBounds | None = None
    walk: WalkedForest | None = None  # the forest small calls are walked with (`leadscore.model.walk`), if saved


def release_freed_memory() -> None:
    """Hand the heap freed after a conversion back to the system (glibc only; elsewhere nothing to do).

    Converting and checking the model makes many MB of short-lived Python objects; the freed heap would
    otherwise stay in every worker's RSS for its whole life (`bench/README.md` has the measured figures).
    """
    gc.collect()
    trim_heap()


def saved_predictor(saved: SavedOneDal, features: int, nthread: int = 1, *, walk: bool = True) -> Selection | None:
    """The oneDAL predictor of a bundle's saved model, checked on its probe inputs; None (the reason logged) if unfit.

    The check is the one a converted model passes, against XGBoost's answers saved with the model: no booster is
    loaded. `features`: the inputs the model must take (the feature spec's). `walk`: small calls go to the saved
    walk (`with_walk`) where the file has one.
    """
    try:
        candidate = OneDalPredictor.from_archive(
            saved.archive, saved.reference.shape[1], nthread, default_block_rows(cpu_vendor()), saved.missing
        )
        problem = (
            f"the model takes {candidate.features} inputs, not {features}"
            if candidate.features != features
            else checked_against(saved.reference, candidate, saved.probe)
        )
    except _BUILD_ERRORS as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        log.warning("onedal_saved_model_unused reason=%s", problem, extra={"reason": f"saved oneDAL model: {problem}"})
        return None
    if walk and saved.walk is not None and saved.missing is not None:
        walked = with_walk(candidate, lambda: saved.walk, saved.missing, saved.reference, saved.probe)
        return _selected(walked, "bundle")
    return _selected(candidate, "bundle")


def with_walk(
    large: OneDalPredictor,
    forest: Callable[[], WalkedForest | None],
    missing: MissingAsBounds,
    expected: Matrix,
    probe: Matrix,
) -> Predictor:
    """`large` with its small calls walked (`SmallCallsWalked`), if the walk builds and gives `expected` on `probe`.

    Otherwise `large` alone, the reason logged: the walk is only ever a faster way to the same answers.
    """
    try:
        walked = forest()
        if walked is None:
            return large
        combined = SmallCallsWalked(WalkPredictor(walked, missing), large, walk_below_rows(large.block_rows))
        problem = checked_against(expected, combined, probe)
    except _BUILD_ERRORS as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is None:
        return combined
    log.warning("walk_unused reason=%s", problem, extra={"reason": f"small calls stay with oneDAL: {problem}"})
    return large


def select_predictor(
    booster: xgb.Booster, mode: PredictorMode = "auto", nthread: int = 1, *, walk: bool = True
) -> Selection:
    """The fastest predictor that gives XGBoost's answers on this machine; XGBoost's own when forced or on failure.

    The booster is converted to oneDAL here; a bundle's saved oneDAL model goes through `saved_predictor`.
    `walk`: small calls are walked (`with_walk`) where the walk builds and agrees.
    """
    reference = XGBoostPredictor(booster)
    if mode == "xgboost":
        # Said as it is: the caller asked for XGBoost's predictor (the setting, or a check that needs no fast path).
        reason = "predictor=xgboost requested: no fast path tried"
        log.info(
            "predictor_selected predictor=%s reason=%s",
            reference.name,
            reason,
            extra={"predictor": reference.name, "reason": reason},
        )
        return Selection(reference)
    try:
        trees = booster_trees(booster)
        candidate = OneDalPredictor(booster, nthread, default_block_rows(cpu_vendor()), trees)
        probe = probe_matrix(booster, trees=trees)
        expected = reference.predict(probe)
        problem = checked_against(expected, candidate, probe)
        chosen: Predictor = candidate
        if problem is None and walk and candidate.missing is not None:
            plan = candidate.missing
            forest = functools.partial(WalkedForest.of_booster, booster, trees, plan)
            chosen = with_walk(candidate, forest, plan, expected, probe)
        del trees
    except _BUILD_ERRORS as exc:
        reason = f"oneDAL predictor could not be built: {type(exc).__name__}: {exc}"
    else:
        release_freed_memory()
        if problem is None:
            return _selected(chosen, "converted")
        reason = f"oneDAL predictor disagrees with XGBoost on the load-time self-check: {problem}"
    log.warning(
        "predictor_fallback predictor=%s reason=%s",
        reference.name,
        reason,
        extra={"predictor": reference.name, "reason": reason},
    )
    return Selection(reference, reason)


def _selected(candidate: Predictor, source: str) -> Selection:
    """The oneDAL predictor chosen, logged with where its model came from (the bundle's file, or converted now)."""
    onedal = candidate.large if isinstance(candidate, SmallCallsWalked) else candidate
    block_rows = getattr(onedal, "block_rows", None)
    log.info(
        "predictor_selected predictor=%s block_rows=%s model=%s",
        candidate.name,
        block_rows,
        source,
        extra={"predictor": candidate.name, "block_rows": block_rows, "model_source": source},
    )
    return Selection(candidate, model_source=source)
