"""The OpenAPI document: FastAPI's, plus the scoring body that its route parses itself, with the README's example."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from leadscore.api.schemas import EXAMPLE_REQUEST, EXAMPLE_RESPONSE, ScoreRequest


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The document of `app`, built once."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    # The scoring route parses its body itself (fast path), so its schema is added to the components here.
    request_schema = ScoreRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(request_schema.pop("$defs", {}))
    # pydantic sorts the keys of a schema's examples; the example reads as the README's (and a lead's fields in the
    # contract's order) only when put back as written.
    request_schema["examples"] = [EXAMPLE_REQUEST]
    components["ScoreRequest"] = request_schema
    # Set here, not on the route: FastAPI drops the nulls of examples given there (the answer's `"lead_id": null`).
    for item in schema["paths"].values():
        operation = item.get("post", {})
        if "scoring" in operation.get("tags", ()):
            operation["responses"]["200"]["content"]["application/json"]["example"] = EXAMPLE_RESPONSE
    app.openapi_schema = schema
    return schema


def install_openapi(app: FastAPI) -> None:
    """Make `app` serve `openapi_document`."""
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
