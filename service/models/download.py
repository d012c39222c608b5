"""Download one official file: pooch's HTTP downloader, with progress on stderr (a tqdm bar on a
terminal, log lines otherwise).

The caller owns ``out`` (a temporary file beside the cache) and verifies it before anything is
installed, so all this does is fetch the bytes, or say why it could not.
"""

from __future__ import annotations

from pathlib import Path

import pooch
import requests

from service import __version__
from service.progress import progress_bar

USER_AGENT = f"rtmserve/{__version__}"


class DownloadFailed(OSError):
    pass


def download(url: str, out: Path, label: str | None, timeout_s: float = 60.0) -> None:
    """Stream ``url`` into ``out``; ``label`` names the progress bar (None: no bar)."""
    # total=1 until pooch sets the real size: pooch tests the bar's truth, and tqdm refuses
    # bool() while the total is unknown
    bar = progress_bar(1, f"downloading {label}", "B") if label else False
    fetch = pooch.HTTPDownloader(
        progressbar=bar, chunk_size=1 << 20, timeout=timeout_s, headers={"User-Agent": USER_AGENT}
    )
    try:
        fetch(url, str(out), None)
    except requests.RequestException as exc:
        raise DownloadFailed(str(exc)) from exc
