"""Fixtures shared by every test: a tiny model trained here, an app, a real server process."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from leadscore.app import create_app
from leadscore.config import Settings
from leadscore.model.bundle import Scorer, default_bundle_dir, load_bundle
from leadscore.training.synth import synthesize
from leadscore.training.train import TrainConfig, train_bundle
from tests.support.rgw import RgwServer, start_rgw
from tests.support.scheduling import check_grouped, group_for_xdist
from tests.support.server import ServerProcess, start_server


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model trained on synthetic data in this test session (seconds, not minutes)."""
    out = tmp_path_factory.mktemp("bundle")
    train_bundle(synthesize(3000, seed=11), out, TrainConfig(num_boost_round=5, max_depth=3, version="test-tiny"))
    return out


@pytest.fixture(scope="session")
def tiny_scorer(tiny_bundle: Path) -> Scorer:
    """The tiny bundle, loaded and warmed up."""
    return load_bundle(tiny_bundle)


@pytest.fixture
def bundle_copy(tmp_path: Path, tiny_bundle: Path) -> Path:
    """A private copy of the tiny bundle that a test may break (corrupt, truncate, edit)."""
    copy = tmp_path / "bundle-copy"
    shutil.copytree(tiny_bundle, copy)
    return copy


@pytest.fixture(scope="session")
def default_scorer() -> Scorer:
    """The bundle shipped in the package."""
    return load_bundle(default_bundle_dir())


@pytest.fixture
def settings(tmp_path: Path, tiny_bundle: Path) -> Settings:
    """Settings for an app under test: tiny model, everything under tmp_path.

    Segments are converted to Parquet in the worker's own flusher thread: the converter process (the default)
    takes ~2 s to start and stop, which every in-process test would pay. That process is tested by
    tests/lake/test_sink.py and runs in every real-server test.
    """
    return Settings(
        model_dir=tiny_bundle,
        spool_dir=tmp_path / "spool",
        lake_uri=str(tmp_path / "lake"),
        lake_commit_in_subprocess=False,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The app in-process, lifespan run (fast API tests; the real server is tested separately)."""
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def server(tmp_path: Path, tiny_bundle: Path) -> Iterator[ServerProcess]:
    """`leadscore serve` as a real process on a free port, with the tiny model and a local lake."""
    process = start_server(tmp_path, env={"LEADSCORE_MODEL_DIR": str(tiny_bundle)})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> Iterator[ServerProcess]:
    """One `leadscore serve` process (as `server`) for the tests of a module that only send requests and read answers.

    A test that stops, signals or reconfigures the server, or reads its log or lake, takes `server` instead.
    """
    process = start_server(tmp_path_factory.mktemp("server"), env={"LEADSCORE_MODEL_DIR": str(tiny_bundle)})
    yield process
    process.stop()


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RgwServer]:
    """One real S3-protocol server (Ceph RADOS Gateway) on 127.0.0.1 for every test of the run that needs S3.

    Defined here, at the root, so that the lake, batch and Spark tests share one cluster per test process (a
    fixture imported into another conftest would be a second fixture, and a second cluster).
    """
    with start_rgw(tmp_path_factory.mktemp("rgw")) as server:
        yield server


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect load tests of the other environment (`ENV`, default dev); group the rest for pytest-xdist."""
    env = os.environ.get("ENV", "dev").lower()
    keep, drop = [], []
    for item in items:
        suites = item.get_closest_marker("suites")
        (keep if suites is None or env in suites.args else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    group_for_xdist(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Check that pytest-xdist applied the groups (after its own collection hook has run)."""
    check_grouped(session)
