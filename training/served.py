"""Find the ONNX file a service's runtime model repository serves for a model name.

``--init served:NAME[:VERSION]`` fine-tunes exactly what runs in production: the repository is
the service's (``Settings().repository_dir``), its record names the serving version, and the
file is ``<repository>/<NAME>/<VERSION>/model.onnx``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.metadata import ONNX_FILE, RECORD_FILE, model_path, read_record
from service.settings import Settings


def default_repository() -> Path:
    """The repository ``rtmserve serve`` uses here ($RTMSERVE_REPOSITORY, $RTMSERVE_HOME)."""
    return Settings().repository_dir


def served_onnx(spec: str, repository: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The ONNX of ``NAME[:VERSION]`` (default: the serving version) and what was resolved."""
    name, _, version_text = spec.partition(":")
    repo = Path(repository) if repository else default_repository()
    if not name or not (model_path(repo, name) / RECORD_FILE).is_file():
        known = sorted(p.parent.name for p in repo.glob(f"*/{RECORD_FILE}"))
        raise ValueError(
            f"no model {name!r} in the model repository {repo} (models there: "
            f"{', '.join(known) or 'none'}); --model-repository points elsewhere"
        )
    record = read_record(repo / name)
    try:
        version = int(version_text) if version_text else record.serving_version
    except ValueError:
        raise ValueError(f"served:{spec}: version {version_text!r} is not a number") from None
    if version not in record.versions:
        raise ValueError(
            f"model {name!r} has no version {version} (versions: "
            f"{', '.join(map(str, sorted(record.versions))) or 'none'}; "
            f"serving: {record.serving_version})"
        )
    path = repo / name / str(version) / ONNX_FILE
    if not path.is_file():
        raise ValueError(f"model {name!r} v{version}: {path} is missing")
    return path, {"served": name, "version": version, "serving_version": record.serving_version}
