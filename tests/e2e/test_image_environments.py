"""Each container image's Python environment, built here exactly as its Dockerfile installs it,
runs what that image runs: a dependency dropped from either Dockerfile fails here, by name.

- Triton image (deploy/triton/Dockerfile): every ``model_repository/*/model.py`` imports, and
  a real tritonserver (the embedded one: the NGC server cannot run here) whose Python-backend
  stubs see only that environment loads the repository ``rtmserve prepare`` writes (CPU
  configs) and answers a real photo.
- Gateway image (Dockerfile): ``rtmserve prepare`` and ``rtmserve serve`` from that environment
  start, and the gateway answers through the Triton above.

See tests/support/images.py for how the environments are built (offline, from the wheelhouse
``make install-test`` fills) and what differs from the images (the NGC image's Python 3.12).
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rtmserve.launch import free_port, stop_process, wait_http_ready, wait_until
from service.triton.embedded import EmbeddedTriton, TritonPorts, find_tritonserver, prepare_backends
from tests.support.images import build_environment
from tests.support.paths import MODELS_MIRROR, REPO

WHEELHOUSE = Path(os.environ.get("RTMSERVE_WHEELHOUSE", REPO / ".wheelhouse"))
PHOTO = REPO / "deploy" / "smoke" / "000000547336.jpg"  # one person
pytestmark = pytest.mark.slow


def site_packages(python: Path) -> str:
    run = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                          "['purelib'])"], capture_output=True, text=True, check=True)  # fmt: skip
    return run.stdout.strip()


def image_env(python: Path, **extra: str) -> dict[str, str]:
    """Only the image's environment: its interpreter first on PATH (the stub runs model.py
    with it), its site-packages and nothing of this test's virtualenv."""
    bin_dir = str(python.parent)
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    ours = str(Path(sys.executable).parent)
    path = [p for p in keep.get("PATH", "").split(os.pathsep) if p != ours]
    return {**keep, "PATH": os.pathsep.join([bin_dir, *path]), "PYTHONNOUSERSITE": "1", **extra}


@pytest.fixture(scope="module")
def environments(tmp_path_factory) -> dict[str, Path]:
    if not WHEELHOUSE.is_dir():
        pytest.fail(f"no wheelhouse at {WHEELHOUSE}: `make install-test` fills it")
    return {
        image: build_environment(image, tmp_path_factory.mktemp(f"image-{image}"), WHEELHOUSE)
        for image in ("triton", "gateway")
    }


def test_every_triton_model_imports_in_the_triton_image_environment(environments):
    python = environments["triton"]
    _, _, triton = find_tritonserver()
    backend_utils = triton / "backends" / "python"  # triton_python_backend_utils (numpy only)
    for model_py in sorted((REPO / "model_repository").glob("*/model.py")):
        code = (
            "import importlib.util as u; "
            f"s = u.spec_from_file_location('m', {str(model_py)!r}); "
            "s.loader.exec_module(u.module_from_spec(s))"
        )
        env = image_env(python, PYTHONPATH=str(backend_utils))
        run = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd="/",
                             env=env)  # fmt: skip
        assert run.returncode == 0, f"{model_py.parent.name}/model.py:\n{run.stderr[-2000:]}"


@pytest.fixture(scope="module")
def prepared(environments, tmp_path_factory) -> Path:
    """``rtmserve prepare`` from the gateway image's environment (compose's ``models``)."""
    home = tmp_path_factory.mktemp("image-home")
    gateway = environments["gateway"]
    env = image_env(gateway, RTMSERVE_HOME=str(home), RTMSERVE_OFFLINE="1",
                    RTMSERVE_MODEL_MIRROR=str(MODELS_MIRROR))  # fmt: skip
    run = subprocess.run([str(gateway.parent / "rtmserve"), "prepare"], capture_output=True,
                         text=True, timeout=900, env=env, cwd=home)  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    return home


@pytest.fixture(scope="module")
def triton(environments, prepared, tmp_path_factory) -> Iterator[TritonPorts]:
    """A tritonserver whose stubs run the repository's model.py files with the Triton image's
    environment alone (the NGC image's Python has nothing else)."""
    python = environments["triton"]
    work = tmp_path_factory.mktemp("image-triton")
    ports = TritonPorts(free_port(), free_port(), free_port())
    _, libs, _ = find_tritonserver()
    command = EmbeddedTriton(prepared / "repository", work, ports).command(prepare_backends(work))
    env = image_env(python, LD_LIBRARY_PATH=str(libs), PYTHONPATH=site_packages(python))
    log = work / "tritonserver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)

    def loaded() -> bool:
        text = log.read_text(errors="replace")
        failed = [line for line in text.splitlines() if "Error" in line or "failed" in line]
        assert not failed, "Triton with the image's environment:\n" + "\n".join(failed[-10:])
        assert proc.poll() is None, text[-3000:]
        try:
            url = f"http://127.0.0.1:{ports.http}/v2/health/ready"
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(loaded, 600, "Triton to load the prepared repository")
        yield ports
    finally:
        stop_process(proc, 60)


def test_the_triton_image_serves_the_prepared_repository_and_the_gateway_image_answers(
    environments, prepared, triton
):
    gateway = environments["gateway"]
    http, grpc = free_port(), free_port()
    env = image_env(
        gateway, RTMSERVE_HOME=str(prepared), RTMSERVE_OFFLINE="1", RTMSERVE_HOST="127.0.0.1",
        RTMSERVE_HTTP_PORT=str(http), RTMSERVE_GRPC_PORT=str(grpc),
        RTMSERVE_TRITON_HTTP=f"http://127.0.0.1:{triton.http}",
    )  # fmt: skip
    log = prepared / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(gateway.parent / "rtmserve"), "serve", "--triton-url",
             f"127.0.0.1:{triton.grpc}", "--no-prepare"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=prepared,
        )  # fmt: skip
    try:
        tail = lambda: log.read_text(errors="replace")[-3000:]  # noqa: E731
        wait_http_ready(proc, f"http://127.0.0.1:{http}/readyz", 300, "gateway", tail)
        r = httpx.post(f"http://127.0.0.1:{http}/v1/pose", content=PHOTO.read_bytes(), timeout=60)
        assert r.status_code == 200, r.text
        persons = r.json()["persons"]
        assert len(persons) >= 1 and len(persons[0]["keypoints"]) == 17
    finally:
        assert stop_process(proc, 60) == 0, log.read_text(errors="replace")[-3000:]


def test_the_environments_are_the_images_not_this_one(environments):
    """What the images lack is absent here too: the Triton image has no gateway packages."""
    triton = environments["triton"]
    for module in ("fastapi", "tritonclient", "torch"):
        run = subprocess.run([str(triton), "-c", f"import {module}"], capture_output=True,
                             text=True, env=image_env(triton))  # fmt: skip
        assert run.returncode != 0 and "ModuleNotFoundError" in run.stderr, module
    assert sysconfig.get_paths()["purelib"] != site_packages(triton)
