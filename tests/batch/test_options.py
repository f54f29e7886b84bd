"""A batch run's chunk size: the one asked for, else the default of a plain or a recorded run."""

from __future__ import annotations

from leadscore.batch.options import DEFAULT_CHUNK_ROWS, RECORDED_CHUNK_ROWS, chunk_rows_for


def test_a_plain_run_reads_small_chunks_and_a_recorded_one_large_ones() -> None:
    """Unasked, a plain run takes 16,384 rows at a time (memory) and a recorded run 65,536 (one commit each)."""
    assert chunk_rows_for(None, record=False) == DEFAULT_CHUNK_ROWS == 16_384
    assert chunk_rows_for(None, record=True) == RECORDED_CHUNK_ROWS == 65_536


def test_the_chunk_size_asked_for_wins() -> None:
    """--chunk-rows is used as given, recorded or not."""
    assert chunk_rows_for(250, record=False) == chunk_rows_for(250, record=True) == 250
