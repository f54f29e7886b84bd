"""API keys: how they look, how they are stored (hashes only), and the dependency that checks them.

A key is `lsk_<id>_<secret>`: `id` is 8 hex digits that name the key in logs and lake rows, `secret` is 256 random
bits. The service is configured only with `<id>:<label>:<sha256 hex of the whole key>` entries, so neither the
settings, the task definition nor the logs ever hold a usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

import structlog
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers

from leadscore.api.middleware import request_context
from leadscore.config import Environment, Settings
from leadscore.errors import ConfigError, Unauthorized
from leadscore.telemetry.logging import get_logger

KEY_PREFIX: Final = "lsk"
API_KEY_HEADER: Final = "X-API-Key"
_KEY_ID: Final = re.compile(r"^[0-9a-f]{8}$")
_LABEL: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_DIGEST: Final = re.compile(r"^[0-9a-f]{64}$")
# Longer than any key we issue; anything past it is not a key and is not hashed.
_MAX_PRESENTED: Final = 256
# Compared against when the presented id is unknown, so that path costs the same as a wrong secret.
_NO_DIGEST: Final = "0" * 64
_CHALLENGE: Final = {"WWW-Authenticate": "Bearer"}

log = get_logger("leadscore.security")


def key_digest(key: str) -> str:
    """The stored form of a key: SHA-256 of the whole key, hex.

    No slow KDF (bcrypt, scrypt, argon2) is needed: those protect low-entropy, human-chosen passwords against
    guessing. Our secrets are 256 bits from the OS CSPRNG, so even a leaked digest cannot be reversed by brute
    force at any hash speed, and a fast hash keeps the check at about a microsecond per request.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One configured key: its public id, a label saying who holds it, and the digest of the key."""

    key_id: str
    label: str
    digest: str

    def entry(self) -> str:
        """The configuration line for this key (`id:label:sha256hex`)."""
        return f"{self.key_id}:{self.label}:{self.digest}"


def generate_key(label: str) -> tuple[str, ApiKey]:
    """A new key and its configuration entry; the key itself is never stored anywhere by the service."""
    if not _LABEL.match(label):
        raise ConfigError(f"label {label!r} must be 1-64 letters, digits, '.', '_' or '-'")
    key_id = secrets.token_hex(4)
    key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    return key, ApiKey(key_id=key_id, label=label, digest=key_digest(key))


def key_id_of(presented: str) -> str | None:
    """The id part of a presented key if it has our shape (the id is public: safe to log), else None."""
    parts = presented.split("_", 2)
    if len(parts) == 3 and parts[0] == KEY_PREFIX and _KEY_ID.match(parts[1]) and parts[2]:
        return parts[1]
    return None


def _parse_entry(entry: str, where: str) -> ApiKey:
    parts = entry.split(":")
    if len(parts) != 3:
        # Never echo the entry: someone may have pasted a key where its hash belongs.
        raise ConfigError(f"{where}: an API key entry must be id:label:sha256hex")
    key_id, label, digest = (p.strip() for p in parts)
    if not _KEY_ID.match(key_id):
        raise ConfigError(f"{where}: key id must be 8 lowercase hex digits")
    if not _LABEL.match(label):
        raise ConfigError(f"{where}: label of key {key_id} must be 1-64 letters, digits, '.', '_' or '-'")
    if not _DIGEST.match(digest.lower()):
        raise ConfigError(f"{where}: hash of key {key_id} must be 64 hex digits (SHA-256)")
    return ApiKey(key_id=key_id, label=label, digest=digest.lower())


def _entries(text: str) -> list[str]:
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"API keys: not a valid JSON list ({exc.msg})") from exc
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError("API keys: a JSON list must hold id:label:sha256hex strings")
        return [i.strip() for i in items if i.strip()]
    lines = (line.split("#", 1)[0] for line in stripped.splitlines())
    return [e.strip() for line in lines for e in line.split(",") if e.strip()]


def parse_keys(text: str, where: str = "LEADSCORE_API_KEYS") -> tuple[ApiKey, ...]:
    """Entries separated by commas or newlines (`#` starts a comment), or a JSON list of entry strings."""
    return tuple(_parse_entry(entry, f"{where} entry {i + 1}") for i, entry in enumerate(_entries(text)))


class KeyRing:
    """The configured keys by id; empty means the service is open (allowed in dev only)."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        by_id: dict[str, ApiKey] = {}
        for key in keys:
            if key.key_id in by_id:
                raise ConfigError(f"API key id {key.key_id} is configured twice")
            by_id[key.key_id] = key
        self._by_id: Mapping[str, ApiKey] = by_id

    @property
    def enforced(self) -> bool:
        """Whether requests must carry a key."""
        return bool(self._by_id)

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Ids of the configured keys (for the start-up log line)."""
        return tuple(sorted(self._by_id))

    def verify(self, presented: str) -> ApiKey | None:
        """The key that `presented` is, or None; the digest comparison takes constant time."""
        if len(presented) > _MAX_PRESENTED:
            return None
        key_id = key_id_of(presented)
        known = self._by_id.get(key_id) if key_id else None
        expected = known.digest if known else _NO_DIGEST
        matches = hmac.compare_digest(key_digest(presented), expected)
        return known if matches and known else None


def load_keyring(settings: Settings) -> KeyRing:
    """The keys from `LEADSCORE_API_KEYS` and `LEADSCORE_API_KEYS_FILE`; refuses prod without any key.

    The one place that rule is checked: serving needs keys in prod; tools that only read settings do not.
    """
    keys = list(parse_keys(settings.api_keys))
    if settings.api_keys_file is not None:
        try:
            text = settings.api_keys_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read LEADSCORE_API_KEYS_FILE {settings.api_keys_file}: {exc.strerror}") from exc
        keys.extend(parse_keys(text, where=f"LEADSCORE_API_KEYS_FILE {Path(settings.api_keys_file).name}"))
    if settings.env is Environment.PROD and not keys:
        raise ConfigError(
            "LEADSCORE_ENV=prod needs at least one API key: set LEADSCORE_API_KEYS or LEADSCORE_API_KEYS_FILE "
            "(create one with `leadscore keys new --label NAME`)"
        )
    return KeyRing(keys)


# auto_error=False: a missing credential must reach our handler, which answers 401 in the envelope.
_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="An API key from `leadscore keys new`."
)
_bearer = HTTPBearer(auto_error=False, description="The same API key, sent as `Authorization: Bearer <key>`.")


def _keyring(request: Request) -> KeyRing:
    keyring: KeyRing = request.state.keyring
    return keyring


def presented_key(headers: Headers) -> str | None:
    """The key in `X-API-Key`, else in `Authorization: Bearer <key>`.

    Read as FastAPI's APIKeyHeader and HTTPBearer (auto_error off) read them.
    """
    header_key = headers.get(API_KEY_HEADER)
    if header_key:
        return header_key
    scheme, _, credentials = (headers.get("authorization") or "").partition(" ")
    credentials = credentials.strip()
    if scheme and credentials and scheme.lower() == "bearer":
        return credentials
    return None


def authenticate(request: Request, presented: str | None) -> ApiKey | None:
    """The caller's key (None when the service runs open in dev); 401 when a key is needed and not valid."""
    keyring = _keyring(request)
    if not keyring.enforced:
        return None
    if not presented:
        log.warning("auth_failed", reason="missing")
        raise Unauthorized(
            f"send an API key as `Authorization: Bearer <key>` or `{API_KEY_HEADER}`", headers=_CHALLENGE
        )
    key = keyring.verify(presented)
    if key is None:
        # The claimed id is public and worth knowing (a rotated key still in use); the rest is never logged.
        log.warning("auth_failed", reason="invalid", claimed_key_id=key_id_of(presented))
        raise Unauthorized("the API key is not valid", headers=_CHALLENGE)
    request_context(request.scope).api_key_id = key.key_id
    structlog.contextvars.bind_contextvars(api_key_id=key.key_id)
    return key


async def require_api_key(
    request: Request,
    header_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> ApiKey | None:
    """`authenticate` as a dependency: the security schemes it declares document the API key in OpenAPI."""
    return authenticate(request, header_key or (bearer.credentials if bearer else None))


# The OpenAPI security requirement of a route that calls `authenticate` itself instead of depending on RequireApiKey.
API_KEY_SECURITY: Final[list[dict[str, list[str]]]] = [{"APIKeyHeader": []}, {"HTTPBearer": []}]


async def require_metrics_key(
    request: Request,
    header_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> ApiKey | None:
    """Like `require_api_key`, but only when `metrics_require_key` is set."""
    settings: Settings = request.state.settings
    if not settings.metrics_require_key:
        return None
    return await require_api_key(request, header_key, bearer)


# For `dependencies=[...]` on routes and routers.
RequireApiKey: Final = Depends(require_api_key)
RequireMetricsKey: Final = Depends(require_metrics_key)
