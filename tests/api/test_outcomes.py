"""POST /api/v1/outcomes: keyed like scoring, every bad item named, durable, the same outcome counted once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from leadscore.api.security import generate_key
from leadscore.app import create_app
from leadscore.config import Settings
from leadscore.outcomes.table import load_outcomes_table, read_outcomes
from tests.support.lake import settings_from_env
from tests.support.server import ServerProcess, start_server
from tests.support.waiting import wait_until

KEY, ENTRY = generate_key("crm-sync")
_WHEN = "2026-11-30T16:20:00Z"


def _outcome(lead_id: str, **fields: Any) -> dict[str, Any]:
    return {"lead_id": lead_id, "converted": True, "occurred_at": _WHEN, **fields}


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> Iterator[ServerProcess]:
    """A real server with an API key, committing within a second (one for the module: it is slow to start)."""
    process = start_server(
        tmp_path_factory.mktemp("outcomes-server"),
        env={
            "LEADSCORE_MODEL_DIR": str(tiny_bundle),
            "LEADSCORE_API_KEYS": ENTRY.entry(),
            "LEADSCORE_PREDICTOR": "xgboost",  # starts faster; the route does not score
            "LEADSCORE_LAKE_SEGMENT_MAX_AGE_SECONDS": "0.5",
            "LEADSCORE_LAKE_COMMIT_INTERVAL_SECONDS": "0",
        },
    )
    yield process
    process.stop()


def _rows_of(server: ServerProcess, request_id: str, expected: int) -> pa.Table | None:
    """The stored rows (not deduplicated) of one request once there are `expected` of them."""
    rows = load_outcomes_table(settings_from_env(server.env)).scan(row_filter=f"request_id == '{request_id}'")
    table = rows.to_arrow()
    return table.sort_by("lead_id") if table.num_rows == expected else None


def _post(server: ServerProcess, body: dict[str, Any], key: str | None = KEY) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return httpx.post(f"{server.url}/api/v1/outcomes", json=body, headers=headers, timeout=10)


def test_posted_outcomes_are_acknowledged_and_read_back(keyed_server: ServerProcess) -> None:
    """A 202 names the request and counts; the outcomes then reach the outcomes table with their values."""
    body = {"request_id": "crm-sync-1", "outcomes": [_outcome("L1", outcome=5, stage="won"), _outcome("L2")]}
    answer = _post(keyed_server, body)
    assert answer.status_code == 202
    assert answer.json() | {"processing_time_ms": 0} == {
        "status": "accepted",
        "request_id": "crm-sync-1",
        "received": 2,
        "recorded": 2,
        "duplicates": 0,
        "processing_time_ms": 0,
    }
    rows = wait_until(lambda: _rows_of(keyed_server, "crm-sync-1", 2), what="outcomes committed")
    assert rows.select(["lead_id", "outcome", "converted", "stage", "source", "request_id"]).to_pylist() == [
        {"lead_id": "L1", "outcome": 5, "converted": True, "stage": "won", "source": "api", "request_id": "crm-sync-1"},
        {
            "lead_id": "L2",
            "outcome": None,
            "converted": True,
            "stage": None,
            "source": "api",
            "request_id": "crm-sync-1",
        },
    ]
    assert rows.column("occurred_at")[0].as_py() == datetime(2026, 11, 30, 16, 20, tzinfo=UTC).replace(tzinfo=None)


def test_the_same_outcome_sent_twice_is_counted_once(keyed_server: ServerProcess) -> None:
    """Re-sending an outcome (in the same request or a later one) leaves one row for it in what readers see."""
    first = _post(keyed_server, {"request_id": "dup-1", "outcomes": [_outcome("D1"), _outcome("D1")]})
    assert first.json()["duplicates"] == 1
    assert _post(keyed_server, {"request_id": "dup-2", "outcomes": [_outcome("D1"), _outcome("D2")]}).status_code == 202
    wait_until(lambda: _rows_of(keyed_server, "dup-2", 2), what="the second request committed")
    wait_until(lambda: _rows_of(keyed_server, "dup-1", 1), what="the first request committed")
    rows = read_outcomes(settings_from_env(keyed_server.env))
    assert sorted(lead for lead in rows.column("lead_id").to_pylist() if lead.startswith("D")) == ["D1", "D2"]


def test_outcomes_need_the_api_key(keyed_server: ServerProcess) -> None:
    """Without a key the route answers 401 in the error envelope, as scoring does."""
    answer = _post(keyed_server, {"outcomes": [_outcome("L1")]}, key=None)
    assert answer.status_code == 401
    assert answer.json()["code"] == "unauthorized"


def test_every_bad_item_is_named_by_index_and_field(client: TestClient) -> None:
    """One 422 lists each invalid item's index and field; valid items beside them are not recorded."""
    future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    body = {
        "outcomes": [
            _outcome("ok"),
            _outcome("L1", outcome=6),
            {"lead_id": "L2", "occurred_at": _WHEN},
            _outcome("L3", occurred_at="2026-11-30T16:20:00"),
            _outcome("L4", occurred_at=future, converted="yes"),
        ]
    }
    answer = client.post("/api/v1/outcomes", json=body)
    assert answer.status_code == 422
    found = {(e["lead_index"], e["field"]) for e in answer.json()["errors"]}
    assert found == {(1, "outcome"), (2, None), (3, "occurred_at"), (4, "occurred_at"), (4, "converted")}
    assert answer.json()["request_id"]


def test_more_than_a_thousand_outcomes_are_refused(client: TestClient) -> None:
    """1,001 items is a 422 on the outcomes list itself."""
    answer = client.post("/api/v1/outcomes", json={"outcomes": [_outcome(f"L{i}") for i in range(1001)]})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["location"] == "outcomes"


def test_the_route_answers_503_when_the_lake_is_off(settings: Settings) -> None:
    """With the lake switched off nothing could be kept: 503, never a 202."""
    off = settings.model_copy(update={"lake_enabled": False})
    with TestClient(create_app(off)) as client:
        assert client.post("/api/v1/outcomes", json={"outcomes": [_outcome("L1")]}).status_code == 503


def test_the_openapi_document_describes_the_route_and_its_body(client: TestClient) -> None:
    """The document has POST /api/v1/outcomes, keyed, with the request schema and its items resolvable."""
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/api/v1/outcomes"]["post"]
    assert operation["security"]
    assert "202" in operation["responses"]
    schemas = document["components"]["schemas"]
    assert schemas["OutcomesRequest"]["properties"]["outcomes"]["items"] == {"$ref": "#/components/schemas/OutcomeIn"}
    assert "occurred_at" in schemas["OutcomeIn"]["required"]


def test_health_reports_the_outcomes_backlog_beside_the_predictions(client: TestClient) -> None:
    """/health has an `outcomes` block with the lake's fields: acknowledged outcomes are waiting or committed."""
    assert client.post("/api/v1/outcomes", json={"outcomes": [_outcome(f"H{i}") for i in range(3)]}).status_code == 202

    def accounted() -> bool:
        outcomes = client.get("/api/v1/health").json()["outcomes"]
        return bool(outcomes["backlog_rows"] + outcomes["committed_rows"] == 3)

    wait_until(accounted, 30, 0.1, "the 3 outcomes in the health's outcomes backlog or commits")
    health = client.get("/api/v1/health").json()
    assert set(health["outcomes"]) == set(health["lake"])
    assert health["outcomes"]["uri"] != health["lake"]["uri"]
