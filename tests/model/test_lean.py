"""Scoring processes load XGBoost and daal4py without scikit-learn, and everything else still finds it.

Imports are process-wide, so each check runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from leadscore.model import lean


def run_python(code: str) -> dict[str, object]:
    """Run `code` in a fresh interpreter; it prints one JSON object, returned here."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_scoring_a_table_never_imports_scikit_learn():
    """Loading the packaged model and scoring with oneDAL leaves scikit-learn and SciPy's statistics unimported."""
    seen = run_python(
        """
        import json, sys
        import pyarrow as pa
        from leadscore.columnar import resolve_bundle, score_table
        scorer = resolve_bundle(None)
        scored = score_table(pa.table({"lead_id": ["a"], "company_size": ["51-200"]}), bundle=scorer)
        print(json.dumps({
            "predictor": str(scorer.predictor),
            "score": scored["score"][0].as_py(),
            "loaded": [m for m in ("sklearn", "scipy.stats", "daal4py.mb", "daal4py.sklearn") if m in sys.modules],
        }))
        """
    )
    assert str(seen["predictor"]).startswith("onedal")
    assert seen["score"] in (1, 2, 3, 4, 5)
    assert seen["loaded"] == []


def test_scoring_from_the_saved_model_never_imports_xgboost():
    """A process serving the packaged bundle's saved oneDAL model imports XGBoost only when it explains."""
    seen = run_python(
        """
        import json, sys
        import pyarrow as pa
        from leadscore.columnar import resolve_bundle, score_table
        scorer = resolve_bundle(None)
        table = pa.table({"lead_id": ["a"], "company_size": ["51-200"]})
        scored = score_table(table, bundle=scorer)
        before = "xgboost" in sys.modules
        explained = score_table(table, bundle=scorer, explain=True)
        print(json.dumps({
            "source": scorer.predictor_model_source,
            "xgboost_before_explaining": before,
            "xgboost_after": "xgboost" in sys.modules,
            "same_score": scored["score"][0].as_py() == explained["score"][0].as_py(),
            "explained": explained["explained"][0].as_py(),
        }))
        """
    )
    assert seen == {
        "source": "bundle",
        "xgboost_before_explaining": False,
        "xgboost_after": True,
        "same_score": True,
        "explained": True,
    }


def test_xgboosts_error_class_is_named_without_importing_xgboost():
    """Before XGBoost is imported, `xgboost_error()` is a class nothing raises; afterwards it is XGBoost's own."""
    seen = run_python(
        """
        import json, sys
        from leadscore.model.lean import import_xgboost, xgboost_error
        before = xgboost_error()
        imported = "xgboost" in sys.modules
        import_xgboost()
        after = xgboost_error()
        print(json.dumps({
            "imported_by_asking": imported,
            "before_is_xgboosts": before is import_xgboost().core.XGBoostError,
            "after_is_xgboosts": after is import_xgboost().core.XGBoostError,
        }))
        """
    )
    assert seen == {"imported_by_asking": False, "before_is_xgboosts": False, "after_is_xgboosts": True}


def test_scikit_learn_and_daal4pys_converter_still_import_afterwards():
    """After the lean imports, `import sklearn` and `import daal4py.mb` give the real modules."""
    seen = run_python(
        """
        import json
        from leadscore.model.lean import import_daal4py, import_xgboost
        xgb = import_xgboost()
        daal4py = import_daal4py()
        import daal4py.mb
        import sklearn.linear_model
        print(json.dumps({
            "convert_model": callable(getattr(daal4py.mb, "convert_model", None)),
            "logistic": sklearn.linear_model.LogisticRegression.__name__,
            "booster": xgb.Booster.__name__,
        }))
        """
    )
    assert seen == {"convert_model": True, "logistic": "LogisticRegression", "booster": "Booster"}


def test_scikit_learn_loaded_first_is_left_to_xgboost():
    """A process that imported scikit-learn before the model (training) gets XGBoost's scikit-learn classes."""
    seen = run_python(
        """
        import json
        import sklearn.base
        from leadscore.model.lean import import_xgboost
        xgb = import_xgboost()
        print(json.dumps({"installed": xgb.compat.SKLEARN_INSTALLED}))
        """
    )
    assert seen == {"installed": True}


def test_hiding_puts_sys_modules_back_when_the_import_fails():
    """A failed import inside the hidden block leaves no placeholder or stand-in behind in `sys.modules`."""
    before = {name: sys.modules.get(name) for name in ("leadscore_absent", "leadscore_absent.part")}
    with pytest.raises(ModuleNotFoundError), lean._hidden(("leadscore_absent",), ("leadscore_absent.part",)):
        import leadscore_absent  # type: ignore[import-not-found]  # noqa: F401, PLC0415 - hidden: must fail
    assert {name: sys.modules.get(name) for name in before} == before
