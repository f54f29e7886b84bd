"""The predictor of small calls: the booster's trees walked as complete binary trees, ten at a time, by numba.

A micro-batch of small requests (1-16 rows under 1-lead load) is a call too small for oneDAL's vector blocks, and
oneDAL scores it row by row. Measured on the packaged model (1,000 trees of depth 6) on the build machine (Intel
Xeon, one thread): oneDAL 71 us for one row and ~30 us for each row more up to 12; treelite 4.8's GTIL (the
field's general tree interpreter) 250 us for one row and ~190 a row; XGBoost's `inplace_predict` ~830 us a call.
No library at hand walks small batches of a forest this size fast, so this module does, in three steps:

- each tree is stored as a complete binary tree of the forest's depth (a leaf above the bottom fills its whole
  subtree), so a walk is `depth` steps of `node = 2 node + 1 + (x[column] >= threshold)`, with no branch to
  mispredict;
- ten trees are walked at once, so their loads overlap;
- missing inputs arrive as the infinities of the oneDAL model's plan (`MissingAsBounds`), so a step tests no NaN.

Measured the same way, on the API bench's leads (`bench/predictors.py --cpu 1`, figures in `bench/README.md`):
the walk costs ~9.5 us a row (1 row 14 us, 8 rows 79, 20 rows 191), oneDAL 45, 181 and 247 us (20 rows padded to
one 32-row block). From 26 rows oneDAL's padded block is as fast or faster (28 rows: 248 against 266), so
`SmallCallsWalked` walks calls below 26 rows there; where oneDAL's blocks are a fixed 80 rows (AMD), below 48
(`walk_below_rows`).

Trees are summed per class in the booster's order, in float32 as XGBoost sums them: on the probe inputs the margins
are XGBoost's bit for bit. The probabilities are checked against XGBoost's at load, as oneDAL's are.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import xgboost as xgb

    from leadscore.model.predictors import MissingAsBounds, Predictor

Matrix = npt.NDArray[np.float32]
Indices = npt.NDArray[np.int32]

WALK_NAME: Final = "leadscore tree walk"
# The deepest forest walked: a complete tree of depth 10 has 1,023 split slots. Deeper forests keep oneDAL for every
# call (the walk's arrays would grow as 2^depth per tree).
MAX_DEPTH: Final = 10
# Calls of fewer rows than this are walked; larger ones go to oneDAL. Where oneDAL sizes its blocks from the call
# (Intel), measured on the API bench's leads, one core (Intel Xeon): 24 rows 229 us walked, 245 oneDAL (padded to
# 32); 28 rows 266 against 248. Calls of 41-63 rows are walked faster too there (56 rows 523 against 652) but are
# left to oneDAL, whose blocks win again from 64 rows.
WALK_BELOW_ROWS: Final = 26
# Where oneDAL's vector blocks are a fixed 80 rows (other CPUs, `leadscore.model.predictors`), a call of 26 to 79
# rows costs one padded block whatever its size, and the walk's ~11 us a row stays under it longer. Measured on AMD
# EPYC (`bench/predictors.py --cpu 1`, the API bench's leads, median of 5 rounds): 26 rows 306 us walked against 571
# for oneDAL's block, 32 rows 380 / 571, 40 rows 464 / 568, 48 rows 554 / 572, 56 rows 642 / 570.
WALK_BELOW_ROWS_FIXED_BLOCKS: Final = 48


def walk_below_rows(block_rows: int | None) -> int:
    """Where small calls end for oneDAL with `block_rows`-row blocks (None: oneDAL sizes its blocks, as on Intel)."""
    return WALK_BELOW_ROWS if block_rows is None else WALK_BELOW_ROWS_FIXED_BLOCKS


_GROUP: Final = 10  # trees walked at once (measured: 5 at once 16 us for one row, 10 at once 14)
_LEAF: Final = -1  # child index of a leaf in XGBoost's JSON model


def _walk(  # noqa: PLR0912 - one kernel, compiled whole: numba calls no plain function from it
    rows: Any,  # noqa: ANN401 - (n, columns) float32, no NaN: MissingAsBounds.rows
    column: Any,  # noqa: ANN401 - (trees, 2^depth - 1) int32: the column each split slot reads
    threshold: Any,  # noqa: ANN401 - (trees, 2^depth - 1) float32: the walk goes right when x >= threshold
    leaf: Any,  # noqa: ANN401 - (trees, 2^depth) float32
    tree_class: Any,  # noqa: ANN401 - (trees,) int32
    base: Any,  # noqa: ANN401 - (classes,) float32: each class's margin before any tree
    out: Any,  # noqa: ANN401 - (n, classes) float32: the probabilities, written here
) -> None:
    n, trees, classes = rows.shape[0], column.shape[0], base.shape[0]
    first_leaf = leaf.shape[1] - 1
    depth = 0
    while (1 << depth) < leaf.shape[1]:
        depth += 1
    nodes = np.zeros(_GROUP, np.int64)
    grouped = trees - trees % _GROUP
    for r in range(n):
        x = rows[r]
        margin = out[r]
        for c in range(classes):
            margin[c] = base[c]
        for t0 in range(0, grouped, _GROUP):
            for k in range(_GROUP):
                nodes[k] = 0
            for _ in range(depth):
                for k in range(_GROUP):
                    at = nodes[k]
                    nodes[k] = 2 * at + 1 + (x[column[t0 + k, at]] >= threshold[t0 + k, at])
            for k in range(_GROUP):  # in tree order, as XGBoost adds them
                margin[tree_class[t0 + k]] += leaf[t0 + k, nodes[k] - first_leaf]
        for t in range(grouped, trees):
            at = 0
            for _ in range(depth):
                at = 2 * at + 1 + (x[column[t, at]] >= threshold[t, at])
            margin[tree_class[t]] += leaf[t, at - first_leaf]
        # Softmax as XGBoost's: the largest margin subtracted, the sum of exponentials in double.
        top = margin[0]
        for c in range(1, classes):
            top = max(top, margin[c])
        total = 0.0
        for c in range(classes):
            margin[c] = np.exp(margin[c] - top)
            total += margin[c]
        for c in range(classes):
            margin[c] = margin[c] / np.float32(total)


@functools.cache
def _compiled() -> Callable[..., None]:
    """`_walk` compiled (or loaded from numba's cache): numba is imported only by a process that walks."""
    import numba  # noqa: PLC0415 - ~150 ms and ~60 MB, paid only where small calls are walked

    return numba.njit(cache=True, nogil=True)(_walk)


@dataclass(frozen=True, slots=True)
class WalkedForest:
    """A multi-class forest as complete binary trees of one depth: the arrays `_walk` reads.

    `column` holds the column of the oneDAL model's input (`MissingAsBounds.rows`) each split slot reads, so that
    a missing value goes the way XGBoost's default branch sends it.
    """

    column: Indices
    threshold: Matrix
    leaf: Matrix
    tree_class: Indices
    base: Matrix

    @classmethod
    def of(
        cls, trees: list[dict[str, Any]], tree_class: list[int], base: list[float], missing: MissingAsBounds
    ) -> WalkedForest:
        """The forest of a booster's JSON trees; ValueError for a forest the walk does not take.

        `tree_class`: the class each tree adds to; `base`: each class's margin before any tree.
        """
        depth = max((_depth(tree) for tree in trees), default=0)
        if depth > MAX_DEPTH:
            raise ValueError(f"trees of depth {depth} (the walk takes at most {MAX_DEPTH})")
        slots = (1 << depth) - 1
        column = np.zeros((len(trees), slots), dtype=np.int32)
        threshold = np.full((len(trees), slots), np.inf, dtype=np.float32)
        leaf = np.zeros((len(trees), slots + 1), dtype=np.float32)
        for t, tree in enumerate(trees):
            if any(int(kind) != 0 for kind in tree.get("split_type", [])):
                raise ValueError("categorical splits (the walk takes numeric splits only)")
            _place(tree, missing, depth, column[t], threshold[t], leaf[t])
        return cls(column, threshold, leaf, np.asarray(tree_class, dtype=np.int32), np.asarray(base, np.float32))

    @classmethod
    def of_booster(cls, booster: xgb.Booster, trees: list[dict[str, Any]], missing: MissingAsBounds) -> WalkedForest:
        """The forest of `booster`, whose JSON trees are `trees`; ValueError for one the walk does not take."""
        learner = json.loads(booster.save_config())["learner"]
        objective = learner["learner_train_param"]["objective"]
        if objective != "multi:softprob":
            raise ValueError(f"the walk serves multi:softprob boosters only, not {objective}")
        params = learner["learner_model_param"]
        classes = int(params["num_class"])
        parallel = int(learner["gradient_booster"].get("gbtree_model_param", {}).get("num_parallel_tree", 1))
        raw = params["base_score"]
        intercept = json.loads(raw) if raw.startswith("[") else [float(raw)]
        base = intercept if len(intercept) == classes else [float(intercept[0])] * classes
        # XGBoost keeps a round's trees class by class, each class's parallel trees together.
        return cls.of(trees, [(t // parallel) % classes for t in range(len(trees))], base, missing)

    @property
    def classes(self) -> int:
        """The classes the forest scores."""
        return int(self.base.size)

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The forest as named arrays (how a bundle's saved model file keeps it)."""
        return {
            "walk_column": self.column,
            "walk_threshold": self.threshold,
            "walk_leaf": self.leaf,
            "walk_class": self.tree_class,
            "walk_base": self.base,
        }

    @classmethod
    def from_arrays(cls, arrays: Any, columns: int) -> WalkedForest | None:  # noqa: ANN401 - a mapping of arrays
        """The forest `arrays()` wrote, or None when they are not there; ValueError when they do not make one.

        `columns`: the columns of the rows it will read. Every index is checked here: the kernel does not.
        """
        if "walk_column" not in arrays:
            return None
        forest = cls(
            np.asarray(arrays["walk_column"]),
            np.asarray(arrays["walk_threshold"]),
            np.asarray(arrays["walk_leaf"]),
            np.asarray(arrays["walk_class"]),
            np.asarray(arrays["walk_base"]),
        )
        column, leaf, tree_class = forest.column, forest.leaf, forest.tree_class
        trees, slots = column.shape if column.ndim == 2 else (0, -1)
        whole = (
            column.dtype == tree_class.dtype == np.int32
            and forest.threshold.dtype == leaf.dtype == forest.base.dtype == np.float32
            and forest.threshold.shape == column.shape
            and leaf.shape == (trees, slots + 1)
            and tree_class.shape == (trees,)
            and forest.base.ndim == 1
            and slots + 1 > 0
            and (slots + 1) & slots == 0  # 2^depth leaves
            and slots + 1 <= 1 << MAX_DEPTH
        )
        if not whole:
            raise ValueError("its walk arrays are not one forest")
        if column.size and (column.min() < 0 or column.max() >= columns):
            raise ValueError(f"its walk reads columns outside the model's {columns}")
        if tree_class.size and (tree_class.min() < 0 or tree_class.max() >= forest.classes):
            raise ValueError("its walk adds trees to classes the model does not have")
        return forest


def _depth(tree: dict[str, Any]) -> int:
    left, right = tree["left_children"], tree["right_children"]
    deepest, stack = 0, [(0, 0)]
    while stack:
        node, depth = stack.pop()
        if left[node] == _LEAF:
            deepest = max(deepest, depth)
        else:
            stack.extend([(left[node], depth + 1), (right[node], depth + 1)])
    return deepest


def _place(
    tree: dict[str, Any], missing: MissingAsBounds, depth: int, column: Indices, threshold: Matrix, leaf: Matrix
) -> None:
    """Write one tree into its rows of the forest's arrays (slot s's children are 2s + 1 and 2s + 2)."""
    left, right = tree["left_children"], tree["right_children"]
    feature, default_left = tree["split_indices"], tree["default_left"]
    value = np.asarray(tree["split_conditions"], dtype=np.float32)  # a leaf's weight, or a split's threshold
    first_leaf = (1 << depth) - 1
    stack = [(0, 0, 0)]  # (node, slot, depth of the slot)
    while stack:
        node, slot, level = stack.pop()
        if left[node] == _LEAF:
            # A leaf above the bottom fills its subtree's leaves; the slots above them keep +inf (always left).
            below = depth - level
            start = (slot + 1) * (1 << below) - 1 - first_leaf
            leaf[start : start + (1 << below)] = value[node]
            continue
        column[slot] = missing.column(int(feature[node]), bool(default_left[node]))
        threshold[slot] = value[node]  # XGBoost goes left when x < threshold: right when x >= it
        stack.extend([(left[node], 2 * slot + 1, level + 1), (right[node], 2 * slot + 2, level + 1)])


class WalkPredictor:
    """Probabilities from a `WalkedForest`, missing inputs handed over as the oneDAL model's plan has them."""

    def __init__(self, forest: WalkedForest, missing: MissingAsBounds) -> None:
        self.forest = forest
        self.missing = missing
        _compiled()  # at load, not at the first call

    @property
    def name(self) -> str:
        """What computes the probabilities."""
        return WALK_NAME

    def predict(self, matrix: Matrix) -> Matrix:
        """The forest's probabilities for `matrix` (thread-safe: the kernel writes only its own output)."""
        n = matrix.shape[0]
        out = np.empty((n, self.forest.classes), dtype=np.float32)
        if n:
            forest = self.forest
            rows = self.missing.rows(matrix, n)
            _compiled()(rows, forest.column, forest.threshold, forest.leaf, forest.tree_class, forest.base, out)
        return out


class SmallCallsWalked:
    """Calls of fewer than `below` rows to `small` (the walk), larger ones to `large` (oneDAL's blocks)."""

    def __init__(self, small: Predictor, large: Predictor, below: int = WALK_BELOW_ROWS) -> None:
        self.small = small
        self.large = large
        self.below = below
        self._name = f"{large.name}; under {below} rows: {small.name}"

    @property
    def name(self) -> str:
        """Both engines, and where the calls divide."""
        return self._name

    def predict(self, matrix: Matrix) -> Matrix:
        """The probabilities of whichever engine takes a call of this many rows."""
        return (self.small if matrix.shape[0] < self.below else self.large).predict(matrix)
