"""Spool faults with the API as a real process: a full disk (a small tmpfs), poison and damaged segments at start."""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.lake import duplicated, row_counts, scored_rows, table_rows
from tests.support.leads import synthetic_leads
from tests.support.server import ServerProcess, start_server
from tests.support.waiting import wait_until

from leadscore.lake.records import serialize
from leadscore.lake.spool import frame
from leadscore.model.bundle import Scorer

pytestmark = pytest.mark.e2e
LEADS = synthetic_leads(3, seed=11)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for the test (the spool's disk), unmounted after it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Fill the disk to the last byte with a file; returns it (remove it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            with pytest.raises(OSError, match="No space") as full:  # noqa: PT012 - ends when the disk is full
                while True:
                    os.write(fd, b"\0" * size)
            assert full.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def _post(server: ServerProcess, acknowledged: dict[str, int], refused: dict[str, int]) -> httpx.Response:
    request_id = f"disk-{uuid.uuid4().hex[:12]}"
    response = httpx.post(
        f"{server.url}/api/v1/scoring/score", json={"request_id": request_id, "leads": LEADS}, timeout=30
    )
    (acknowledged if response.status_code == 200 else refused)[request_id] = len(LEADS)
    return response


def _ready(server: ServerProcess) -> int:
    return httpx.get(f"{server.url}/api/v1/health/ready", timeout=5).status_code


@pytest.mark.parametrize("durability", ["sync", "async"])
def test_a_full_spool_disk_refuses_rows_turns_readiness_off_and_recovers(
    tmp_path: Path, tiny_bundle: Path, small_disk: Path, durability: str
) -> None:
    """ENOSPC: scoring answers 503 (nothing acknowledged unwritten), readiness is 503 until the disk has room again."""
    server = start_server(
        tmp_path,
        env={
            "LEADSCORE_MODEL_DIR": str(tiny_bundle),
            "LEADSCORE_SPOOL_DIR": str(small_disk / "spool"),
            "LEADSCORE_LAKE_DURABILITY": durability,
            "LEADSCORE_LAKE_SEGMENT_MAX_AGE_SECONDS": "60",
        },
    )
    acknowledged: dict[str, int] = {}
    refused: dict[str, int] = {}
    try:
        for _ in range(5):
            assert _post(server, acknowledged, refused).status_code == 200
        filler = _fill(small_disk)
        answer = wait_until(
            lambda: (r := _post(server, acknowledged, refused)).status_code == 503 and r,
            timeout=30,
            what="a scoring request refused on the full disk",
        )
        body = answer.json()
        assert body["code"] == "lake_write_failed"
        assert "spool" not in body["message"]  # the details stay in the log
        assert answer.headers["retry-after"]
        assert _ready(server) == 503
        filler.unlink()
        wait_until(lambda: _ready(server) == 200, timeout=30, what="readiness back once the disk has room")
        for _ in range(5):
            assert _post(server, acknowledged, refused).status_code == 200
    finally:
        assert server.stop() == 0, server.log()[-3000:]
    counts = row_counts(table_rows(server.env))
    kept = {rid for rid, _ in counts}
    print(f"\n[enospc-{durability}] acknowledged={sum(acknowledged.values())} refused={sum(refused.values())} "
          f"rows_in_table={sum(counts.values())} duplicated={duplicated(counts)}")  # fmt: skip
    assert kept == set(acknowledged)
    assert sum(counts.values()) == sum(acknowledged.values())
    assert duplicated(counts) == 0
    assert "spool_write_failed" in server.log()


def test_a_poison_segment_at_start_is_quarantined_and_the_server_serves(
    tmp_path: Path, tiny_bundle: Path, tiny_scorer: Scorer
) -> None:
    """A spool segment this version cannot read no longer stops start-up: it is quarantined, health says so."""
    orphan = tmp_path / "spool" / "w-poison"
    orphan.mkdir(parents=True)
    future = b'{"v": 99, "groups": []}'
    (orphan / "000000000001.seg").write_bytes(frame(len(future).to_bytes(4, "little") + future))
    server = start_server(tmp_path, env={"LEADSCORE_MODEL_DIR": str(tiny_bundle)})
    try:
        lake = wait_until(
            lambda: (
                (s := httpx.get(f"{server.url}/api/v1/health", timeout=5).json()["lake"])["quarantined_segments"] and s
            ),
            what="the poison segment quarantined",
        )
        assert lake["quarantined_segments"] == 1
        assert httpx.post(f"{server.url}/api/v1/scoring/score", json={"leads": LEADS}, timeout=30).status_code == 200
    finally:
        assert server.stop() == 0
    assert "lake_segment_quarantined" in server.log()
    assert (tmp_path / "spool" / "quarantine" / "w-poison-000000000001.seg").exists()


def test_a_damaged_segment_loses_only_its_damaged_record(
    tmp_path: Path, tiny_bundle: Path, tiny_scorer: Scorer
) -> None:
    """A flipped byte mid-segment: the records before and after it reach the table; the file is kept aside."""
    orphan = tmp_path / "spool" / "w-damaged"
    orphan.mkdir(parents=True)
    middle = bytearray(frame(serialize([scored_rows(tiny_scorer, 2, "damaged")])))
    middle[len(middle) // 2] ^= 0x01
    (orphan / "000000000001.seg").write_bytes(
        frame(serialize([scored_rows(tiny_scorer, 2, "before")]))
        + bytes(middle)
        + frame(serialize([scored_rows(tiny_scorer, 2, "after")]))
    )
    server = start_server(tmp_path, env={"LEADSCORE_MODEL_DIR": str(tiny_bundle)})
    try:
        wait_until(
            lambda: httpx.get(f"{server.url}/api/v1/health", timeout=5).json()["lake"]["quarantined_segments"],
            what="the damaged segment committed and quarantined",
        )
    finally:
        assert server.stop() == 0
    counts = row_counts(table_rows(server.env))
    assert sorted(counts) == [("after", "L0"), ("after", "L1"), ("before", "L0"), ("before", "L1")]
    assert "bad_bytes" in server.log()
