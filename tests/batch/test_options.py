"""A batch run's chunk size and, when recorded, its commit size: the ones asked for, else the defaults."""

from __future__ import annotations

from leadscore.batch.options import DEFAULT_CHUNK_ROWS, RECORDED_COMMIT_ROWS, chunk_rows_for, commit_rows_for


def test_every_run_reads_small_chunks_and_a_recorded_one_commits_large_spans() -> None:
    """Unasked, a run takes 16,384 rows at a time (memory); a recorded one commits 65,536 input rows at a time."""
    assert chunk_rows_for(None) == DEFAULT_CHUNK_ROWS == 16_384
    assert commit_rows_for(None) == RECORDED_COMMIT_ROWS == 65_536
    assert RECORDED_COMMIT_ROWS % DEFAULT_CHUNK_ROWS == 0  # whole chunks per commit: the boundaries of old runs


def test_the_chunk_size_asked_for_is_also_the_commit_size() -> None:
    """--chunk-rows is used as given, and a recorded run then commits a chunk at a time (its old boundaries)."""
    assert chunk_rows_for(250) == commit_rows_for(250) == 250
