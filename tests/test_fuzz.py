"""Contract fuzzing: schemathesis drives the app in-process from the app's own OpenAPI document.

Every operation gets schema-valid and schema-breaking requests (examples, coverage and fuzzing phases, every
built-in check: no 5xx, only documented statuses, responses matching their schemas, invalid data rejected,
valid data accepted, auth not ignored). Runs with a key configured, so the 401 paths are part of the contract.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import positive_data_acceptance

from leadscore.api.security import generate_key
from leadscore.app import create_app
from leadscore.config import Settings
from leadscore.model.bundle import Scorer

FUZZ_KEY, FUZZ_ENTRY = generate_key("fuzz")
EXAMPLES_PER_OPERATION = 200
# The GET operations take no body and no parameters: only the headers and the key vary, and 200 examples of them
# cost 17 s each for nothing the first few dozen do not reach.
BODILESS_EXAMPLES = 30


class DeferredApp:
    """An ASGI app that forwards to the app a fixture builds (the schema must exist before fixtures run)."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Forward to the current app."""
        await self.app(scope, receive, send)


APP = DeferredApp()
# The document comes from an app that is only built, never started (no model, no lake): the same routes as the
# app under test. Loaded at import so that pytest names one test per operation.
schema = schemathesis.openapi.from_dict(create_app(Settings(api_keys=FUZZ_ENTRY.entry())).openapi())
schema.app = APP
schema.config.update(base_url="http://testserver")


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path, tiny_scorer: Scorer) -> Iterator[None]:
    """The app under test: one key, the tiny model, a lake in a temporary directory."""
    tmp = tmp_path_factory.mktemp("fuzz")
    app_settings = Settings(
        model_dir=tiny_bundle,
        api_keys=FUZZ_ENTRY.entry(),
        spool_dir=tmp / "spool",
        lake_uri=str(tmp / "lake"),
        # Async durability: fuzzing checks the contract, not fsync; the lake's own tests cover durability.
        lake_durability="async",
    )
    APP.app = create_app(app_settings, scorer=tiny_scorer)
    yield
    # schemathesis starts the app's lifespan on the first request; end it here, not at interpreter exit.
    shutdown_lifespans()
    APP.app = None


# Lead lists are large by nature and the app fixture is shared; neither is a defect of the contract.
SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]


@schema.include(method="POST").parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=SUPPRESSED)
@pytest.mark.usefixtures("fuzz_app")
def test_api_contract(case: Any) -> None:
    """Every generated request gets a documented, schema-conforming answer and never a 5xx."""
    excluded = [positive_data_acceptance] if _beyond_json_schema(case) else []
    case.call_and_validate(headers={"X-API-Key": FUZZ_KEY}, excluded_checks=excluded)


@schema.include(method="GET").parametrize()
@settings(max_examples=BODILESS_EXAMPLES, deadline=None, suppress_health_check=SUPPRESSED)
@pytest.mark.usefixtures("fuzz_app")
def test_bodiless_api_contract(case: Any) -> None:
    """Requests to an operation with no body or parameters (only headers vary) get documented answers, no 5xx."""
    case.call_and_validate(headers={"X-API-Key": FUZZ_KEY})


def _beyond_json_schema(case: Any) -> bool:
    """A body refused by a rule JSON Schema cannot state (a UTC date before year 1, an outcome in the future)."""
    horizon = datetime.now(UTC) + timedelta(minutes=5)
    outcomes = case.path == "/api/v1/outcomes"
    return any(_refused_moment(text, horizon if outcomes else None) for text in _strings(case.body))


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _refused_moment(text: str, horizon: datetime | None) -> bool:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return False
    if moment.tzinfo is None:
        return False
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        return True
    return horizon is not None and utc > horizon
