"""Remove the coverage data files (`.coverage.*` here) that coverage cannot read, and say how many.

A process killed outright (the fault tests' SIGKILL) can leave its data file half-created (its schema table
without the version row); `coverage combine` would warn about each and skip it. Whether a file is readable is
coverage's own reader's answer; the readable ones (an empty file reads as no data) are left for it to combine.
"""

from __future__ import annotations

import sys
from pathlib import Path

from coverage import CoverageData
from coverage.exceptions import DataError


def readable(path: Path) -> bool:
    """Whether coverage's own reader reads `path` (a file created without its schema's version row fails it)."""
    try:
        CoverageData(basename=str(path)).read()
    except DataError:
        return False
    return True


def main() -> int:
    """Remove the unreadable data files of the current directory."""
    removed = [path for path in sorted(Path().glob(".coverage.*")) if not readable(path)]
    for path in removed:
        path.unlink()
    if removed:
        print(f"removed {len(removed)} unreadable coverage data file(s) of killed processes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
