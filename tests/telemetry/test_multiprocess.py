"""The metrics directory shared by workers, and the exposition that sums their files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from leadscore.telemetry.multiprocess import (
    DIR_PREFIX,
    MULTIPROC_ENV,
    alive,
    prepare_multiprocess_dir,
    remove_dir,
    remove_stale_dirs,
    wipe,
)

# A process that records like one worker and exits without its clean-up (as a crashed worker would).
WORKER = """
import sys
from leadscore.telemetry import metrics
metrics.LEADS.inc(int(sys.argv[1]))
metrics.set_lake_backlog(int(sys.argv[1]), 100, 1.5)
"""
# A process that records, then renders the exposition of every process's files (as the scraped worker does).
SCRAPE = """
from leadscore.telemetry import metrics
metrics.LEADS.inc(1)
metrics.set_lake_backlog(2, 10, 0.5)
metrics.set_model_info("v9")
print(metrics.render()[0].decode())
"""
EXIT = """
from leadscore.telemetry import metrics
metrics.set_lake_backlog(3, 30, 0.1)
metrics.process_exit()
"""


def run(script: str, directory: Path, *args: str) -> str:
    """Run `script` as a separate process writing its metrics into `directory`; its stdout."""
    env = {**os.environ, MULTIPROC_ENV: str(directory)}
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, timeout=60, check=True)
    return done.stdout.decode()


def sample(exposition: str, name: str) -> float | None:
    """The value of the first sample line starting with `name`, or None."""
    for line in exposition.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_counters_of_all_processes_add_up_and_dead_ones_leave_live_gauges(tmp_path):
    """Counters sum over every process that ever ran; backlog gauges count only processes still alive."""
    run(WORKER, tmp_path, "5")
    run(WORKER, tmp_path, "7")
    exposition = run(SCRAPE, tmp_path)
    assert sample(exposition, "leadscore_leads_scored_total") == 13.0
    assert sample(exposition, "leadscore_lake_backlog_rows") == 2.0
    assert sample(exposition, 'leadscore_model_info{model_version="v9"}') == 1.0
    assert "process_resident_memory_bytes{pid=" in exposition


def test_a_crashed_process_live_gauge_files_are_removed_at_scrape(tmp_path):
    """The scrape deletes the live-gauge files of processes that no longer exist, and keeps their counters."""
    run(WORKER, tmp_path, "4")
    run(SCRAPE, tmp_path)
    names = sorted(p.name.rsplit("_", 1)[0] for p in tmp_path.glob("*.db"))
    assert names.count("counter") == 2
    assert names.count("gauge_livesum") == 1  # only the scraping process's own, which also ended uncleanly


def test_process_exit_drops_its_own_live_gauges(tmp_path):
    """A worker that exits cleanly removes its live-gauge files itself."""
    run(EXIT, tmp_path)
    assert not list(tmp_path.glob("gauge_live*.db"))
    assert list(tmp_path.glob("counter_*.db"))


def test_prepare_makes_a_fresh_directory_and_sets_the_variable(monkeypatch):
    """Without a configured directory a new empty one is made and exported for the workers."""
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    directory = prepare_multiprocess_dir()
    try:
        assert os.environ[MULTIPROC_ENV] == str(directory)
        assert directory.is_dir()
        assert not list(directory.iterdir())
    finally:
        remove_dir(directory, os.getpid())
    assert not directory.exists()


def test_prepare_wipes_stale_files_of_a_configured_directory(monkeypatch, tmp_path):
    """A directory the operator set is kept, and metric files of an earlier run are removed from it."""
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("keep")
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    assert prepare_multiprocess_dir() == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_prepare_creates_a_configured_directory_that_does_not_exist(monkeypatch, tmp_path):
    """A configured directory that does not exist yet is created."""
    target = tmp_path / "metrics"
    monkeypatch.setenv(MULTIPROC_ENV, str(target))
    assert prepare_multiprocess_dir().is_dir()


def test_only_the_process_that_made_the_directory_removes_it(tmp_path):
    """remove_dir from any other process (a worker) leaves the directory alone."""
    remove_dir(tmp_path, os.getpid() + 1)
    assert tmp_path.is_dir()


def test_wipe_counts_what_it_removed(tmp_path):
    """Wipe removes every .db file and says how many."""
    for name in ("histogram_1.db", "gauge_livesum_2.db"):
        (tmp_path / name).write_bytes(b"")
    assert wipe(tmp_path) == 2


def dead_pid() -> int:
    """The id of a process that has just exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid


def test_alive_tells_running_from_exited_processes():
    """This process is alive; one that exited is not."""
    assert alive(os.getpid())
    assert not alive(dead_pid())


def test_stale_directories_of_dead_servers_are_removed(tmp_path):
    """A leftover directory goes only when its maker and every process that wrote to it are gone."""
    gone = dead_pid()
    stale = tmp_path / f"{DIR_PREFIX}{gone}-x1"
    stale.mkdir()
    (stale / f"counter_{gone}.db").write_bytes(b"")
    owner_alive = tmp_path / f"{DIR_PREFIX}{os.getpid()}-x2"
    owner_alive.mkdir()
    writer_alive = tmp_path / f"{DIR_PREFIX}{gone}-x3"
    writer_alive.mkdir()
    (writer_alive / f"histogram_{os.getpid()}.db").write_bytes(b"")
    foreign = tmp_path / f"{DIR_PREFIX}manual"
    foreign.mkdir()
    assert remove_stale_dirs(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([owner_alive.name, writer_alive.name, foreign.name])
