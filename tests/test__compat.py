"""The private patches of library internals hold for the library version they were written against."""

from __future__ import annotations

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from leadscore._compat import PATCHED_UVICORN, HeaderLimitedProtocol


def test_uvicorn_is_the_version_the_patches_were_written_for() -> None:
    """On another uvicorn the header caps and the reuse-port supervisor must be re-checked (then bump the pin)."""
    assert uvicorn.__version__ == PATCHED_UVICORN


def test_the_header_caps_hook_the_parser_callbacks_uvicorn_defines() -> None:
    """Every method the header caps override exists on uvicorn's httptools protocol, so each override is called."""
    overridden = {"connection_made", "connection_lost", "data_received", "on_message_begin", "on_headers_complete",
                  "on_message_complete"}  # fmt: skip
    assert overridden <= {name for name in vars(HeaderLimitedProtocol) if not name.startswith("_")}
    assert all(callable(getattr(HttpToolsProtocol, name, None)) for name in overridden)
