"""The scoring fast lane: POSTs to the scoring paths go straight to their handler, past FastAPI's router."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from leadscore.api.handlers import handle_error
from leadscore.errors import LeadscoreError
from leadscore.lake.errors import LakeError


class ScoringFastLane:
    """POSTs to the scoring paths go straight to their handler; every other request goes through FastAPI.

    FastAPI's router, endpoint wrapper and exception layers cost about a sixth of a 1-lead request's CPU, for
    nothing the scoring handler needs: it reads its body and state itself and raises only LeadscoreError or
    LakeError, rendered here by the same handler FastAPI would call. The FastAPI route stays registered: it is what
    OpenAPI documents, and it answers the other methods (405). Unexpected errors propagate to ServerErrorMiddleware
    as they would from the route. Sits inside the request-context and edge-limit middlewares, so ids, logs, metrics
    and limits apply. A FastAPI dependency added to the scoring route would never run here: tests/test_app.py fails
    if one is added.

    MLServer's way (a custom APIRoute whose route handler calls the endpoint directly) was measured against this
    lane, 1-lead requests in process: it still pays Starlette's routing, request wrapper and exception layers, and
    cost about a third more CPU per request, so the lane stays.
    """

    def __init__(
        self, app: ASGIApp, routes: Mapping[str, APIRoute], handler: Callable[[Request], Awaitable[Response]]
    ) -> None:
        self.app = app
        self.routes = routes
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a scoring POST directly, else hand the request on."""
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # the template the request metrics and log line report
        request = Request(scope, receive)
        try:
            response = await self.handler(request)
        except (LeadscoreError, LakeError) as exc:
            response = handle_error(request, exc)
        await response(scope, receive, send)


def scoring_routes(api: APIRouter, handler: Callable[..., Any]) -> dict[str, APIRoute]:
    """The POST routes of `api` served by `handler`, by path (`api` is included in the app without a prefix)."""
    return {
        route.path: route
        for route in api.routes
        if isinstance(route, APIRoute) and route.endpoint is handler and "POST" in (route.methods or ())
    }
