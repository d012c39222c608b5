"""What a model may be called: a folder name in the cache and the repository, never a path.

One rule for every place a name becomes a path (``rtmserve models register|pull|import``, the
repository functions, the gateway and the Triton pipeline, which builds a file path from the
name a request carries). Python checks use ``fullmatch``: ``$`` would accept a trailing newline.
"""

from __future__ import annotations

import re

_BODY = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
# for JSON Schema / pydantic (ECMAScript and Rust regex: ``$`` is the end of the text there)
MODEL_NAME = rf"^{_BODY}$"
_NAME = re.compile(_BODY)
RULE = "1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"


class InvalidModelName(ValueError):
    """A model name that is not a plain folder name (a path, a newline, too long...)."""


def is_model_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_model_name(name: object) -> str:
    """``name`` when it is a valid model name; raises :class:`InvalidModelName` otherwise."""
    if not is_model_name(name):
        raise InvalidModelName(f"invalid model name {name!r}: {RULE}")
    return name  # type: ignore[return-value]
