"""Remove the coverage data files (`.coverage.*` here) that coverage cannot read, and say how many.

A process killed outright (the fault tests' SIGKILL) can leave its data file empty, or created without its
schema; `coverage combine` would warn about each and skip it. The readable ones are left for it to combine.
"""

from __future__ import annotations

import sqlite3
import sys
from contextlib import closing
from pathlib import Path


def readable(path: Path) -> bool:
    """Whether `path` is a SQLite database holding coverage's schema table."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return db.execute("select 1 from sqlite_master where name = 'coverage_schema'").fetchone() is not None
    except sqlite3.DatabaseError:
        return False


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
