"""The directory where every worker writes its Prometheus metrics, set up before any worker starts.

prometheus_client picks its storage when it is first imported (`PROMETHEUS_MULTIPROC_DIR` set: one mmap file per
metric type and process), so this module must not import it, and `serve` prepares the directory before it
imports the app.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Final

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
DIR_PREFIX: Final = "leadscore-metrics-"


def alive(pid: int) -> bool:
    """Whether a process with this id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def file_pid(path: Path) -> int | None:
    """The process id in a metric file's name (`counter_1234.db`), or None."""
    tail = path.stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def remove_stale_dirs(parent: Path) -> int:
    """Remove temporary metrics directories of servers that died without cleaning up (SIGKILL, OOM).

    A directory goes only when the process that made it (its name holds the pid) and every process that wrote
    to it are gone; returns how many went.
    """
    removed = 0
    for directory in parent.glob(f"{DIR_PREFIX}*"):
        owner = directory.name.removeprefix(DIR_PREFIX).split("-", 1)[0]
        if not owner.isdigit() or not directory.is_dir():
            continue
        pids = {int(owner)} | {pid for path in directory.glob("*.db") if (pid := file_pid(path)) is not None}
        if not any(alive(pid) for pid in pids):
            shutil.rmtree(directory, ignore_errors=True)
            removed += 1
    return removed


def wipe(directory: Path) -> int:
    """Remove metric files left by an earlier server (their counts would add to ours); returns how many."""
    stale = list(directory.glob("*.db"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def remove_dir(directory: Path, owner_pid: int) -> None:
    """Remove the metrics directory, but only from the process that made it (never from a worker)."""
    if os.getpid() == owner_pid:
        shutil.rmtree(directory, ignore_errors=True)


def prepare_multiprocess_dir() -> Path:
    """A clean metrics directory in `PROMETHEUS_MULTIPROC_DIR`, for the server this process starts.

    A directory the operator set is kept and emptied of stale files (their counts would add to ours); otherwise
    a fresh temporary one is made and removed when this process exits. Workers inherit the variable, so their
    counts add up in one scrape.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        wipe(directory)
        return directory
    remove_stale_dirs(Path(tempfile.gettempdir()))
    directory = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-"))
    os.environ[MULTIPROC_ENV] = str(directory)
    atexit.register(remove_dir, directory, os.getpid())
    return directory
