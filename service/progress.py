"""Progress of long work (downloads, rendering a video, streaming): a tqdm bar with rate and
ETA on a terminal, plain log lines otherwise (logs and CI get a line every few seconds and one
at the end, never bar redraws)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO


class LineProgress:
    """The part of tqdm's interface callers use (pooch included: ``total``, ``update``,
    ``reset``, ``close``), as log lines."""

    def __init__(self, total: int | None, desc: str, unit: str, out: TextIO, every: float) -> None:
        self.total, self.desc, self.unit, self.out, self.every = total, desc, unit, out, every
        self.n, self.postfix = 0, ""
        self.start = self._last = time.monotonic()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= self.every:
            self._line()

    def reset(self, total: int | None = None) -> None:
        self.n = 0
        if total is not None:
            self.total = total

    def _amount(self, n: float) -> str:
        return f"{n / 1e6:.1f} MB" if self.unit == "B" else f"{n:g}"

    def _line(self) -> None:
        self._last = time.monotonic()
        rate = self.n / max(self._last - self.start, 1e-9)
        of = f"/{self._amount(self.total)}" if self.total else ""
        unit = "" if self.unit == "B" else f" {self.unit}"
        tail = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self._amount(self.n)}{of}{unit} ({self._amount(rate)}{unit}/s{tail})",
              file=self.out, flush=True)  # fmt: skip

    def close(self) -> None:
        self._line()


def progress_bar(
    total: int | None, desc: str, unit: str = "it", out: TextIO | None = None, every: float = 5.0
) -> Any:
    """A tqdm bar when ``out`` (stderr) is a terminal, else a ``LineProgress``."""
    out = out or sys.stderr
    if out.isatty():
        from tqdm import tqdm

        scale = unit == "B"
        return tqdm(total=total, desc=desc, unit=unit, unit_scale=scale, file=out,
                    dynamic_ncols=True)  # fmt: skip
    return LineProgress(total, desc, unit, out, every)


@contextmanager
def progress(
    total: int | None, desc: str, unit: str = "it", out: TextIO | None = None, every: float = 5.0
) -> Iterator[Any]:
    bar = progress_bar(total, desc, unit, out, every)
    try:
        yield bar
    finally:
        bar.close()
