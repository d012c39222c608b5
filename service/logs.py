"""Log hygiene: no API key reaches a log line, whoever logs it.

Keys travel in headers, but also in query strings (old WebSocket clients: ``?api_key=``), and
uvicorn logs every WebSocket request line with its query at INFO. ``RedactSecrets`` is a
logging filter installed on every handler where logging is configured (``configure``: the
root logger's, and uvicorn's own through ``uvicorn_log_config``), so it sees every record
whichever logger it comes from: it replaces the value of any key-bearing query parameter or
header, and any configured key wherever it appears (``add_secrets``), with ``[redacted]``.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable
from typing import Any, ClassVar

from uvicorn.config import LOGGING_CONFIG

REDACTED = "[redacted]"
# ?api_key=..., &token=..., key=...: up to the next separator
_QUERY = re.compile(
    r"(?i)(\b(?:api[_-]?key|key|token|access[_-]?token|auth|password|secret)=)([^&\s\"'#,;]+)"
)
# Authorization: Bearer ..., x-api-key: ..., ('authorization', 'Bearer ...') in a dump
_HEADER = re.compile(
    r"(?i)(\b(?:proxy-)?authorization|\bx-api-key)(['\"]?\s*[:=,]\s*b?['\"]?)"
    r"((?:bearer|basic|token)\s+)?([^\s'\",;)]+)"
)


def redact(text: str) -> str:
    """``text`` with key-bearing query values, auth headers and known keys replaced."""
    text = _QUERY.sub(lambda m: m[1] + REDACTED, text)
    text = _HEADER.sub(lambda m: m[1] + m[2] + (m[3] or "") + REDACTED, text)
    for secret in RedactSecrets.secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | type(None)):
        return value
    text = str(value)
    cleaned = redact(text)
    return value if cleaned == text else cleaned


class RedactSecrets(logging.Filter):
    """Rewrites each record it passes: its message, its arguments and its traceback."""

    secrets: ClassVar[set[str]] = set()  # the configured keys (module-wide: one service)

    @classmethod
    def add_secrets(cls, values: Iterable[str | bytes]) -> None:
        for value in values:
            text = value.decode() if isinstance(value, bytes) else value
            if text:
                cls.secrets.add(text)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _clean(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def configure(level: int = logging.INFO) -> None:
    """The process's logging (``rtmserve`` commands): one format, every handler filtered."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install(logging.getLogger())


def install(logger: logging.Logger) -> None:
    """``RedactSecrets`` on each of ``logger``'s handlers (once)."""
    for handler in logger.handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration with ``RedactSecrets`` on its handlers (the error
    log, where WebSocket request lines go, and the access log)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": f"{__name__}.RedactSecrets"}}
    for handler in config["handlers"].values():
        handler["filters"] = [*handler.get("filters", []), "redact"]
    return config
