"""Triton's model-control API (explicit mode): load a model's current config, wait for a
version to be ready. Loading re-reads ``config.pbtxt``, so new versions listed there load and
versions no longer listed unload once their in-flight requests finish: no restart."""

from __future__ import annotations

import time

import httpx


class TritonControlError(RuntimeError):
    pass


class TritonControl:
    def __init__(self, url: str, timeout_s: float = 300.0) -> None:
        self.url = url.rstrip("/") if "://" in url else f"http://{url.rstrip('/')}"
        self.timeout_s = timeout_s

    def load(self, name: str) -> None:
        r = httpx.post(f"{self.url}/v2/repository/models/{name}/load", timeout=self.timeout_s)
        if r.status_code != 200:
            raise TritonControlError(f"Triton could not load {name}: {r.text}")

    def version_ready(self, name: str, version: int) -> bool:
        try:
            r = httpx.get(f"{self.url}/v2/models/{name}/versions/{version}/ready", timeout=5)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def wait_ready(self, name: str, version: int) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not self.version_ready(name, version):
            if time.monotonic() > deadline:
                raise TritonControlError(f"{name} v{version} not ready after {self.timeout_s}s")
            time.sleep(0.2)
