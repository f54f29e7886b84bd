"""XGBoost and daal4py imported without the scikit-learn layers that scoring never uses.

Both libraries import scikit-learn at import time when it is installed (it is: the training commands use it):
`xgboost.compat` for its scikit-learn estimator classes, and `daal4py/__init__` for `daal4py.mb` and
`daal4py.sklearn`. scikit-learn in turn imports SciPy's statistics. Scoring calls only the booster and the
`_daal4py` extension; the rest costs every process that loads the model about 0.7 s of start-up and 65 MB of RSS
(bench/README.md, third round). So a scoring process imports them here, with
scikit-learn hidden while they load, and imports it for real later if it ever needs it (training does).

XGBoost itself is imported on first use (`import_xgboost`): a process that serves the bundle's saved oneDAL model
(`leadscore.model.saved`) needs it only to explain or to fall back, and its import (with SciPy's sparse matrices,
which it imports unconditionally) is ~0.3 s of every start.

This leans on two facts of those libraries, both checked by tests (`tests/model/test_lean.py`): XGBoost falls
back to placeholder classes when `import sklearn` fails, and daal4py's package takes `mb` and `sklearn` from
`sys.modules` when they are there. A library change that breaks either fails the tests, not the service.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

_SKLEARN: Final = "sklearn"
_DAAL4PY_LAYERS: Final = ("daal4py.mb", "daal4py.sklearn")


@contextmanager
def _hidden(names: tuple[str, ...], stand_ins: tuple[str, ...] = ()) -> Iterator[None]:
    """While inside: `import` of each of `names` fails, and each of `stand_ins` is an empty module.

    A name already imported is left as it is (the process uses the real one already).
    """
    blocked = [name for name in names if name not in sys.modules]
    placed = {name: types.ModuleType(name) for name in stand_ins if name not in sys.modules}
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # None in sys.modules makes `import name` fail
    sys.modules.update(placed)
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
        for name, module in placed.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
            parent, _, child = name.rpartition(".")
            if getattr(sys.modules.get(parent), child, None) is module:
                delattr(sys.modules[parent], child)  # `import daal4py.mb` later loads the real one


def import_xgboost() -> types.ModuleType:
    """`xgboost`, imported with scikit-learn hidden unless the process has imported either already.

    The model layer's modules call this where they need XGBoost at run time (and import it for their annotations
    under TYPE_CHECKING only), so that this import is the process's first.
    """
    loaded = sys.modules.get("xgboost")
    if loaded is not None:
        return loaded
    with _hidden((_SKLEARN,)):
        return importlib.import_module("xgboost")


class _NeverRaised(Exception):
    """Stands for XGBoost's error class in a process that has not imported XGBoost (which then raised nothing)."""


def xgboost_error() -> type[Exception]:
    """XGBoost's error class for an `except` clause, without importing XGBoost where nothing has imported it."""
    loaded = sys.modules.get("xgboost")
    error: type[Exception] = loaded.core.XGBoostError if loaded is not None else _NeverRaised
    return error


def import_daal4py() -> Any:  # noqa: ANN401 - daal4py has no type information
    """`daal4py` without `daal4py.mb` and `daal4py.sklearn` (`import daal4py.mb` still works afterwards)."""
    loaded = sys.modules.get("daal4py")
    if loaded is not None:
        return loaded
    with _hidden((_SKLEARN,), _DAAL4PY_LAYERS):
        return importlib.import_module("daal4py")


__all__ = ["import_daal4py", "import_xgboost", "xgboost_error"]
