"""The load tests' HTTP client: timed calls to the service, each checked and recorded as a Sample."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import httpx
import orjson

from leadscore.errors import LeadscoreError

SCORE_PATH: Final = "/api/v1/scoring/score"
HEALTH_PATH: Final = "/api/v1/health"
LIVE_PATH: Final = "/api/v1/health/live"


@dataclass(frozen=True, slots=True)
class Sample:
    """One request: whether it met the contract, how long it took, what came back."""

    phase: str
    request_id: str
    ok: bool
    status: int | None
    seconds: float
    leads: int = 0
    scores: tuple[int, ...] = ()
    error: str | None = None
    model_version: str | None = None
    body: dict[str, Any] | None = None


def check_scores(body: object, request_id: str, leads: list[dict[str, Any]]) -> str | None:
    """What is wrong with a scoring response for `leads` (None: it is right)."""
    if not isinstance(body, dict) or body.get("status") != "success":
        return "not a success response"
    if body.get("request_id") != request_id:
        return f"request_id {body.get('request_id')!r} is not {request_id!r}"
    scores = body.get("scores")
    if body.get("total_leads") != len(leads) or not isinstance(scores, list) or len(scores) != len(leads):
        return f"{len(leads)} leads sent, {body.get('total_leads')} scored"
    for lead, result in zip(leads, scores, strict=True):
        if result.get("lead_id") != lead.get("lead_id"):
            return f"lead {lead.get('lead_id')!r} answered out of order"
        if result.get("score") not in (1, 2, 3, 4, 5):
            return f"score {result.get('score')!r} is not 1..5"
    return None


def check_base_url(url: str) -> str:
    """`url` when it is an absolute http(s) URL with a host; else LeadscoreError saying what is wrong.

    Checked before any request: a URL without a scheme would otherwise make every request of the run fail.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise LeadscoreError(f"{url!r} is not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise LeadscoreError(f"{url!r} needs an http:// or https:// scheme, e.g. http://127.0.0.1:8000")
    if not parsed.host:
        raise LeadscoreError(f"{url!r} has no host, e.g. http://127.0.0.1:8000")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise LeadscoreError(f"{url!r} has port {parsed.port}, outside 1..65535")
    if parsed.query or parsed.fragment:
        raise LeadscoreError(f"{url!r} must be the service's base URL, without a query or fragment")
    return url


class LoadClient:
    """An async HTTP client for one run; counts requests in flight to report the concurrency reached."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_connections: int = 20,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )
        self.in_flight = 0
        self.max_in_flight = 0

    async def __aenter__(self) -> LoadClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._http.aclose()

    def reset_concurrency(self) -> None:
        """Start counting the concurrency reached afresh (one phase)."""
        self.max_in_flight = self.in_flight

    async def _send(
        self, method: str, path: str, headers: dict[str, str], content: bytes | None = None
    ) -> tuple[httpx.Response | None, float, str | None]:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        start = time.perf_counter()
        try:
            response = await self._http.request(method, path, headers=headers, content=content)
        except httpx.HTTPError as exc:
            return None, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
        finally:
            self.in_flight -= 1
        return response, time.perf_counter() - start, None

    async def warm_up(self) -> None:
        """Open a connection with an untimed liveness probe, so set-up (TCP, TLS) is not in the first figure."""
        await self._send("GET", LIVE_PATH, headers={})

    async def score(self, phase: str, leads: list[dict[str, Any]], request_id: str, keep_body: bool = False) -> Sample:
        """POST the leads under `request_id`; ok when every lead comes back scored, in order, under that id."""
        body = orjson.dumps({"request_id": request_id, "leads": leads})
        response, seconds, error = await self._send(
            "POST", SCORE_PATH, content=body, headers={"content-type": "application/json"}
        )
        if response is None:
            return Sample(phase, request_id, False, None, seconds, len(leads), error=error)
        if response.status_code != 200:
            return Sample(
                phase, request_id, False, response.status_code, seconds, len(leads), error=response.text[:300]
            )
        try:
            payload = response.json()
        except ValueError:
            return Sample(phase, request_id, False, 200, seconds, len(leads), error="body is not JSON")
        problem = check_scores(payload, request_id, leads)
        scores = tuple(int(s["score"]) for s in payload["scores"]) if problem is None else ()
        return Sample(
            phase,
            request_id,
            problem is None,
            200,
            seconds,
            len(leads),
            scores=scores,
            error=problem,
            model_version=payload.get("model_version") if isinstance(payload, dict) else None,
            body=payload if keep_body else None,
        )

    async def health(self, phase: str, request_id: str) -> Sample:
        """GET the health endpoint under `request_id`; ok when it answers 200 with status ok."""
        response, seconds, error = await self._send("GET", HEALTH_PATH, headers={"X-Request-ID": request_id})
        if response is None:
            return Sample(phase, request_id, False, None, seconds, error=error)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        healthy = response.status_code == 200 and isinstance(payload, dict) and payload.get("status") == "ok"
        return Sample(
            phase,
            request_id,
            healthy,
            response.status_code,
            seconds,
            error=None if healthy else response.text[:300],
            model_version=payload.get("model_version") if isinstance(payload, dict) else None,
            body=payload if isinstance(payload, dict) else None,
        )
