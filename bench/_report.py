"""Every benchmark's JSON report: its figures plus when and on what machine they were taken."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def write_report(path: Path, benchmark: str, **fields: Any) -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = {
        "benchmark": benchmark,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg": load},
        **fields,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")
    return report
