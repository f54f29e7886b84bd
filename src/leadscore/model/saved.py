"""The oneDAL model saved in the bundle: converted once when the bundle is written, not in every process that loads it.

Converting the booster to oneDAL and checking it costs ~0.65 s of every process start (decoding the booster's
JSON, building the trees, the probe inputs, freeing the garbage): the CLI, each service worker, each Spark Python
worker. The bundle keeps the converted model as oneDAL's own serialised form (what daal4py pickles, read back
with the pickle protocol's `__setstate__`, never `pickle`), and the probe inputs it was checked on, in one NumPy
`.npz` file read with `allow_pickle=False`. Since format 2 it also keeps the model's missing-value plan
(`MissingAsBounds`: which inputs have a second column, and what a missing value becomes in each column); a
format-1 file's model takes NaN for missing, and is still served.

With the model it keeps XGBoost's answers on the probe inputs, so that a process serving the saved model checks it
without loading the booster or XGBoost (`leadscore.model.lean`): on its own CPU, exactly as a converted model is
checked against XGBoost's.

The file is used only for the booster it was made from (the SHA-256 of the booster file), for the oneDAL release
that wrote it (its archive format is that release's), and when the archive's bytes have the SHA-256 recorded beside
them: oneDAL aborts the process (an uncaught C++ exception) on an archive it cannot parse, so no bytes reach it
unchecked. Like the booster, the file is trusted content: whoever can rewrite it can rewrite the model. A file that
is stale, unreadable or disagrees is passed over with the reason logged, and the booster is loaded and converted as
before.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
import zlib
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from leadscore.model.predictors import (
    MissingAsBounds,
    OneDalPredictor,
    SavedOneDal,
    XGBoostPredictor,
    booster_trees,
    checked_against,
    probe_matrix,
)
from leadscore.model.walk import WalkedForest

if TYPE_CHECKING:
    import xgboost as xgb

ONEDAL_FILE: Final = "model.onedal.npz"
FORMAT: Final = "leadscore-onedal/2"
# The formats read: format 1 has no missing-value plan (its model takes NaN for missing).
_PLAN_FORMATS: Final = {"leadscore-onedal/1": False, FORMAT: True}
_REWRITE_HINT: Final = (
    "the saved oneDAL model predates the missing-value plan and is fed NaN for missing; "
    "`leadscore onedal <bundle dir>` rewrites it (predictions 1.6-2.2x faster from 80 rows, the same answers)"
)

# The standard library's logger, as in predictors.py: the model layer knows nothing of the service's telemetry.
log = logging.getLogger(__name__)


def booster_digest(data: bytes) -> str:
    """The SHA-256 of a booster file's bytes: which booster a saved model belongs to."""
    return hashlib.sha256(data).hexdigest()


def daal_version() -> str | None:
    """The installed oneDAL release, or None where it is not installed."""
    try:
        return metadata.version("daal")
    except metadata.PackageNotFoundError:
        return None


def save_onedal(directory: Path, booster: xgb.Booster, digest: str) -> str | None:
    """Write `directory/model.onedal.npz` for `booster` (whose file has SHA-256 `digest`); None, or why not.

    Not written (the reason returned, nothing left behind) where oneDAL is not installed, cannot represent the
    booster, or disagrees with XGBoost on the probe inputs: loading then converts, or keeps XGBoost's predictor.
    """
    version = daal_version()
    try:
        trees = booster_trees(booster)
        predictor = OneDalPredictor(booster, trees=trees)
        probe = probe_matrix(booster, trees=trees)
        reference = XGBoostPredictor(booster).predict(probe)
        problem = checked_against(reference, predictor, probe)
    except (ImportError, OSError, RuntimeError, TypeError, ValueError, KeyError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if problem is not None:
        return f"disagrees with XGBoost: {problem}"
    data = predictor.archive()
    staged = directory / f".{ONEDAL_FILE}.new"
    with staged.open("wb") as out:
        np.savez_compressed(
            out,
            format=np.str_(FORMAT),
            daal=np.str_(version),
            booster_sha256=np.str_(digest),
            archive_sha256=np.str_(hashlib.sha256(data).hexdigest()),
            archive=np.frombuffer(data, dtype=np.uint8),
            probe=probe,
            reference=reference,
            **_plan_arrays(predictor.missing),
            **_walk_arrays(booster, trees, predictor.missing),
        )
    staged.replace(directory / ONEDAL_FILE)  # a reader sees no file or a whole one
    return None


def _plan_arrays(missing: MissingAsBounds | None) -> dict[str, Any]:
    """The missing-value plan as the file's arrays (none for a model that takes NaN)."""
    if missing is None:
        return {}
    return {
        "missing_inputs": np.array(missing.inputs, dtype=np.int64),
        "missing_copies": missing.copies.astype(np.int64),
        "missing_fill": missing.fill,
    }


def _walk_arrays(booster: xgb.Booster, trees: list[dict[str, Any]], missing: MissingAsBounds | None) -> dict[str, Any]:
    """The forest small calls are walked with (`leadscore.model.walk`), as the file's arrays; none if it cannot be."""
    if missing is None:
        return {}
    try:
        return WalkedForest.of_booster(booster, trees, missing).arrays()
    except ValueError:
        return {}  # the forest is too deep or has categorical splits: small calls stay with oneDAL


def _plan(saved: Any) -> MissingAsBounds | None:  # noqa: ANN401 - NumPy's NpzFile
    """The missing-value plan a file holds, or None; ValueError when its arrays do not make one."""
    if "missing_fill" not in saved:
        return None
    inputs, copies, fill = int(saved["missing_inputs"]), saved["missing_copies"], saved["missing_fill"]
    whole = copies.ndim == fill.ndim == 1 and fill.dtype == np.float32 and copies.dtype == np.int64
    if not whole or fill.size != inputs + copies.size or not np.isin(fill, (-np.inf, np.inf)).all():
        raise ValueError("its missing-value plan is not one")
    if copies.size and (np.any(np.diff(copies) <= 0) or copies[0] < 0 or copies[-1] >= inputs):
        raise ValueError("its missing-value plan copies inputs the model does not have")
    return MissingAsBounds(inputs, copies.astype(np.intp), fill)


def _stale(written: dict[str, str], digest: str) -> str | None:
    """Why a saved model with these labels is not for this booster and this oneDAL, or None when it is."""
    if written["format"] not in _PLAN_FORMATS:
        return f"{ONEDAL_FILE} is in format {written['format']!r}, not {FORMAT!r}"
    if written["booster_sha256"] != digest:
        return f"{ONEDAL_FILE} was made from another booster"
    if written["daal"] != (version := daal_version()):
        return f"{ONEDAL_FILE} was written by oneDAL {written['daal']}, this is {version}"
    return None


def read_onedal(directory: Path, digest: str) -> tuple[SavedOneDal | None, str | None]:
    """The bundle's saved oneDAL model for the booster with SHA-256 `digest`, or None and why it cannot be used."""
    path = directory / ONEDAL_FILE
    if not path.is_file():
        return None, f"the bundle has no {ONEDAL_FILE}"
    try:
        with np.load(path, allow_pickle=False) as saved:
            stale = _stale({key: str(saved[key]) for key in ("format", "daal", "booster_sha256")}, digest)
            if stale is not None:
                return None, stale
            archive = saved["archive"]
            probe = saved["probe"]
            reference = saved["reference"]
            archive_digest = str(saved["archive_sha256"])
            written_format = str(saved["format"])
            missing = _plan(saved) if _PLAN_FORMATS[written_format] else None
            walk, walk_problem = _walk(saved, missing)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        return None, f"{ONEDAL_FILE} is unreadable: {type(exc).__name__}: {exc}"
    shapes_fit = probe.ndim == reference.ndim == 2 and probe.shape[0] == reference.shape[0]
    if archive.dtype != np.uint8 or probe.dtype != np.float32 or not shapes_fit:
        return None, f"{ONEDAL_FILE} holds arrays of other types or shapes"
    data = archive.tobytes()
    if hashlib.sha256(data).hexdigest() != archive_digest:
        return None, f"{ONEDAL_FILE} holds an archive whose SHA-256 is not the one recorded with it"
    if not _PLAN_FORMATS[written_format]:
        log.info("onedal_saved_model_nan_fed hint=%s", _REWRITE_HINT, extra={"hint": _REWRITE_HINT})
    if walk_problem is not None:
        log.warning("walk_unused reason=%s", walk_problem, extra={"reason": f"{ONEDAL_FILE}: {walk_problem}"})
    return SavedOneDal(data, probe, reference.astype(np.float32), missing, walk), None


def _walk(saved: Any, missing: MissingAsBounds | None) -> tuple[WalkedForest | None, str | None]:  # noqa: ANN401
    """The walk of small calls a file holds (None in files written before it, or without a plan), or why not.

    A file whose walk is not whole still serves its oneDAL model: small calls then stay with oneDAL.
    """
    if missing is None:
        return None, None
    try:
        return WalkedForest.from_arrays(saved, missing.columns), None
    except ValueError as exc:
        return None, str(exc)
