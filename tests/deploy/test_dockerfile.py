"""The Dockerfile's contract with the platform (the container test builds and runs it for real)."""

from __future__ import annotations

import json
import re

from tests.deploy.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    """Arguments of every instruction `name`, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.upper().startswith(f"{name} ")]


def test_base_image_is_a_build_argument() -> None:
    """Every stage but uv's starts from the BASE_IMAGE/BASE_TAG arguments."""
    assert "BASE_IMAGE=python" in instructions("ARG")
    assert [f for f in instructions("FROM") if "BASE_IMAGE" in f] == [
        "${BASE_IMAGE}:${BASE_TAG} AS builder",
        "${BASE_IMAGE}:${BASE_TAG} AS runtime",
    ]


def test_dependencies_come_from_the_lock_file_without_dev_tools() -> None:
    """The venv is built with `uv sync --locked`, no dependency groups and no editable install."""
    syncs = [r for r in instructions("RUN") if "uv sync" in r]
    assert syncs
    assert all("--locked" in r and "--no-default-groups" in r and "--no-editable" in r for r in syncs)


def test_runs_as_a_numeric_non_root_user() -> None:
    """The final USER is a numeric uid other than 0."""
    user = instructions("USER")[-1]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user)


def test_entrypoint_is_exec_form() -> None:
    """ENTRYPOINT is a JSON array, so the server itself receives SIGTERM."""
    (entrypoint,) = instructions("ENTRYPOINT")
    assert json.loads(entrypoint) == ["leadscore", "serve"]


def test_healthcheck_probes_liveness_with_python() -> None:
    """HEALTHCHECK calls /api/v1/health/live with Python's urllib (no curl in slim images)."""
    (healthcheck,) = instructions("HEALTHCHECK")
    assert "urllib.request" in healthcheck
    assert "/api/v1/health/live" in healthcheck


def test_spool_is_a_volume() -> None:
    """The spool lives on a volume: the root filesystem may be read-only."""
    assert instructions("VOLUME") == ['["/var/lib/leadscore"]']
    assert "LEADSCORE_SPOOL_DIR=/var/lib/leadscore/spool" in " ".join(instructions("ENV"))


def test_dockerignore_sends_only_what_the_build_needs() -> None:
    """The build context is an allow-list: sources, project file, lock file and README."""
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    assert {"!src", "!pyproject.toml", "!uv.lock", "!README.md"} <= set(lines)
