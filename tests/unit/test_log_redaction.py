"""``service.logs``: key-bearing queries, auth headers and configured keys never reach a log
line, through uvicorn's own logging configuration and the root logger's (the e2e check of a
whole service run is ``tests/e2e/test_access.py``)."""

from __future__ import annotations

import logging
import logging.config

import pytest

from service.logs import REDACTED, RedactSecrets, install, redact, uvicorn_log_config

KEY = "alice-7f3a9c2e51d04b88"


@pytest.mark.parametrize(
    "line",
    [
        f"/v1/pose/ws?api_key={KEY}",
        f"/v1/pose/ws?det_interval=5&api_key={KEY}&x=1",
        f"GET /?token={KEY} HTTP/1.1",
        f"/x?key={KEY}",
        f"Authorization: Bearer {KEY}",
        f"headers: [(b'x-api-key', b'{KEY}')]",
        f"{{'authorization': 'Bearer {KEY}'}}",
        f"a configured key anywhere: ...{KEY}...",
    ],
)
def test_every_form_of_a_key_is_redacted(line: str, monkeypatch):
    monkeypatch.setattr(RedactSecrets, "secrets", {KEY})
    assert KEY not in redact(line) and REDACTED in redact(line)


def test_lines_without_keys_stay_as_they_are():
    line = '127.0.0.1:5 - "WebSocket /v1/pose/ws?det_interval=5" [accepted] monkey=1'
    assert redact(line) == line


def test_uvicorn_and_root_handlers_redact_whatever_logger_logs(capsys, monkeypatch):
    monkeypatch.setattr(RedactSecrets, "secrets", {KEY})
    saved = {n: logging.getLogger(n).handlers[:] for n in ("", "uvicorn", "uvicorn.access")}
    try:
        logging.config.dictConfig(uvicorn_log_config())
        root = logging.getLogger()
        root.handlers = [logging.StreamHandler()]  # what basicConfig gives the process
        install(root)
        # uvicorn's WebSocket request line, its access line (args as uvicorn passes them), a
        # traceback whose message holds the key, and one of our loggers
        logging.getLogger("uvicorn.error").info(
            '%s - "WebSocket %s" [accepted]', "127.0.0.1:5", f"/v1/pose/ws?api_key={KEY}"
        )
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/?api_key={KEY}", "1.1", 200
        )
        try:
            raise RuntimeError(f"bad request /x?api_key={KEY}")
        except RuntimeError:
            logging.getLogger("rtmserve.test").exception("failed")
        logging.getLogger("rtmserve.test").warning("presented %s", KEY)
    finally:
        for name, handlers in saved.items():
            logging.getLogger(name).handlers = handlers
    captured = capsys.readouterr()
    err = captured.err + captured.out  # uvicorn's access log goes to stdout
    assert "WebSocket /v1/pose/ws?api_key=[redacted]" in err  # the line is there, the key not
    assert "GET /?api_key=[redacted]" in err and "RuntimeError" in err
    assert KEY not in err
