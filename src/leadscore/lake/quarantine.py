"""Segments kept aside because part of them could not be read, and how an operator re-drives them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from leadscore.lake.flush import PREDICTIONS, Layout, commit_segments
from leadscore.lake.spool import fsync_dir

if TYPE_CHECKING:
    from leadscore.lake.sink import LakeConfig

QUARANTINE_DIR: Final = "quarantine"


def quarantine_dir(spool_dir: Path) -> Path:
    """Where quarantined segments of every process on a spool root are kept."""
    return spool_dir / QUARANTINE_DIR


def quarantine_count(spool_dir: Path) -> int:
    """Segments kept in quarantine under a spool root."""
    directory = quarantine_dir(spool_dir)
    return len(list(directory.glob("*.seg"))) if directory.is_dir() else 0


def requeue(
    config: LakeConfig, segment_ids: list[str] | None = None, layout: Layout = PREDICTIONS
) -> list[dict[str, Any]]:
    """Commit the rows of quarantined segments not yet in the table; release those that now read whole.

    `config` and `layout` name the sink whose quarantine it is: the predictions' (the default) or the outcomes'.
    """
    directory = quarantine_dir(config.spool_dir)
    paths = sorted(directory.glob("*.seg")) if directory.is_dir() else []
    if segment_ids is not None:
        paths = [p for p in paths if p.stem in segment_ids]
    results: list[dict[str, Any]] = []
    for path in paths:
        report = commit_segments(config.table, [(path.stem, str(path))], layout).segments[0]
        released = not report.faulty
        if released:
            path.unlink()
            path.with_suffix(".json").unlink(missing_ok=True)
            fsync_dir(directory)
        results.append(
            {
                "segment": path.stem,
                "rows_committed": report.rows,
                "already_committed": report.already_committed,
                "bad_bytes": report.bad_bytes,
                "bad_records": report.bad_records,
                "released": released,
            }
        )
    return results
