"""Run clients side by side: one thread each, started together; the wall time they took."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def run_together(clients: list[Callable[[], None]]) -> float:
    threads = [threading.Thread(target=c) for c in clients]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start
