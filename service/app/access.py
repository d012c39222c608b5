"""Optional API keys: who is asking, and whether they may ask now.

Keys come from ``RTMSERVE_API_KEYS`` (``name:key,name:key``) and/or the file
``RTMSERVE_API_KEYS_FILE`` (one ``name:key`` per line; lines starting with ``#`` are comments).
A malformed entry, a key shorter than ``MIN_KEY_LENGTH`` or a name used twice stops the service
at start-up: a key silently cut short (``#`` used to start a comment anywhere) is a weaker key.
A presented key is compared with every configured one in constant time; the client is then
known by its *name*, the only thing that reaches logs and metrics labels. Each name has a token
bucket (``rate_limit`` requests/s, ``rate_burst`` at once; 0 = unlimited), which every frame of
a stream draws from too (``pace``). Without any key configured everyone is the client
``anonymous``, and the limits count per client address, so one caller cannot use up everyone's
share.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from service.settings import Settings

from .errors import RateLimited, Unauthenticated

ANONYMOUS = "anonymous"
MIN_KEY_LENGTH = 16
# names reach log lines and metric labels: no spaces, quotes or line breaks
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
KEY = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: what a header can carry
MAX_ADDRESS_BUCKETS = 10_000  # without keys: buckets kept per client address, at most


def parse_keys(text: str, where: str) -> dict[str, bytes]:
    """``name:key`` entries, separated by commas or lines -> {name: key}; raises ``ValueError``
    naming the entry (never its text, which holds a key) when one is malformed."""
    keys: dict[str, bytes] = {}
    for n, entry in enumerate(text.replace(",", "\n").splitlines(), 1):
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        name, sep, key = (part.strip() for part in entry.partition(":"))
        problem = None
        if not sep or not name or not key:
            problem = "expected name:key"
        elif not NAME.fullmatch(name):
            problem = "the name must be 1-64 letters, digits, '_', '.', '@' or '-'"
        elif not KEY.fullmatch(key):
            problem = "the key must be printable ASCII without spaces"
        elif len(key) < MIN_KEY_LENGTH:
            problem = f"the key is shorter than {MIN_KEY_LENGTH} characters"
        elif name in keys:
            problem = f"the name {name!r} is used twice"
        elif key.encode() in keys.values():
            problem = "the same key is given twice"
        if problem:
            raise ValueError(f"{where}, entry {n}: {problem}")  # never echo the entry
        keys[name] = key.encode()
    return keys


@dataclass(frozen=True)
class Client:
    """Who asks: ``name`` for logs and metrics (the key's name, or ``anonymous``), ``quota``
    what rate and stream limits count against (the name, or ``anonymous@ADDRESS``)."""

    name: str
    quota: str


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
        """Raises ``ValueError`` on a malformed key configuration: the service must not start."""
        keys = parse_keys(settings.api_keys or "", "RTMSERVE_API_KEYS")
        if settings.api_keys_file is not None:
            path = Path(settings.api_keys_file)
            for name, key in parse_keys(path.read_text(), str(path)).items():
                if name in keys or key in keys.values():
                    raise ValueError(f"{path}: the name {name!r} or its key is given twice")
                keys[name] = key
        return cls(keys, settings.rate_limit, settings.rate_burst)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def authenticate(self, presented: str | None, address: str = "") -> Client:
        """Who asks, charged one request; raises ``Unauthenticated`` (401) or ``RateLimited``
        (429). ``address``: the client's network address (the quota without keys)."""
        client = self.identify(presented, address)
        self.charge(client)
        return client

    def identify(self, presented: str | None, address: str = "") -> Client:
        """Who asks, without charging anything; raises ``Unauthenticated`` (401)."""
        if not self.enabled:
            return Client(ANONYMOUS, f"{ANONYMOUS}@{caller_network(address) or 'unknown'}")
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
        return Client(name, name)

    def _wait(self, client: Client) -> float:
        """Takes a token from ``client``'s bucket: 0, or the seconds until one is due."""
        if self.rate <= 0:
            return 0.0
        bucket = self.buckets.get(client.quota)
        if bucket is None:
            if len(self.buckets) >= MAX_ADDRESS_BUCKETS:  # forget the full ones (idle callers)
                now = self.clock()
                kept = {q: b for q, b in self.buckets.items()
                        if b.tokens + (now - b.stamp) * b.rate < b.burst}  # fmt: skip
                if len(kept) > MAX_ADDRESS_BUCKETS // 2:  # all busy: the oldest go too
                    kept = dict(list(kept.items())[len(kept) // 2 :])
                self.buckets = kept
            bucket = self.buckets[client.quota] = TokenBucket(self.rate, self.burst, self.clock)
        return bucket.take()

    def charge(self, client: Client) -> None:
        """One request: raises ``RateLimited`` (429) when ``client`` is over its rate."""
        wait = self._wait(client)
        if wait > 0:
            who = "this address" if client.name == ANONYMOUS else f"client {client.name!r}"
            raise RateLimited(
                f"{who} is over its rate of {self.rate:g} requests/s", retry_after=math.ceil(wait)
            )

    async def pace(self, client: Client) -> None:
        """One frame of a stream: waits for ``client``'s next token, so that a stream runs at
        most at its client's rate (a live source then skips frames) instead of costing one
        request for thousands of frames."""
        while (wait := self._wait(client)) > 0:
            await asyncio.sleep(wait)


def caller_network(address: str) -> str:
    """What counts as one caller without keys: its IPv4 address, or its IPv6 /64 (one host
    commonly holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(getattr(ip, "ipv4_mapped", None) or ip)


def presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    """The key from ``X-API-Key``, else from ``Authorization: Bearer KEY``."""
    if x_api_key:
        return x_api_key
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None
