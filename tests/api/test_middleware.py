"""The request context: one definition of a request id, whichever way it arrives."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from leadscore.api.decode import _fast_parse
from leadscore.api.middleware import is_request_id
from leadscore.api.schemas import ScoreRequest

IDS = ["a", "A" * 128, "A" * 129, "batch-scoring-001", "x.y_z:1-2", "x y", "abc\n", "", "é", "a/b"]


def _body_accepts(request_id: str) -> bool:
    try:
        ScoreRequest.model_validate({"request_id": request_id, "leads": [{}]})
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("request_id", IDS)
def test_header_body_and_fast_decoder_agree_on_request_ids(request_id: str) -> None:
    """The X-Request-ID check, the body's contract and the fast decoder accept exactly the same ids."""
    body = json.dumps({"request_id": request_id, "leads": [{}]}).encode()
    fast = _fast_parse(body)
    assert is_request_id(request_id) == _body_accepts(request_id)
    assert (fast is not None) == is_request_id(request_id)
