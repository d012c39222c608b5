"""Progress: a tqdm bar on a terminal, plain lines otherwise (``service.progress``)."""

from __future__ import annotations

import io

from service.progress import LineProgress, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    with progress(10, "render", "frames", out=out, every=3600) as bar:
        assert isinstance(bar, LineProgress)
        for _ in range(10):
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("render: 10/10 frames (")
    assert "\r" not in out.getvalue()


def test_a_line_every_interval_and_bytes_in_megabytes():
    out = io.StringIO()
    bar = LineProgress(None, "downloading x", "B", out, every=0)  # every update prints
    bar.update(3_000_000)
    bar.reset(6_000_000)  # pooch: the real size, then the whole count
    bar.update(6_000_000)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("downloading x: 3.0 MB (") and lines[-1].startswith(
        "downloading x: 6.0 MB/6.0 MB (")  # fmt: skip


def test_a_tqdm_bar_with_rate_and_eta_on_a_terminal():
    out = Terminal()
    with progress(4, "stream", "frames", out=out) as bar:
        for _ in range(4):
            bar.update(1)
    text = out.getvalue()
    assert "\r" in text and "4/4" in text and "frames/s" in text and "100%" in text
