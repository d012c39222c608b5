"""Optional API keys: who is asking, and whether they may ask now.

Keys come from ``RTMSERVE_API_KEYS`` (``name:key,name:key``) and/or the file
``RTMSERVE_API_KEYS_FILE`` (one ``name:key`` per line, ``#`` comments). A presented key is
compared with every configured one in constant time; the client is then known by its *name*,
the only thing that reaches logs and metrics labels. Each name has a token bucket
(``rate_limit`` requests/s, ``rate_burst`` at once; 0 = unlimited). Without any key configured
everyone is the client ``anonymous`` and nothing is checked.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from service.settings import Settings

from .errors import RateLimited, Unauthenticated

ANONYMOUS = "anonymous"


def parse_keys(text: str, where: str) -> dict[str, bytes]:
    """``name:key`` entries, separated by commas or lines -> {name: key}."""
    keys: dict[str, bytes] = {}
    for n, entry in enumerate(text.replace(",", "\n").splitlines(), 1):
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        name, sep, key = entry.partition(":")
        if not sep or not name.strip() or not key.strip():
            raise ValueError(f"{where}, entry {n}: expected name:key")  # never echo the entry
        keys[name.strip()] = key.strip().encode()
    return keys


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    burst: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens, self.stamp = self.burst, self.clock()

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one is due."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class AccessControl:
    def __init__(
        self,
        keys: dict[str, bytes],
        rate: float = 0.0,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys = list(keys.items())
        self.rate, self.burst, self.clock = rate, max(1, burst), clock
        self.buckets: dict[str, TokenBucket] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessControl:
        keys = parse_keys(settings.api_keys or "", "RTMSERVE_API_KEYS")
        if settings.api_keys_file is not None:
            path = Path(settings.api_keys_file)
            keys |= parse_keys(path.read_text(), str(path))
        return cls(keys, settings.rate_limit, settings.rate_burst)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def authenticate(self, presented: str | None) -> str:
        """The client's name; raises ``Unauthenticated`` (401) or ``RateLimited`` (429)."""
        if not self.enabled:
            return ANONYMOUS
        if not presented:
            raise Unauthenticated(
                "an API key is required (X-API-Key header, or Authorization: Bearer KEY)"
            )
        given = presented.encode()
        name = None
        for candidate, key in self.keys:  # no early exit: the time taken says nothing
            if hmac.compare_digest(key, given):
                name = candidate
        if name is None:
            raise Unauthenticated("the API key is not valid")
        if self.rate > 0:
            bucket = self.buckets.setdefault(name, TokenBucket(self.rate, self.burst, self.clock))
            wait = bucket.take()
            if wait > 0:
                raise RateLimited(
                    f"client {name!r} is over its rate of {self.rate:g} requests/s",
                    retry_after=math.ceil(wait),
                )
        return name


def presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    """The key from ``X-API-Key``, else from ``Authorization: Bearer KEY``."""
    if x_api_key:
        return x_api_key
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None
