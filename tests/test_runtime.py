"""Process-level settings: pandas left out of the project's own processes, their exit (each in a fresh interpreter)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq

from tests.batch.conftest import lead_table


def run_python(code: str) -> dict[str, object]:
    """Run `code` in a fresh interpreter of this environment and return the JSON object it prints last."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_environment_has_pandas() -> None:
    """The environment has pandas (the development group), so the tests below refuse a real package."""
    assert importlib.util.find_spec("pandas") is not None


def test_pyarrow_converts_without_loading_pandas_once_it_is_left_out() -> None:
    """After leave_out_pandas, pyarrow converts lists and NumPy arrays (repeatedly) and pandas stays unloaded."""
    result = run_python("""
        import json, sys
        from leadscore.runtime import leave_out_pandas
        leave_out_pandas()
        import numpy as np, pyarrow as pa
        values = [pa.array([1, None, 3]).to_pylist() for _ in range(3)]
        values.append(pa.array(np.arange(3), pa.float64()).to_pylist())
        values.append(pa.array([1.5, float("nan")], pa.float64(), from_pandas=True).null_count)
        print(json.dumps({"values": values, "pandas": "pandas" in sys.modules}))
    """)
    assert result == {"values": [[1, None, 3]] * 3 + [[0.0, 1.0, 2.0], 1], "pandas": False}


def test_an_import_of_pandas_fails_saying_why() -> None:
    """`import pandas` in such a process raises ModuleNotFoundError naming leave_out_pandas."""
    result = run_python("""
        import json
        from leadscore.runtime import leave_out_pandas
        leave_out_pandas()
        leave_out_pandas()  # twice: still one refusal
        try:
            import pandas.core.frame
        except ModuleNotFoundError as exc:
            error = str(exc)
        import sys
        refusals = sum(type(f).__name__ == "_WithoutPandas" for f in sys.meta_path)
        print(json.dumps({"error": error, "refusals": refusals}))
    """)
    assert result == {
        "error": "pandas is left out of this leadscore process (leadscore.runtime.leave_out_pandas)",
        "refusals": 1,
    }


def test_a_process_that_imported_pandas_keeps_it() -> None:
    """Where pandas is imported already (a user's own process), leave_out_pandas changes nothing."""
    result = run_python("""
        import json, sys
        import pandas
        from leadscore.runtime import leave_out_pandas
        leave_out_pandas()
        import pandas.api.types
        print(json.dumps({"finders": [type(f).__name__ for f in sys.meta_path].count("_WithoutPandas")}))
    """)
    assert result == {"finders": 0}


def test_importing_the_package_loads_no_pandas() -> None:
    """Importing leadscore, its scoring core and the lake converts nothing, so a process can still leave pandas out."""
    result = run_python("""
        import json, sys
        import leadscore, leadscore.cli, leadscore.columnar, leadscore.lake.sink, leadscore.app
        print(json.dumps({"pandas": "pandas" in sys.modules}))
    """)
    assert result == {"pandas": False}


def test_leadscore_score_runs_without_pandas(tmp_path: Path, tiny_bundle: Path) -> None:
    """The `leadscore` command scores a Parquet file and never loads pandas, though it is installed."""
    pq.write_table(lead_table(200), tmp_path / "in.parquet")
    result = run_python(f"""
        import atexit, json, sys
        atexit.register(lambda: print(json.dumps({{"pandas": "pandas" in sys.modules}})))
        from leadscore.cli import main
        sys.argv = ["leadscore", "score", {str(tmp_path / "in.parquet")!r}, "--out", {str(tmp_path / "out.parquet")!r},
                    "--workers", "2", "--quiet", "--bundle", {str(tiny_bundle)!r}]
        main()
    """)
    assert pq.read_metadata(tmp_path / "out.parquet").num_rows == 200
    assert result == {"pandas": False}


def test_the_command_exits_with_what_it_loaded_frozen(tmp_path: Path, tiny_bundle: Path) -> None:
    """After a `leadscore score` run, what the process loaded is frozen (no final collection), its output whole."""
    pq.write_table(lead_table(50), tmp_path / "in.parquet")
    result = run_python(f"""
        import atexit, gc, json, sys
        before = gc.get_freeze_count()
        atexit.register(lambda: print(json.dumps({{"before": before, "frozen": gc.get_freeze_count()}})))
        from leadscore.cli import main
        sys.argv = ["leadscore", "score", {str(tmp_path / "in.parquet")!r}, "--out", {str(tmp_path / "out.parquet")!r},
                    "--quiet", "--bundle", {str(tiny_bundle)!r}]
        main()
    """)
    assert pq.read_metadata(tmp_path / "out.parquet").num_rows == 50
    assert result["before"] == 0
    assert isinstance(result["frozen"], int)
    assert result["frozen"] > 10_000  # the model stack's objects: modules, classes, functions
