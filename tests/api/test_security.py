"""API keys: format, hashing, configuration, the 401 paths, prod refusing to start keyless, no secret in logs."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from leadscore import cli
from leadscore.api.security import (
    ApiKey,
    KeyRing,
    RequireMetricsKey,
    generate_key,
    key_digest,
    key_id_of,
    load_keyring,
    parse_keys,
)
from leadscore.app import create_app
from leadscore.config import Settings, load_settings
from leadscore.errors import ConfigError
from tests.support.server import ServerProcess, start_server

SCORE = "/api/v1/scoring/score"
MODEL = "/api/v1/model"
ONE_LEAD = {"leads": [{"industry": "Retail", "website_sessions": 3}]}
KEY, ENTRY = generate_key("crm-sync")
OTHER_KEY, OTHER_ENTRY = generate_key("backfill")
# Same id as KEY, different secret: what a client with a stale or mistyped key sends.
WRONG_KEY = KEY[: -len("tamperedsecret")] + "tamperedsecret"


def secret_of(key: str) -> str:
    """The secret part of a key."""
    return key.split("_", 2)[2]


# --- key format and configuration ---------------------------------------------------------------------------
def test_generated_key_has_prefix_id_and_256_bit_secret():
    """A new key is lsk_<8 hex id>_<43 url-safe chars> (32 random bytes)."""
    assert re.fullmatch(r"lsk_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", KEY)


def test_generated_entry_holds_only_the_sha256_of_the_key():
    """The configuration entry is id:label:sha256(key); the key itself is not in it."""
    assert ENTRY.entry() == f"{key_id_of(KEY)}:crm-sync:{hashlib.sha256(KEY.encode()).hexdigest()}"
    assert secret_of(KEY) not in ENTRY.entry()


def test_generated_keys_differ():
    """Two new keys share neither id nor secret."""
    assert key_id_of(KEY) != key_id_of(OTHER_KEY)
    assert secret_of(KEY) != secret_of(OTHER_KEY)


def test_label_with_separator_is_refused():
    """A label that could break the entry format (':' or ',') is refused."""
    with pytest.raises(ConfigError, match="label"):
        generate_key("crm:sync")


@pytest.mark.parametrize(
    "presented",
    ["", "lsk_", "lsk_abc_secret", "xyz_0123abcd_secret", "lsk_0123ABCD_secret", "lsk_0123abcd_", "Bearer x"],
)
def test_key_id_is_only_read_from_well_formed_keys(presented):
    """Only a well-formed key yields an id (anything else could be a secret and must not be logged as an id)."""
    assert key_id_of(presented) is None


def test_entries_parse_from_comma_list():
    """LEADSCORE_API_KEYS takes comma-separated entries."""
    assert parse_keys(f"{ENTRY.entry()}, {OTHER_ENTRY.entry()}") == (ENTRY, OTHER_ENTRY)


def test_entries_parse_from_json_list():
    """LEADSCORE_API_KEYS also takes a JSON list of entries."""
    assert parse_keys(json.dumps([ENTRY.entry(), OTHER_ENTRY.entry()])) == (ENTRY, OTHER_ENTRY)


def test_entries_parse_from_lines_with_comments():
    """A keys file takes one entry a line, with blank lines and # comments."""
    text = f"# rotated 2026-01\n{ENTRY.entry()}  # crm\n\n{OTHER_ENTRY.entry()}\n"
    assert parse_keys(text) == (ENTRY, OTHER_ENTRY)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("0123abcd:crm", "id:label:sha256hex"),
        (f"0123ABCD:crm:{'a' * 64}", "8 lowercase hex"),
        (f"0123abcd:crm sync:{'a' * 64}", "label"),
        ("0123abcd:crm:abc", "64 hex"),
        ('["0123abcd:crm:', "JSON"),
        ("[1, 2]", "JSON list"),
    ],
)
def test_malformed_entries_are_refused(text, complaint):
    """Each malformed entry is refused with a message saying what is wrong."""
    with pytest.raises(ConfigError, match=complaint):
        parse_keys(text)


def test_pasted_key_is_not_echoed_in_the_error():
    """A key pasted where its hash belongs is refused without repeating it in the message."""
    with pytest.raises(ConfigError) as failure:
        parse_keys(KEY)
    assert secret_of(KEY) not in failure.value.message


def test_duplicate_key_ids_are_refused():
    """Two entries with one id are a configuration error, not a silent override."""
    with pytest.raises(ConfigError, match="twice"):
        KeyRing([ENTRY, ApiKey(ENTRY.key_id, "other", key_digest("x"))])


def test_keyring_accepts_the_right_key():
    """The configured key verifies to its entry."""
    assert KeyRing([ENTRY, OTHER_ENTRY]).verify(KEY) == ENTRY


# Fixed ids: the keys are random per process, and every xdist worker must collect the same test names.
@pytest.mark.parametrize(
    "presented",
    [WRONG_KEY, "lsk_0123abcd_nope", "nonsense", "", KEY + "x", "x" * 10_000],
    ids=["tampered", "unknown-id", "nonsense", "empty", "suffixed", "10000-chars"],
)
def test_keyring_refuses_other_keys(presented):
    """A wrong secret, an unknown id, garbage or an oversized value verifies to nothing."""
    assert KeyRing([ENTRY]).verify(presented) is None


def test_keyring_without_keys_is_not_enforced():
    """No keys means an open service (allowed in dev only)."""
    assert not KeyRing().enforced


def test_keys_come_from_setting_and_file_together(tmp_path):
    """LEADSCORE_API_KEYS and LEADSCORE_API_KEYS_FILE add up."""
    keys_file = tmp_path / "keys"
    keys_file.write_text(OTHER_ENTRY.entry() + "\n")
    keyring = load_keyring(Settings(api_keys=ENTRY.entry(), api_keys_file=keys_file))
    assert keyring.key_ids == tuple(sorted((ENTRY.key_id, OTHER_ENTRY.key_id)))


def test_unreadable_keys_file_is_refused(tmp_path):
    """A keys file that cannot be read stops the service rather than running without its keys."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_keyring(Settings(api_keys_file=tmp_path / "missing"))


def test_keyless_prod_settings_load_for_tools_that_do_not_serve(monkeypatch):
    """Keyless prod settings load (lake tools read them); serving is what needs keys."""
    monkeypatch.setenv("LEADSCORE_ENV", "prod")
    monkeypatch.delenv("LEADSCORE_API_KEYS", raising=False)
    monkeypatch.delenv("LEADSCORE_API_KEYS_FILE", raising=False)
    assert load_settings().env.value == "prod"


def test_keyless_prod_keyring_is_refused_with_what_to_set():
    """The one check of keyless prod (the keyring, before serving) says what to set and how to make a key."""
    with pytest.raises(ConfigError, match=r"LEADSCORE_API_KEYS.*leadscore keys new"):
        load_keyring(Settings(env="prod"))


def test_create_app_refuses_prod_with_an_empty_keys_file(tmp_path):
    """A prod app whose keys file holds no entry is refused when it is built, before it can serve."""
    keys_file = tmp_path / "keys"
    keys_file.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="at least one API key"):
        create_app(Settings(env="prod", api_keys_file=keys_file))


# --- `leadscore keys new` -------------------------------------------------------------------------------------
def test_keys_new_prints_the_key_once_and_a_line_that_configures_it():
    """The printed key appears once, and the printed LEADSCORE_API_KEYS line makes the service accept it."""
    result = CliRunner().invoke(cli.app, ["keys", "new", "--label", "crm-sync"])
    assert result.exit_code == 0
    match = re.search(r"lsk_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", result.output)
    assert match is not None
    line = next(text.strip() for text in result.output.splitlines() if text.strip().startswith("LEADSCORE_API_KEYS="))
    keyring = KeyRing(parse_keys(line.removeprefix("LEADSCORE_API_KEYS=")))
    assert keyring.verify(match.group(0)) is not None
    assert result.output.count(match.group(0)) == 1


def test_keys_new_refuses_a_bad_label():
    """A label that would break the entry format exits non-zero with a message."""
    result = CliRunner().invoke(cli.app, ["keys", "new", "--label", "crm sync"])
    assert result.exit_code != 0
    assert "label" in result.output


# --- the API with keys, in-process ---------------------------------------------------------------------------
@pytest.fixture
def keyed_client(settings: Settings) -> Iterator[TestClient]:
    """The app with two keys configured."""
    keyed = settings.model_copy(update={"api_keys": f"{ENTRY.entry()},{OTHER_ENTRY.entry()}"})
    with TestClient(create_app(keyed), raise_server_exceptions=False) as test_client:
        yield test_client


def test_missing_key_gets_401_envelope_with_challenge(keyed_client):
    """No key: 401 in the error envelope, with WWW-Authenticate: Bearer."""
    response = keyed_client.post(SCORE, json=ONE_LEAD)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthorized"
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_wrong_bearer_key_gets_401(keyed_client):
    """A wrong key sent as a bearer token gets 401."""
    response = keyed_client.get(MODEL, headers={"Authorization": f"Bearer {WRONG_KEY}"})
    assert response.status_code == 401


def test_other_auth_scheme_gets_401(keyed_client):
    """A key sent under another scheme (Basic) does not count."""
    response = keyed_client.get(MODEL, headers={"Authorization": f"Basic {KEY}"})
    assert response.status_code == 401


def test_each_configured_key_is_accepted(keyed_client):
    """Every configured key works (rotation: old and new keys side by side)."""
    statuses = [keyed_client.get(MODEL, headers={"X-API-Key": k}).status_code for k in (KEY, OTHER_KEY)]
    assert statuses == [200, 200]


def test_health_needs_a_key(keyed_client):
    """/api/v1/health (versions, uptime) needs a key when keys are configured."""
    assert keyed_client.get("/api/v1/health").status_code == 401


@pytest.mark.parametrize("path", ["/api/v1/health/live", "/api/v1/health/ready"])
def test_probes_stay_open(keyed_client, path):
    """Liveness and readiness answer without a key (load balancers and orchestrators carry none)."""
    assert keyed_client.get(path).status_code == 200


def test_openapi_declares_both_ways_to_send_a_key(keyed_client):
    """The document declares X-API-Key and Bearer as alternatives on every protected operation."""
    document = keyed_client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {**schemes["APIKeyHeader"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    for path, method in ((SCORE, "post"), ("/api/v1/score", "post"), (MODEL, "get"), ("/api/v1/health", "get")):
        assert document["paths"][path][method]["security"] == [{"APIKeyHeader": []}, {"HTTPBearer": []}]


def test_openapi_describes_every_error_status_of_scoring(keyed_client):
    """Scoring documents 400, 401, 408, 413, 415, 422, 500 and 503, each with the error envelope."""
    responses = keyed_client.get("/openapi.json").json()["paths"][SCORE]["post"]["responses"]
    for status in ("400", "401", "408", "413", "415", "422", "500", "503"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.mark.parametrize(("require", "status"), [(True, 401), (False, 200)])
def test_metrics_dependency_follows_its_setting(settings, require, status):
    """RequireMetricsKey asks for a key only when metrics_require_key is set."""
    keyed = settings.model_copy(update={"api_keys": ENTRY.entry(), "metrics_require_key": require})
    app = create_app(keyed)
    app.add_api_route("/probe-metrics", lambda: {"ok": True}, dependencies=[RequireMetricsKey])
    with TestClient(app) as test_client:
        assert test_client.get("/probe-metrics").status_code == status


def test_open_dev_service_needs_no_key(client):
    """In dev with no keys configured, scoring works without a key."""
    assert client.post(SCORE, json=ONE_LEAD).status_code == 200


# --- the real server -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> Iterator[ServerProcess]:
    """`leadscore serve` as a process with two keys configured (one from the setting, one from a keys file)."""
    tmp = tmp_path_factory.mktemp("keyed-server")
    keys_file = tmp / "keys"
    keys_file.write_text(f"# mounted secret\n{OTHER_ENTRY.entry()}\n")
    env = {
        "LEADSCORE_MODEL_DIR": str(tiny_bundle),
        "LEADSCORE_API_KEYS": ENTRY.entry(),
        "LEADSCORE_API_KEYS_FILE": str(keys_file),
    }
    process = start_server(tmp, env=env)
    yield process
    process.stop()


@pytest.mark.e2e
def test_server_refuses_missing_key(keyed_server):
    """The real server answers 401 with the Bearer challenge when no key is sent."""
    response = httpx.post(keyed_server.url + SCORE, json=ONE_LEAD, timeout=10)
    assert (response.status_code, response.headers["www-authenticate"]) == (401, "Bearer")


@pytest.mark.e2e
def test_server_refuses_wrong_key(keyed_server):
    """The real server answers 401 to a key with a known id and a wrong secret."""
    response = httpx.post(keyed_server.url + SCORE, json=ONE_LEAD, headers={"X-API-Key": WRONG_KEY}, timeout=10)
    assert response.status_code == 401


@pytest.mark.e2e
def test_server_accepts_key_in_x_api_key(keyed_server):
    """The real server scores with the right key in X-API-Key."""
    response = httpx.post(keyed_server.url + SCORE, json=ONE_LEAD, headers={"X-API-Key": KEY}, timeout=10)
    assert response.status_code == 200


@pytest.mark.e2e
def test_server_accepts_key_as_bearer(keyed_server):
    """The real server scores with the right key (here from the keys file) as a bearer token."""
    headers = {"Authorization": f"Bearer {OTHER_KEY}"}
    response = httpx.post(keyed_server.url + SCORE, json=ONE_LEAD, headers=headers, timeout=10)
    assert response.status_code == 200


@pytest.mark.e2e
def test_keys_never_reach_the_logs(tmp_path, tiny_bundle):
    """After requests with right and wrong keys, the whole log holds key ids but no key and no secret."""
    server = start_server(tmp_path, env={"LEADSCORE_MODEL_DIR": str(tiny_bundle), "LEADSCORE_API_KEYS": ENTRY.entry()})
    try:
        attempts = [
            {"X-API-Key": KEY},
            {"Authorization": f"Bearer {KEY}"},
            {"X-API-Key": WRONG_KEY},
            {"Authorization": f"Bearer {OTHER_KEY}"},
            {"X-API-Key": secret_of(KEY)},
        ]
        statuses = [httpx.post(server.url + SCORE, json=ONE_LEAD, headers=h, timeout=10).status_code for h in attempts]
    finally:
        server.stop()
    log = server.log()
    assert statuses == [200, 200, 401, 401, 401]
    for secret in (KEY, secret_of(KEY), WRONG_KEY, secret_of(WRONG_KEY), OTHER_KEY, secret_of(OTHER_KEY)):
        assert secret not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    summaries = [line for line in lines if line.get("event") == "request"]
    assert [s["api_key_id"] for s in summaries if s["path"] == SCORE] == [ENTRY.key_id] * 2 + [None] * 3


@pytest.mark.e2e
def test_prod_without_keys_refuses_to_start(tmp_path, tiny_bundle):
    """`leadscore serve` with LEADSCORE_ENV=prod and no key exits non-zero and says what to set."""
    env = {"LEADSCORE_MODEL_DIR": str(tiny_bundle), "LEADSCORE_ENV": "prod"}
    server = start_server(
        tmp_path, env={**env, "LEADSCORE_API_KEYS": "", "LEADSCORE_API_KEYS_FILE": ""}, wait_ready=False
    )
    code = server.wait(timeout=60)
    assert code != 0
    assert "cannot start" in server.log()
    assert "LEADSCORE_ENV=prod needs at least one API key" in server.log()


@pytest.mark.e2e
def test_prod_with_an_empty_keys_file_refuses_to_start(tmp_path, tiny_bundle):
    """A prod server whose mounted keys file is empty exits non-zero instead of serving."""
    keys_file = tmp_path / "keys"
    keys_file.write_text("\n")
    env = {"LEADSCORE_MODEL_DIR": str(tiny_bundle), "LEADSCORE_ENV": "prod", "LEADSCORE_API_KEYS_FILE": str(keys_file)}
    server = start_server(tmp_path, env=env, wait_ready=False)
    assert server.wait(timeout=60) != 0
    assert "needs at least one API key" in server.log()


@pytest.mark.e2e
def test_open_dev_server_warns_once_at_start(server):
    """A dev server without keys logs exactly one warning that the API is open."""
    warnings = [line for line in server.log().splitlines() if "api_keys_absent" in line]
    assert len(warnings) == 1
    assert json.loads(warnings[0])["level"] == "warning"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": "k1"},
        {"X-API-Key": ""},
        {"Authorization": "Bearer k2"},
        {"Authorization": "bearer   k2  "},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": ""},
        {"X-API-Key": "k1", "Authorization": "Bearer k2"},
        {"X-API-Key": "", "Authorization": "Bearer k2"},
    ],
)
def test_presented_key_reads_headers_as_fastapi_security_does(headers):
    """The scoring route's own header reading finds the key FastAPI's APIKeyHeader and HTTPBearer would find."""
    import asyncio  # noqa: PLC0415

    from fastapi import Request  # noqa: PLC0415
    from fastapi.security import APIKeyHeader, HTTPBearer  # noqa: PLC0415
    from starlette.datastructures import Headers  # noqa: PLC0415

    from leadscore.api.security import API_KEY_HEADER, presented_key  # noqa: PLC0415

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    request = Request({"type": "http", "headers": raw, "method": "POST", "path": "/"})

    async def fastapi_reads() -> str | None:
        header_key = await APIKeyHeader(name=API_KEY_HEADER, auto_error=False)(request)
        bearer = await HTTPBearer(auto_error=False)(request)
        return header_key or (bearer.credentials if bearer else None)

    assert presented_key(Headers(raw=raw)) == asyncio.run(fastapi_reads())
