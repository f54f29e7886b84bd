"""The load-test client: what counts as a good answer, and failures recorded rather than raised."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

import httpx
import pytest

from leadscore.errors import LeadscoreError
from leadscore.loadtest.client import LoadClient, Sample, check_base_url, check_scores

LEADS = [{"lead_id": "a"}, {"lead_id": "b"}]


def answer(request: httpx.Request, **changes) -> httpx.Response:
    """A correct scoring answer to `request`, with `changes` applied."""
    body = json.loads(request.content)
    payload = {
        "request_id": body["request_id"],
        "status": "success",
        "total_leads": len(body["leads"]),
        "model_version": "1.0.0",
        "scores": [{"lead_id": lead.get("lead_id"), "score": 3} for lead in body["leads"]],
        **changes,
    }
    return httpx.Response(200, json=payload)


def run(handler: Callable[[httpx.Request], httpx.Response], call: str = "score", api_key: str | None = None) -> Sample:
    """One request through a client whose transport is `handler`."""

    async def go() -> Sample:
        async with LoadClient("http://svc", api_key=api_key, transport=httpx.MockTransport(handler)) as client:
            if call == "health":
                return await client.health("p", "prod-verification")
            return await client.score("p", LEADS, "load-test-1-1")

    return asyncio.run(go())


def test_a_correct_answer_is_a_success_with_its_scores():
    """200 with every lead scored in order under the request id is ok, and its scores are kept."""
    sample = run(answer)
    assert (sample.ok, sample.status, sample.scores, sample.model_version) == (True, 200, (3, 3), "1.0.0")


def test_the_api_key_is_sent_as_x_api_key():
    """A given API key goes out in the X-API-Key header."""
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-api-key"))
        return answer(request)

    run(handler, api_key="lsk_secret")
    assert seen == ["lsk_secret"]


def test_an_error_status_is_a_failure_with_its_body():
    """A non-200 answer is recorded as failed with the status and the start of the body."""
    sample = run(lambda request: httpx.Response(503, text="busy"))
    assert (sample.ok, sample.status, sample.error) == (False, 503, "busy")


def test_a_connection_error_is_a_failure_not_an_exception():
    """Transport errors become failed samples with no status."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    sample = run(refuse)
    assert (sample.ok, sample.status) == (False, None)
    assert "ConnectError" in (sample.error or "")


def test_a_body_that_is_not_json_is_a_failure():
    """200 with a body that is not JSON fails."""
    sample = run(lambda request: httpx.Response(200, text="<html>"))
    assert (sample.ok, sample.error) == (False, "body is not JSON")


def test_wrong_request_id_lead_count_order_or_score_fail():
    """Answers under another id, with missing or reordered leads, or a score outside 1..5 fail."""
    ok = answer(httpx.Request("POST", "http://svc", content=json.dumps({"request_id": "r", "leads": LEADS}))).json()
    assert check_scores(ok, "r", LEADS) is None
    assert "request_id" in (check_scores({**ok, "request_id": "x"}, "r", LEADS) or "")
    assert "scored" in (check_scores({**ok, "total_leads": 1}, "r", LEADS) or "")
    assert "order" in (check_scores({**ok, "scores": ok["scores"][::-1]}, "r", LEADS) or "")
    bad_score = [{"lead_id": "a", "score": 9}, {"lead_id": "b", "score": 3}]
    assert "1..5" in (check_scores({**ok, "scores": bad_score}, "r", LEADS) or "")
    assert check_scores([], "r", LEADS) == "not a success response"


def test_health_ok_unhealthy_and_garbled():
    """Health is ok only for 200 with status ok; a degraded or unreadable answer fails."""
    assert run(lambda r: httpx.Response(200, json={"status": "ok", "model_version": "1"}), "health").ok
    assert not run(lambda r: httpx.Response(200, json={"status": "degraded"}), "health").ok
    assert not run(lambda r: httpx.Response(200, text="?"), "health").ok


def test_health_connection_error_is_a_failure():
    """A health probe that cannot connect fails without raising."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert run(refuse, "health").status is None


def test_concurrency_reached_is_counted():
    """The client reports the most requests it had in flight at once."""

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05)
        return answer(request)

    async def go() -> int:
        async with LoadClient("http://svc", transport=httpx.MockTransport(slow)) as client:
            await asyncio.gather(*(client.score("p", LEADS, f"load-test-{i}-1") for i in range(4)))
            return client.max_in_flight

    assert asyncio.run(go()) == 4


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("127.0.0.1:8000", "scheme"),
        ("localhost:8000", "scheme"),
        ("ftp://svc", "scheme"),
        ("http://", "no host"),
        ("http://svc:99999", "port"),
        ("http://[::1", "not a valid URL"),
        ("http://svc/?x=1", "base URL"),
    ],
)
def test_a_bad_base_url_is_refused_saying_why(url, problem):
    """A URL without an http(s) scheme, a host or a valid port is refused with the reason."""
    with pytest.raises(LeadscoreError, match=re.escape(problem)):
        check_base_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "https://scoring.example.com/prefix/"])
def test_a_base_url_with_scheme_and_host_is_accepted(url):
    """An absolute http(s) URL passes unchanged."""
    assert check_base_url(url) == url
