"""Edge limits: body size (with and without Content-Length), body deadline, in-flight cap, bad bodies -> 4xx."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from leadscore.api.limits import EdgeLimitsMiddleware
from leadscore.api.schemas import EXAMPLE_LEAD
from leadscore.api.security import generate_key
from leadscore.errors import ClientClosedRequest, PayloadTooLarge, RequestTimeout
from tests.support.server import ServerProcess, start_server

SCORE = "/api/v1/scoring/score"
KEY, ENTRY = generate_key("limits")
AUTH = {"X-API-Key": KEY}
JSON = {**AUTH, "Content-Type": "application/json"}
LIMIT = 4096
HOLD_SECONDS = 20.0  # upper bound on how long a test holds a request open; released as soon as the test is done


# --- the middleware alone ------------------------------------------------------------------------------------
def http_scope(path: str = SCORE, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    """A minimal ASGI HTTP scope."""
    return {"type": "http", "method": "POST", "path": path, "headers": headers or [], "state": {}}


async def read_all_then_ok(scope: Any, receive: Any, send: Any) -> None:
    """An app that reads the whole body, then answers 200 with its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


def limits(app: Any = read_all_then_ok, **overrides: Any) -> EdgeLimitsMiddleware:
    """The middleware around `app` with small limits."""
    options: dict[str, Any] = {"max_in_flight": 2, "max_body_bytes": LIMIT, "body_timeout": 5.0, **overrides}
    return EdgeLimitsMiddleware(app, **options)


def call(middleware: EdgeLimitsMiddleware, scope: dict[str, Any], chunks: list[bytes]) -> list[dict[str, Any]]:
    """Send `chunks` as the body (no Content-Length unless the scope has one); return what the app sent."""
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent


def test_body_within_limit_passes_through():
    """A chunked body under the cap reaches the app whole."""
    sent = call(limits(), http_scope(), [b"x" * 1000] * 4)
    assert (sent[0]["status"], sent[1]["body"]) == (200, b"4000")


def test_declared_length_over_limit_gets_413_without_calling_the_app():
    """Content-Length over the cap is refused with 413 in the envelope before any byte is read."""
    called = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope)

    sent = call(limits(app), http_scope(headers=[(b"content-length", str(LIMIT + 1).encode())]), [b""])
    assert sent[0]["status"] == 413
    assert orjson.loads(sent[1]["body"])["code"] == "payload_too_large"
    assert called == []


def test_undeclared_body_over_limit_is_stopped_while_reading():
    """A body with no Content-Length is cut off as soon as it passes the cap."""
    with pytest.raises(PayloadTooLarge):
        call(limits(), http_scope(), [b"x" * 1000] * 5)


def test_lying_content_length_is_stopped_while_reading():
    """A body larger than its (small) Content-Length is still counted and cut off at the cap."""
    with pytest.raises(PayloadTooLarge):
        call(limits(), http_scope(headers=[(b"content-length", b"10")]), [b"x" * 3000] * 2)


def test_slow_body_gets_request_timeout():
    """A body that does not arrive within the deadline raises RequestTimeout (408) into the reader."""

    async def never(*_: Any) -> dict[str, Any]:
        await asyncio.sleep(HOLD_SECONDS)
        return {"type": "http.disconnect"}

    async def ignore(_: Any) -> None:
        return None

    with pytest.raises(RequestTimeout):
        asyncio.run(limits(body_timeout=0.05)(http_scope(), never, ignore))


def test_client_gone_mid_body_is_a_499_not_a_500():
    """A disconnect before the whole body arrived raises ClientClosedRequest (499), not an unhandled error."""

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def ignore(_: Any) -> None:
        return None

    with pytest.raises(ClientClosedRequest) as failure:
        asyncio.run(limits()(http_scope(), gone, ignore))
    assert failure.value.status_code == 499


def test_waiting_for_disconnect_after_the_body_has_no_deadline():
    """Once the body is in, receive() passes through without the body deadline (streaming responses wait on it)."""
    messages: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        messages.append((await receive())["type"])
        messages.append((await receive())["type"])  # after the body: the disconnect, however late

    async def receive_slowly() -> dict[str, Any]:
        if not messages:
            return {"type": "http.request", "body": b"{}"}
        await asyncio.sleep(0.1)
        return {"type": "http.disconnect"}

    async def ignore(_: Any) -> None:
        return None

    asyncio.run(limits(app, body_timeout=0.01)(http_scope(), receive_slowly, ignore))
    assert messages == ["http.request", "http.disconnect"]


def test_over_the_cap_gets_503_with_retry_after_and_the_slot_is_freed():
    """With the cap reached, another request gets 503 + Retry-After at once; after the first ends, one gets in."""
    release = asyncio.Event()
    statuses: list[int] = []

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    middleware = limits(slow_app, max_in_flight=1)

    async def request() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await middleware(http_scope(), receive, send)
        return sent

    async def scenario() -> list[dict[str, Any]]:
        held = asyncio.create_task(request())
        await asyncio.sleep(0)  # the first request is now in flight
        refused = await request()
        release.set()
        statuses.append((await held)[0]["status"])
        statuses.append((await request())[0]["status"])
        return refused

    refused = asyncio.run(scenario())
    assert refused[0]["status"] == 503
    assert (b"retry-after", b"1") in refused[0]["headers"]
    assert orjson.loads(refused[1]["body"])["code"] == "service_unavailable"
    assert statuses == [200, 200]
    assert middleware.in_flight == 0


def test_slot_is_freed_when_the_app_fails():
    """A request that raises still gives its in-flight slot back."""

    async def failing(*_: Any) -> None:
        raise RuntimeError("boom")

    middleware = limits(failing, max_in_flight=1)
    with pytest.raises(RuntimeError):
        call(middleware, http_scope(), [b""])
    assert middleware.in_flight == 0


def test_probes_are_not_counted_against_the_cap():
    """Liveness, readiness and metrics bypass the in-flight cap."""
    middleware = limits(max_in_flight=1)
    middleware.in_flight = 1  # as if one scoring request were in flight
    statuses = [call(middleware, http_scope(path), [b""])[0]["status"] for path in ("/api/v1/health/ready", "/metrics")]
    assert statuses == [200, 200]


def test_non_http_scopes_pass_through():
    """Lifespan (and any non-HTTP) traffic is not limited."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    asyncio.run(limits(app)({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == ["lifespan"]


# --- the real server -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def edge_server(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> Iterator[ServerProcess]:
    """The real server with a key and default limits (2 MiB body)."""
    tmp = tmp_path_factory.mktemp("edge-server")
    process = start_server(tmp, env={"LEADSCORE_MODEL_DIR": str(tiny_bundle), "LEADSCORE_API_KEYS": ENTRY.entry()})
    yield process
    process.stop()


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> Iterator[ServerProcess]:
    """The real server with one request in flight allowed and a 2 s body deadline."""
    tmp = tmp_path_factory.mktemp("tight-server")
    env = {
        "LEADSCORE_MODEL_DIR": str(tiny_bundle),
        "LEADSCORE_API_KEYS": ENTRY.entry(),
        "LEADSCORE_MAX_IN_FLIGHT": "1",
        "LEADSCORE_BODY_TIMEOUT_SECONDS": "2",
    }
    process = start_server(tmp, env=env)
    yield process
    process.stop()


def post(server: ServerProcess, content: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """POST raw content to the scoring route of `server` with the key."""
    return httpx.post(server.url + SCORE, content=content, headers=headers or JSON, timeout=30)


def error_code(response: httpx.Response) -> tuple[int, str]:
    """Status and envelope code of an error response."""
    return response.status_code, response.json()["code"]


@pytest.mark.e2e
def test_server_413_with_content_length(edge_server):
    """A 3 MiB body with its Content-Length gets 413 in the envelope."""
    assert error_code(post(edge_server, b" " * (3 * 1024 * 1024))) == (413, "payload_too_large")


@pytest.mark.e2e
def test_server_413_without_content_length(edge_server):
    """A 3 MiB chunked body (no Content-Length) gets 413 too: the cap holds while reading."""

    def chunks() -> Iterator[bytes]:
        for _ in range(48):
            yield b" " * 65536

    response = post(edge_server, chunks())
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert error_code(response) == (413, "payload_too_large")


@pytest.mark.e2e
def test_server_accepts_a_full_500_lead_body_under_the_cap(edge_server):
    """500 leads with every field filled fit under the 2 MiB default."""
    body = orjson.dumps({"leads": [{**EXAMPLE_LEAD, "lead_id": f"lead-{i:05d}"} for i in range(500)]})
    assert len(body) < 2 * 1024 * 1024
    assert post(edge_server, body).status_code == 200


@pytest.mark.e2e
def test_server_415_for_non_json(edge_server):
    """A body declared as text/plain gets 415."""
    assert error_code(post(edge_server, b"{}", {**AUTH, "Content-Type": "text/plain"})) == (
        415,
        "unsupported_media_type",
    )


@pytest.mark.e2e
def test_server_400_for_malformed_json(edge_server):
    """A truncated JSON body gets 400."""
    assert error_code(post(edge_server, b'{"leads": [{"industry": "Retail"')) == (400, "malformed_json")


@pytest.mark.e2e
@pytest.mark.parametrize("count", [0, 501])
def test_server_422_for_batch_outside_1_to_500(edge_server, count):
    """0 or 501 leads get 422 naming the `leads` field."""
    response = post(edge_server, orjson.dumps({"leads": [{}] * count}))
    assert error_code(response) == (422, "validation_error")
    assert [e["field"] for e in response.json()["errors"]] == ["leads"]


@pytest.mark.e2e
def test_server_422_for_overlong_string(edge_server):
    """A job title over 200 characters gets 422 naming lead and field."""
    response = post(edge_server, orjson.dumps({"leads": [{}, {"job_title": "x" * 201}]}))
    assert error_code(response) == (422, "validation_error")
    assert [(e["lead_index"], e["field"]) for e in response.json()["errors"]] == [(1, "job_title")]


@pytest.mark.e2e
def test_server_408_for_a_body_slower_than_the_deadline(tight_server):
    """A body trickled past the body deadline gets 408 and frees its slot."""

    def trickle() -> Iterator[bytes]:
        yield b'{"leads": ['
        time.sleep(3)
        yield b"{}]}"

    assert error_code(post(tight_server, trickle())) == (408, "request_timeout")
    assert httpx.get(tight_server.url + "/api/v1/model", headers=AUTH, timeout=10).status_code == 200


class HeldRequest:
    """A scoring request whose body stops half-way until released, so it stays in flight."""

    def __init__(self, server: ServerProcess) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.responses: list[httpx.Response] = []
        self.thread = threading.Thread(target=lambda: self.responses.append(post(server, self._body())))
        self.thread.start()
        self.started.wait(timeout=HOLD_SECONDS)

    def _body(self) -> Iterator[bytes]:
        self.started.set()
        yield b'{"leads": ['
        self.release.wait(timeout=HOLD_SECONDS)
        yield b"{}]}"

    def finish(self) -> httpx.Response | None:
        """Send the rest of the body and return the response."""
        self.release.set()
        self.thread.join(timeout=30)
        return self.responses[0] if self.responses else None


def first_refusal(server: ServerProcess, held: HeldRequest) -> httpx.Response | None:
    """Poll a keyed route until it answers 503 while `held` is in flight; None if `held` ended first."""
    deadline = time.monotonic() + HOLD_SECONDS
    while held.thread.is_alive() and time.monotonic() < deadline:
        response = httpx.get(server.url + "/api/v1/model", headers=AUTH, timeout=10)
        if response.status_code == 503:
            return response
        time.sleep(0.05)  # the held request has not reached the app yet
    return None


@pytest.mark.e2e
def test_server_503_with_retry_after_at_the_in_flight_cap(tight_server):
    """While one request is held in flight (cap 1), another gets 503 with Retry-After; probes still answer."""
    refused = ready = None
    # A poll that overlaps the held request's arrival makes *it* the refused one: then hold another (bounded).
    for _ in range(5):
        held = HeldRequest(tight_server)
        try:
            refused = first_refusal(tight_server, held)
            if refused is not None:
                ready = httpx.get(tight_server.url + "/api/v1/health/ready", timeout=10)
        finally:
            held.finish()
        if refused is not None:
            break
    assert refused is not None
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["code"] == "service_unavailable"
    assert ready is not None
    assert ready.status_code == 200
