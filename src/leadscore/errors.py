"""One error family, and the one JSON envelope every error response uses.

Envelope: {"status": "error", "code": "...", "message": "...", "request_id": "...",
           "errors": [{"lead_index": 3, "field": "industry", "location": "leads[3].industry",
                       "message": "...", "type": "..."}]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field; lead_index is None for request-level fields."""

    location: str
    message: str
    type: str
    lead_index: int | None = None
    field: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "lead_index": self.lead_index,
            "field": self.field,
            "location": self.location,
            "message": self.message,
            "type": self.type,
        }


class LeadscoreError(Exception):
    """Base of every error the service reports; subclasses fix the status and machine code."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        errors: tuple[FieldError, ...] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.headers = headers or {}


class ModelBundleError(LeadscoreError):
    """The model bundle is missing, corrupt or does not match the feature spec."""

    code = "model_bundle_invalid"


class ConfigError(LeadscoreError):
    """Settings that must not be used (e.g. insecure in prod)."""

    code = "config_invalid"


class MalformedRequest(LeadscoreError):
    """The body is not parseable JSON."""

    status_code = 400
    code = "malformed_json"


class Unauthorized(LeadscoreError):
    """No API key, or not a known one."""

    status_code = 401
    code = "unauthorized"


class NotFound(LeadscoreError):
    """No such route."""

    status_code = 404
    code = "not_found"


class MethodNotAllowed(LeadscoreError):
    """The route exists, the method does not."""

    status_code = 405
    code = "method_not_allowed"


class RequestTimeout(LeadscoreError):
    """The client took longer than the body deadline to send its body."""

    status_code = 408
    code = "request_timeout"


class ClientClosedRequest(LeadscoreError):
    """The client went away before its body arrived; nobody reads the answer (499, as nginx logs it)."""

    status_code = 499
    code = "client_closed_request"


class PayloadTooLarge(LeadscoreError):
    """The body is over the configured cap."""

    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(LeadscoreError):
    """The body is not declared as JSON."""

    status_code = 415
    code = "unsupported_media_type"


class ValidationFailed(LeadscoreError):
    """The body is JSON but breaks the contract; `errors` lists every offending field."""

    status_code = 422
    code = "validation_error"


class ServiceUnavailable(LeadscoreError):
    """Not ready, shutting down, or over capacity; retry later."""

    status_code = 503
    code = "service_unavailable"


@dataclass(frozen=True, slots=True)
class ErrorEnvelope:
    """The body of every error response."""

    code: str
    message: str
    request_id: str | None
    errors: tuple[FieldError, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "status": "error",
            "code": self.code,
            "message": self.message,
            "request_id": self.request_id,
            "errors": [e.as_dict() for e in self.errors],
        }
