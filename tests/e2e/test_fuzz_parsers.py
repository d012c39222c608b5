"""Hypothesis over the multipart upload parser and the WebSocket message parser of the real
service (they need the whole app: admission, access, the stream session): every input gets a
JSON 4xx or a real answer, never a 5xx, a 1011 close or a traceback in the log, and the service
stays healthy. Bounded and derandomized for CI; bench/fuzz.py runs longer."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
from hypothesis import given

from tests.support.fuzz import (
    check_answer,
    check_ws,
    fuzz_settings,
    multipart_requests,
    ws_sessions,
)

pytestmark = pytest.mark.slow

MULTIPART_EXAMPLES, WS_EXAMPLES = 150, 60


def tracebacks(service) -> int:
    return service.log.read_text(errors="replace").count("Traceback")


def test_fuzzed_multipart_uploads_get_a_json_answer_never_a_5xx(service):
    seen: Counter[int] = Counter()
    before = tracebacks(service)
    with httpx.Client(base_url=service.http, timeout=60) as http:

        @fuzz_settings(MULTIPART_EXAMPLES)
        @given(multipart_requests())
        def run(request: tuple[bytes, str]) -> None:
            body, content_type = request
            r = http.post("/v1/pose", content=body, headers={"content-type": content_type})
            check_answer(r.status_code, r.content)
            seen[r.status_code] += 1

        run()
        assert http.get("/readyz").status_code == 200
    assert tracebacks(service) == before, service.log_tail()
    assert seen[200] and seen[400], seen  # images found in the parts, and refusals


def test_fuzzed_websocket_sessions_end_cleanly_never_with_1011(service):
    url = service.http.replace("http://", "ws://") + "/v1/pose/ws"
    seen: Counter[str] = Counter()
    before = tracebacks(service)

    @fuzz_settings(WS_EXAMPLES)
    @given(ws_sessions())
    def run(messages: list[str | bytes]) -> None:
        seen[check_ws(url, messages)] += 1

    run()
    assert httpx.get(f"{service.http}/readyz", timeout=10).status_code == 200
    assert tracebacks(service) == before, service.log_tail()
    assert seen["refused"] and seen["answered"], seen
