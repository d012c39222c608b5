"""Keep every model of the repository loaded, and its Python-backend stubs alive.

Two faults leave Triton up and its health endpoints green while requests fail:

- a model unloaded behind the service's back (an unauthenticated ``unload`` call, say);
  Triton's repository index then says ``UNAVAILABLE``;
- a Python-backend stub killed on its own: Triton keeps the model ``READY`` but answers every
  request of that instance with "Stub process ... is not healthy", for good (2.51 neither
  restarts nor even reaps it).

Replicas sharing one repository (a fleet) also need each Triton to load the version another
replica registered: the keeper loads a model whose record's serving version is not READY here,
and publishes what is (``loaded``) so that requests keep naming a version this Triton has.

Several Tritons behind one address (a Kubernetes Service in front of Triton pods) each need
the version too, and a request may land on any of them: given ``peers`` (every Triton's
control URL, e.g. a headless Service's addresses), the keeper catches each one up and
publishes as ``loaded`` only the versions READY on all of them that answer.

The keeper looks every ``period_s``: at the index, at the stubs of the embedded server (a stub
that became a zombie died), and at the models the application saw fail that way (``report``).
An unloaded model is loaded again; one with a dead stub is unloaded and loaded (Triton may
take a plain load of an unchanged, loaded model for a no-op), which starts new stubs. Either
is ``repairing`` meanwhile, so readiness says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable

import httpx

from .embedded import EmbeddedTriton

log = logging.getLogger(__name__)
UNHEALTHY_STUB = re.compile(r"Stub process '(?P<instance>[^']+)_\d+_\d+' is not healthy")
BUSY = ("LOADING", "UNLOADING")
CATCH_UP_RETRY_S = 10.0


def unhealthy_model(message: str) -> str | None:
    """The model whose stub Triton says is dead, from one of its error messages."""
    found = UNHEALTHY_STUB.search(message)
    return found.group("instance") if found else None


class ModelKeeper:
    def __init__(
        self,
        control_url: str,
        stubs: EmbeddedTriton | None = None,
        on_reload: Callable[[str], None] | None = None,
        period_s: float = 1.0,
        serving: Callable[[], list[tuple[str, int]]] | None = None,
        peers: Callable[[], list[str]] | None = None,
    ) -> None:
        """``stubs``: the embedded server, whose stub processes can be watched; ``serving``:
        the (model, version) pairs the (shared) repository's records serve or trial; ``peers``:
        the control URLs of every Triton the inference address leads to (blocking: DNS)."""
        self.url = control_url.rstrip("/") if "://" in control_url else f"http://{control_url}"
        self.stubs, self.on_reload, self.period_s = stubs, on_reload, period_s
        self.serving, self.peers = serving, peers
        # model -> versions READY on this Triton, as of the last look (None: not looked yet)
        self.loaded: dict[str, set[int]] | None = None
        # (Triton URL, model, version) -> when a load was asked
        self._caught_up: dict[tuple[str, str, int], float] = {}
        self.repairing: set[str] = set()
        self._reported: dict[str, float] = {}  # model -> when a request saw its stub dead
        self._reloaded: dict[str, float] = {}  # model -> when its last reload was done
        self._wake = asyncio.Event()

    def report(self, model: str, sent: float) -> None:
        """A request sent at ``sent`` (``time.monotonic()``) found a dead stub of ``model``:
        repair it now, unless it was sent before the last reload was done (the old fault)."""
        self._reported[model] = max(sent, self._reported.get(model, 0.0))
        self._wake.set()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=300) as http:
            while True:
                try:
                    await self.check(http)
                except (httpx.HTTPError, ValueError) as exc:  # Triton down: the supervisor's
                    log.debug("model check skipped: %s", exc)
                except Exception:  # never let the keeper die
                    log.exception("model check failed")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.period_s)

    async def _catch_up(
        self,
        http: httpx.AsyncClient,
        url: str,
        states: dict[str, set[str]],
        loaded: dict[str, set[int]],
    ) -> None:
        """A version another replica registered (the records are shared) is loaded here too:
        Triton reads the model's updated config on ``load``. Until it is ready this gateway
        keeps answering with the version its Triton has (``ModelIndex.serving``)."""
        now = time.monotonic()
        for name, version in self.serving() if self.serving else []:
            if name not in states or version in loaded.get(name, set()):
                continue
            key = (url, name, version)
            if now - self._caught_up.get(key, -CATCH_UP_RETRY_S) < CATCH_UP_RETRY_S:
                continue  # asked already: a load takes time, or failed (retry later)
            self._caught_up[key] = now
            log.info("%s v%d serves in the repository but is not loaded on %s: loading", name,
                     version, url)  # fmt: skip
            await http.post(f"{url}/v2/repository/models/{name}/load")

    @staticmethod
    async def _index(
        http: httpx.AsyncClient, url: str
    ) -> tuple[dict[str, set[str]], dict[str, set[int]]]:
        """(model -> states, model -> READY versions) of the Triton at ``url``."""
        index = (await http.post(f"{url}/v2/repository/index", json={})).json()
        states: dict[str, set[str]] = {}
        loaded: dict[str, set[int]] = {}
        for entry in index:
            states.setdefault(entry["name"], set()).add(entry.get("state", ""))
            if entry.get("state") == "READY" and str(entry.get("version", "")).isdigit():
                loaded.setdefault(entry["name"], set()).add(int(entry["version"]))
        return states, loaded

    async def _peers(self, http: httpx.AsyncClient, loaded: dict[str, set[int]]) -> None:
        """Catch every peer up; keep in ``loaded`` what all the peers that answer have (one
        that does not answer is not ready, so no request reaches it either)."""
        assert self.peers is not None
        for url in await asyncio.to_thread(self.peers):
            if url == self.url:
                continue
            try:
                states, theirs = await self._index(http, url)
                await self._catch_up(http, url, states, theirs)
            except (httpx.HTTPError, ValueError) as exc:
                log.debug("Triton peer %s skipped: %s", url, exc)
                continue
            for name in loaded:
                loaded[name] &= theirs.get(name, set())

    async def check(self, http: httpx.AsyncClient) -> None:
        states, loaded = await self._index(http, self.url)
        unloaded = {n for n, s in states.items() if not s & {"READY", *BUSY}}
        await self._catch_up(http, self.url, states, loaded)
        if self.peers is not None:
            await self._peers(http, loaded)
        self.loaded = loaded
        crashed = self.stubs.dead_stubs() if self.stubs else set()
        reported, self._reported = self._reported, {}
        failing = {m for m, t in reported.items() if m in states and t > self._reloaded.get(m, 0)}
        broken = unloaded | crashed | failing
        self.repairing = broken
        for name in sorted(broken):
            control = f"{self.url}/v2/repository/models/{name}"
            if name in unloaded:
                log.warning("model %s is not loaded: loading it again", name)
            else:  # a load of an unchanged loaded model may change nothing: unload first
                log.warning("a Python-backend stub of %s died: reloading the model", name)
                await http.post(f"{control}/unload")
            r = await http.post(f"{control}/load")
            self._reloaded[name] = time.monotonic()
            if self.stubs is not None:
                self.stubs.forget_stubs(name)
            if r.status_code == 200:
                self.repairing.discard(name)
                if self.on_reload is not None:
                    self.on_reload(name)
            else:
                log.error("could not load %s again: %s", name, r.text)
