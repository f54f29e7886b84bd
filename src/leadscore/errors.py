"""One error family, and the one JSON envelope every error response uses.

Envelope (`ErrorResponse`): {"status": "error", "code": "...", "message": "...", "request_id": "...",
           "errors": [{"lead_index": 3, "field": "industry", "location": "leads[3].industry",
                       "message": "...", "type": "..."}]}
The API renders it (`leadscore.api.handlers.render_error`) and documents it in OpenAPI from this one model.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class FieldError(BaseModel):
    """Where one problem is: lead index (null for request-level fields), field, and what is wrong."""

    model_config = ConfigDict(frozen=True)

    lead_index: int | None
    field: str | None
    location: str
    message: str
    type: str


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


class HeadersTooLarge(LeadscoreError):
    """The request's headers are over the configured cap."""

    status_code = 431
    code = "headers_too_large"


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


class LakeSpoolFull(ServiceUnavailable):
    """The lake's spool is at its cap: nothing is acknowledged that cannot be kept."""

    code = "lake_spool_full"


class LakeWriteFailed(ServiceUnavailable):
    """The predictions could not be recorded durably (the log says why)."""

    code = "lake_write_failed"


class ErrorResponse(BaseModel):
    """The envelope of every error response."""

    status: Literal["error"] = "error"
    code: str
    message: str
    request_id: str | None
    errors: tuple[FieldError, ...] = Field(default=())

    @classmethod
    def of(cls, error: LeadscoreError, request_id: str | None) -> ErrorResponse:
        """The envelope of `error` for the request `request_id`."""
        return cls(code=error.code, message=error.message, request_id=request_id, errors=error.errors)
