"""The architecture holds: the import contracts in pyproject.toml, and the Triton models'
imports. The contracts are run by import-linter as a separate process (what a developer runs:
``lint-imports``), so a broken one fails here with the offending import chain."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
TRITON_MODELS = sorted((REPO / "model_repository").glob("*/model.py"))
# what the Python backend has besides service.core
TRITON_ALLOWED = {
    "json",
    "itertools",
    "os",
    "time",
    "functools",
    "collections",
    "numpy",
    "triton_python_backend_utils",
}


def test_every_import_contract_is_kept():
    run = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "BROKEN" not in run.stdout and " KEPT" in run.stdout


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


@pytest.mark.parametrize("model", TRITON_MODELS, ids=lambda p: p.parent.name)
def test_triton_models_import_only_service_core(model: Path):
    """Inside the Triton image only ``service.core`` (numpy, OpenCV, onnxruntime) is needed:
    no tritonclient, protobuf or gateway code."""
    imports = _imports(model)
    ours = {m for m in imports if m.split(".")[0] in ("service", "training", "rtmserve")}
    assert all(m.startswith("service.core") for m in ours), ours
    assert imports - ours <= TRITON_ALLOWED, imports - ours


def test_the_service_never_imports_training():
    offenders = [
        p.relative_to(REPO)
        for p in (REPO / "service").rglob("*.py")
        if any(m.split(".")[0] == "training" for m in _imports(p))
    ]
    assert offenders == []
