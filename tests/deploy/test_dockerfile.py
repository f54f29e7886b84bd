"""The Dockerfile's contract with the platform (the container test builds and runs it for real)."""

from __future__ import annotations

import json
import re

from tests.deploy.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str, text: str = DOCKERFILE) -> list[str]:
    """Arguments of every instruction `name`, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.upper().startswith(f"{name} ")]


def stage(name: str) -> str:
    """The text of one build stage, from its FROM to the next."""
    stages = re.split(r"^(?=FROM )", DOCKERFILE, flags=re.MULTILINE)
    (found,) = [s for s in stages if s.startswith("FROM ") and s.split("\n", 1)[0].endswith(f" AS {name}")]
    return found


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form instruction, after any --flag=value options (RUN --mount=...)."""
    command = re.sub(r"^(--\S+\s+)*", "", arguments)
    parsed = json.loads(command)
    assert isinstance(parsed, list)
    return [str(part) for part in parsed]


def test_base_image_is_a_build_argument_defaulting_to_distroless() -> None:
    """Both stages but uv's start from BASE_IMAGE/BASE_TAG, by default distroless Python 3.11 on Debian 12."""
    assert "BASE_IMAGE=gcr.io/distroless/python3-debian12" in instructions("ARG")
    assert [f for f in instructions("FROM") if "BASE_IMAGE" in f] == [
        "${BASE_IMAGE}:${BASE_TAG} AS builder",
        "${BASE_IMAGE}:${BASE_TAG} AS runtime",
    ]


def test_builder_makes_the_venv_for_the_runtime_interpreter() -> None:
    """The builder's uv makes /opt/venv with the base's own /usr/bin/python3.11, the interpreter the runtime runs."""
    env = " ".join(instructions("ENV", stage("builder")))
    assert "UV_PYTHON=/usr/bin/python3.11" in env
    assert "UV_PROJECT_ENVIRONMENT=/opt/venv" in env
    assert "COPY --from=builder /opt/venv /opt/venv" in stage("runtime")


def test_no_instruction_needs_a_shell() -> None:
    """Every RUN is in exec form (the base has no shell), and the runtime stage runs nothing at build time."""
    runs = instructions("RUN")
    assert runs
    assert all(exec_form(run)[0] in ("uv", "/usr/bin/python3.11") for run in runs)
    assert instructions("RUN", stage("runtime")) == []


def test_dependencies_come_from_the_lock_file_without_dev_tools() -> None:
    """The venv is built with `uv sync --locked`, no dependency groups and no editable install."""
    syncs = [command for command in map(exec_form, instructions("RUN")) if command[:2] == ["uv", "sync"]]
    assert len(syncs) == 2
    assert all({"--locked", "--no-default-groups", "--no-editable"} <= set(command) for command in syncs)


def test_runs_as_a_numeric_non_root_user() -> None:
    """The final USER is a numeric uid other than 0."""
    user = instructions("USER")[-1]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user)


def test_entrypoint_is_python_in_exec_form() -> None:
    """ENTRYPOINT is a JSON array running the venv's Python, so the server itself receives SIGTERM."""
    (entrypoint,) = instructions("ENTRYPOINT")
    assert json.loads(entrypoint) == ["/opt/venv/bin/python", "-m", "leadscore", "serve"]


def test_healthcheck_probes_liveness_with_python_in_exec_form() -> None:
    """HEALTHCHECK runs Python's urllib on /api/v1/health/live as an exec-form CMD (no shell, no curl)."""
    (healthcheck,) = instructions("HEALTHCHECK")
    command = exec_form(healthcheck.split(" CMD ", 1)[1])
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2]
    assert "/api/v1/health/live" in command[2]


def test_spool_is_a_volume_owned_by_the_service_user() -> None:
    """The spool lives on a volume (the root filesystem may be read-only), its directories owned by uid 10001."""
    assert instructions("VOLUME") == ['["/var/lib/leadscore"]']
    assert "LEADSCORE_SPOOL_DIR=/var/lib/leadscore/spool" in " ".join(instructions("ENV"))
    assert "--from=builder --chown=10001:10001 /data /var/lib/leadscore" in instructions("COPY", stage("runtime"))


def test_dockerignore_sends_only_what_the_build_needs() -> None:
    """The build context is an allow-list: sources, project file, lock file and README."""
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    assert {"!src", "!pyproject.toml", "!uv.lock", "!README.md"} <= set(lines)
