"""Exact path-dependent TreeSHAP for one class of a multi-class booster, compiled with numba.

XGBoost's `predict(..., pred_contribs=True)` explains every class of every lead (all 1,000 trees of the packaged
model) at ~12-17 ms per lead. A lead's reasons need only its predicted class's trees (one in five), and this
kernel computes the same values leaf by leaf instead of with XGBoost's path extend/unwind recursion, which is
O(depth^2) per leaf on a chain of divisions. For a leaf of value v whose path has the distinct features j, with
z_j the share of the training cover that follows the path at j's splits and o_j 1 if the lead follows them all
(else 0), feature i's Shapley value from that leaf is

    v * (o_i - z_i) * integral_0^1 prod_{j != i} (z_j + (o_j - z_j) t) dt

(the Shapley weights |S|!(d-|S|-1)!/d! are the Beta integrals of t^|S| (1-t)^(d-1-|S|); Linear TreeSHAP, Yu et al.
2022, rests on the same identity). The integrand is a polynomial of degree < depth, so Gauss-Legendre quadrature
with depth / 2 points is exact. Everything but o_j is fixed by the booster and is extracted once at load;
per lead the kernel evaluates each split once and then does O(depth) work per leaf: the product over j != i comes
from prefix and suffix products, so nothing is divided. `bench/explain.py` measures it beside XGBoost's (figures
in `bench/README.md`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

import numba
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import xgboost as xgb

FloatMatrix = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
_LEAF: Final = -1  # child index of a leaf in XGBoost's JSON dump
# Quadrature points: exact for trees up to depth 2 * _POINTS. A constant, so that numba unrolls the loops over them
# into one vector operation (4 float64 = one AVX2 register); a depth-6 tree would need only 3.
_POINTS: Final = 4
MAX_DEPTH: Final = 2 * _POINTS


@numba.njit(cache=True, nogil=True)
def _shap_rows(
    x: Any,  # noqa: ANN401 - (n, features) float32
    classes: Any,  # noqa: ANN401 - (n,) int64: the class to explain per row
    nodes: Any,  # noqa: ANN401 - (classes + 1,) int64: class c's splits are split rows nodes[c]..nodes[c+1]-1
    split_feature: Any,  # noqa: ANN401
    split_value: Any,  # noqa: ANN401 - float32: the lead goes left when x < value
    split_default_left: Any,  # noqa: ANN401 - where a missing value goes
    leaves: Any,  # noqa: ANN401 - (classes + 1,) int64: class c's leaves are leaves[c]..leaves[c+1]-1
    leaf_value: Any,  # noqa: ANN401
    leaf_slots: Any,  # noqa: ANN401 - (leaves + 1,): leaf l's distinct features are slots leaf_slots[l]..
    slot_feature: Any,  # noqa: ANN401
    slot_zero: Any,  # noqa: ANN401 - z_j
    slot_steps: Any,  # noqa: ANN401 - (slots + 1,): slot s's splits on the path are steps slot_steps[s]..
    step_split: Any,  # noqa: ANN401 - the split row (relative to its class's first split)
    step_left: Any,  # noqa: ANN401 - whether the path goes left there
    quad_t: Any,  # noqa: ANN401 - Gauss-Legendre points on [0, 1]
    quad_w: Any,  # noqa: ANN401 - and weights
    max_slots: int,
    bias: Any,  # noqa: ANN401 - (classes,) float64
    out: Any,  # noqa: ANN401 - (n, features + 1) float64, zeroed
) -> None:
    go_left = np.empty(nodes[nodes.shape[0] - 1], dtype=np.int64)
    one = np.empty(max_slots, dtype=np.int64)
    prefix = np.empty((max_slots + 1, _POINTS), dtype=np.float64)
    factor = np.empty((max_slots, _POINTS), dtype=np.float64)
    suffix = np.empty(_POINTS, dtype=np.float64)
    n_features = x.shape[1]
    for r in range(x.shape[0]):
        row = x[r]
        phi = out[r]
        c = classes[r]
        phi[n_features] = bias[c]
        first = nodes[c]
        for s in range(first, nodes[c + 1]):
            v = row[split_feature[s]]
            go_left[s - first] = split_default_left[s] if np.isnan(v) else np.int64(v < split_value[s])
        for leaf in range(leaves[c], leaves[c + 1]):
            start = leaf_slots[leaf]
            d = leaf_slots[leaf + 1] - start
            # prefix[k] = product of the factors of slots before k (per quadrature point).
            for q in range(_POINTS):
                prefix[0, q] = 1.0
            for k in range(d):
                s = start + k
                # Branch-free: whether a lead follows a split is a coin toss to the CPU's branch predictor.
                o = 1
                for step in range(slot_steps[s], slot_steps[s + 1]):
                    o &= 1 ^ (go_left[step_split[step]] ^ step_left[step])
                one[k] = o
                z = slot_zero[s]
                for q in range(_POINTS):
                    a = z + (o - z) * quad_t[q]
                    factor[k, q] = a
                    prefix[k + 1, q] = prefix[k, q] * a
            value = leaf_value[leaf]
            for q in range(_POINTS):
                suffix[q] = quad_w[q] * value
            for k in range(d - 1, -1, -1):
                s = start + k
                integral = 0.0
                for q in range(_POINTS):
                    integral += prefix[k, q] * suffix[q]
                    suffix[q] *= factor[k, q]
                phi[slot_feature[s]] += (one[k] - slot_zero[s]) * integral


@dataclass(frozen=True, slots=True)
class TreeExplainer:
    """A booster's trees as flat per-leaf arrays, and the exact SHAP values of one class per lead.

    Build with `from_booster` (once, at load); `contributions` is thread-safe and releases the GIL.
    """

    nodes: IntArray
    split_feature: IntArray
    split_value: npt.NDArray[np.float32]
    split_default_left: IntArray  # 1 where a missing value goes left
    leaves: IntArray
    leaf_value: npt.NDArray[np.float64]
    leaf_slots: IntArray
    slot_feature: IntArray
    slot_zero: npt.NDArray[np.float64]
    quad_t: npt.NDArray[np.float64]
    quad_w: npt.NDArray[np.float64]
    slot_steps: IntArray
    step_split: IntArray
    step_left: IntArray  # 1 where the path goes left
    max_slots: int
    bias: npt.NDArray[np.float64]  # per class: the base margin plus every tree's expected value
    n_features: int

    @classmethod
    def from_booster(cls, booster: xgb.Booster) -> TreeExplainer:
        """Extract the trees of a gbtree booster with numeric splits; ValueError for any other kind."""
        model = json.loads(booster.save_raw("json"))
        learner = model["learner"]
        gbm = learner["gradient_booster"]
        if gbm["name"] != "gbtree":
            raise ValueError(f"TreeSHAP explains gbtree boosters, not {gbm['name']}")
        n_classes = max(1, int(learner["learner_model_param"]["num_class"]))
        n_features = int(learner["learner_model_param"]["num_feature"])
        by_class: list[list[dict[str, Any]]] = [[] for _ in range(n_classes)]
        for tree, klass in zip(gbm["model"]["trees"], gbm["model"]["tree_info"], strict=True):
            if any(tree["split_type"]):
                raise ValueError("categorical splits are not supported")
            by_class[int(klass)].append(tree)
        flat = _Flat()
        means = np.zeros(n_classes, dtype=np.float64)
        for klass, trees in enumerate(by_class):
            flat.start_class()
            for tree in trees:
                means[klass] += flat.add_tree(tree)
        flat.start_class()
        depth = max(flat.max_depth, 1)
        if depth > MAX_DEPTH:
            raise ValueError(f"trees of depth {depth} are deeper than the {MAX_DEPTH} this kernel explains exactly")
        points, weights = np.polynomial.legendre.leggauss(_POINTS)
        explainer = cls(
            nodes=np.asarray(flat.class_nodes, dtype=np.int64),
            split_feature=np.asarray(flat.split_feature, dtype=np.int64),
            split_value=np.asarray(flat.split_value, dtype=np.float32),
            split_default_left=np.asarray(flat.split_default_left, dtype=np.int64),
            leaves=np.asarray(flat.class_leaves, dtype=np.int64),
            leaf_value=np.asarray(flat.leaf_value, dtype=np.float64),
            leaf_slots=np.asarray([*flat.leaf_slots, len(flat.slot_feature)], dtype=np.int64),
            slot_feature=np.asarray(flat.slot_feature, dtype=np.int64),
            slot_zero=np.asarray(flat.slot_zero, dtype=np.float64),
            slot_steps=np.asarray([*flat.slot_steps, len(flat.step_split)], dtype=np.int64),
            step_split=np.asarray(flat.step_split, dtype=np.int64),
            step_left=np.asarray(flat.step_left, dtype=np.int64),
            quad_t=(points + 1.0) / 2.0,
            quad_w=weights / 2.0,
            max_slots=depth,
            bias=means,
            n_features=n_features,
        )
        # The base margin is not in the trees: read it off XGBoost's margin of a lead with nothing known, less the
        # sum of that lead's SHAP values (which include the trees' expected values).
        nothing = np.full((n_classes, n_features), np.nan, dtype=np.float32)
        margin = np.asarray(booster.inplace_predict(nothing[:1], predict_type="margin"), dtype=np.float64)
        base = margin.reshape(n_classes) - explainer.contributions(nothing, np.arange(n_classes)).sum(axis=1)
        return replace(explainer, bias=means + base)

    @property
    def n_classes(self) -> int:
        """How many classes the booster has."""
        return int(self.nodes.shape[0] - 1)

    def contributions(self, matrix: FloatMatrix, classes: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """SHAP values of class `classes[i]` for row i: shape (n, features + 1), the last column the bias.

        Each row sums to the booster's margin (log-odds) of that class for that row.
        """
        rows = np.ascontiguousarray(matrix, dtype=np.float32)
        wanted = np.ascontiguousarray(classes, dtype=np.int64)
        if rows.ndim != 2 or rows.shape[1] != self.n_features or wanted.shape != (rows.shape[0],):
            raise ValueError(f"expected (n, {self.n_features}) rows and (n,) classes, got {rows.shape}, {wanted.shape}")
        if wanted.size and (wanted.min() < 0 or wanted.max() >= self.n_classes):
            raise ValueError(f"classes must be in 0..{self.n_classes - 1}")
        out = np.zeros((rows.shape[0], self.n_features + 1), dtype=np.float64)
        _shap_rows(
            rows,
            wanted,
            self.nodes,
            self.split_feature,
            self.split_value,
            self.split_default_left,
            self.leaves,
            self.leaf_value,
            self.leaf_slots,
            self.slot_feature,
            self.slot_zero,
            self.slot_steps,
            self.step_split,
            self.step_left,
            self.quad_t,
            self.quad_w,
            self.max_slots,
            self.bias,
            out,
        )
        return out

    def warm_up(self) -> None:
        """Run the kernel once, so compiling (or loading the compiled code from numba's cache) is paid at load."""
        self.contributions(np.full((1, self.n_features), np.nan, dtype=np.float32), np.zeros(1, dtype=np.int64))


class _Flat:
    """The arrays of `TreeExplainer`, filled tree by tree and class by class."""

    def __init__(self) -> None:
        self.class_nodes: list[int] = []
        self.class_leaves: list[int] = []
        self.split_feature: list[int] = []
        self.split_value: list[float] = []
        self.split_default_left: list[bool] = []
        self.leaf_value: list[float] = []
        self.leaf_slots: list[int] = []
        self.slot_feature: list[int] = []
        self.slot_zero: list[float] = []
        self.slot_steps: list[int] = []
        self.step_split: list[int] = []
        self.step_left: list[bool] = []
        self.max_depth = 0
        self._class_first_split = 0

    def start_class(self) -> None:
        """Mark where the next class's splits and leaves begin (and, called last, where the last one ends)."""
        self._class_first_split = len(self.split_feature)
        self.class_nodes.append(len(self.split_feature))
        self.class_leaves.append(len(self.leaf_value))

    def add_tree(self, tree: dict[str, Any]) -> float:
        """Add one tree's splits and leaves; return its expected value (the cover-weighted mean of its leaves)."""
        left = [int(v) for v in tree["left_children"]]
        right = [int(v) for v in tree["right_children"]]
        values = [float(np.float32(v)) for v in tree["split_conditions"]]
        cover = [float(np.float32(v)) for v in tree["sum_hessian"]]
        split_row: dict[int, int] = {}
        for node, child in enumerate(left):
            if child != _LEAF:
                split_row[node] = len(self.split_feature) - self._class_first_split
                self.split_feature.append(int(tree["split_indices"][node]))
                self.split_value.append(values[node])
                self.split_default_left.append(bool(tree["default_left"][node]))
        expected = 0.0
        # Depth-first over root-to-leaf paths: (node, [(split node, went left)]).
        stack: list[tuple[int, list[tuple[int, bool]]]] = [(0, [])]
        while stack:
            node, path = stack.pop()
            if left[node] != _LEAF:
                stack.append((right[node], [*path, (node, False)]))
                stack.append((left[node], [*path, (node, True)]))
                continue
            self.max_depth = max(self.max_depth, len(path))
            expected += values[node] * cover[node] / cover[0]
            self._add_leaf(tree, values[node], path, cover, left, split_row)
        return expected

    def _add_leaf(
        self,
        tree: dict[str, Any],
        value: float,
        path: list[tuple[int, bool]],
        cover: list[float],
        left: list[int],
        split_row: dict[int, int],
    ) -> None:
        self.leaf_value.append(value)
        self.leaf_slots.append(len(self.slot_feature))
        # The path's splits grouped by feature: z_j multiplies the cover shares of all of j's splits on the path.
        by_feature: dict[int, list[tuple[int, bool, float]]] = {}
        for node, went_left in path:
            child = left[node] if went_left else _right_of(tree, node)
            share = cover[child] / cover[node]
            by_feature.setdefault(int(tree["split_indices"][node]), []).append((node, went_left, share))
        for feature, steps in by_feature.items():
            self.slot_feature.append(feature)
            self.slot_zero.append(math.prod(share for _, _, share in steps))
            self.slot_steps.append(len(self.step_split))
            for node, went_left, _ in steps:
                self.step_split.append(split_row[node])
                self.step_left.append(went_left)


def _right_of(tree: dict[str, Any], node: int) -> int:
    return int(tree["right_children"][node])
