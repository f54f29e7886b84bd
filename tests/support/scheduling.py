"""Which tests must run in the same pytest-xdist worker (`./dev test` runs `-n 2 --dist loadgroup`).

A fixture broader than a test is built once per worker process that runs a test needing it. Tests that share
a module-scoped fixture (a real server, a trained model, a load-test run) or a session fixture of a
sub-directory's conftest (the scored lake of tests/report, the synthesized stacks of tests/deploy) are therefore
put in one xdist group, so that fixture is built once per run, as without xdist. Every other test is scheduled
on its own, wherever a worker is free. Fixtures of the root conftest (the tiny model, the RGW cluster) are cheap
enough to be built once in each worker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Modules that start the one local Spark JVM (tests/support/spark.py) run in one worker: one JVM per run.
SHARED_GROUPS = {"tests/test_spark.py": "spark", "tests/test_agreement.py": "spark"}


class _Groups:
    """Union-find over names: a test joins the scope of every broad fixture it uses."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, name: str) -> str:
        parent = self._parent.setdefault(name, name)
        if parent != name:
            parent = self._parent[name] = self.find(parent)
        return parent

    def union(self, first: str, second: str) -> None:
        a, b = self.find(first), self.find(second)
        if a != b:
            # The lexically smaller name wins, so that every worker computes the same group names.
            self._parent[max(a, b)] = min(a, b)


def _scopes(item: pytest.Item, root: str) -> list[str]:
    """The scope names whose fixtures `item` shares with other tests (empty: it may run anywhere).

    `root` is the node id of the tests directory, where the fixtures built once per worker are defined.
    """
    module = item.nodeid.split("::", 1)[0]
    found = [SHARED_GROUPS[module]] if module in SHARED_GROUPS else []
    # pytest has no public API for the fixtures an item uses; _fixtureinfo is what pytest itself reads.
    info = getattr(item, "_fixtureinfo", None)
    used = info.name2fixturedefs.values() if info is not None else ()
    for definitions in used:
        fixturedef = definitions[-1]
        if fixturedef.scope in {"module", "class", "package"}:
            found.append(module if fixturedef.scope != "package" else module.rsplit("/", 1)[0])
        elif fixturedef.scope == "session" and fixturedef.baseid not in {"", root}:
            # A session fixture of a conftest below the root: its directory (baseid) is the group.
            found.append(fixturedef.baseid.split("::", 1)[0])
    return found


def group_for_xdist(items: list[pytest.Item]) -> None:
    """Mark each test that shares a broad fixture with others with the xdist group of all of them."""
    if not items:
        return
    root = Path(__file__).resolve().parents[1].relative_to(items[0].config.rootpath).as_posix()
    groups = _Groups()
    scopes = {item.nodeid: _scopes(item, root) for item in items}
    for found in scopes.values():
        for scope in found[1:]:
            groups.union(found[0], scope)
    for item in items:
        if scopes[item.nodeid]:
            item.add_marker(pytest.mark.xdist_group(groups.find(scopes[item.nodeid][0])))


def check_grouped(session: pytest.Session) -> None:
    """In an xdist worker of a `--dist loadgroup` run, fail unless xdist put each group into its tests' node ids.

    xdist hands the group to its scheduler as a node id suffix (`test@group`); a pytest whose node ids ignore it
    (pytest 9.2 with xdist 3.8) would spread the tests of a group silently, each worker building its fixtures.
    """
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [item.nodeid for item in session.items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if lost:
        raise pytest.UsageError(f"pytest-xdist did not group {len(lost)} tests (first: {lost[0]}); see pyproject.toml")
