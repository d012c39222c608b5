"""Readiness while a version loads: the deployments' probes say "the serving versions answer",
not "nothing is loading".

Real processes: the session's service (gateway + embedded Triton with ``--strict-readiness``)
and a model of its own whose second version blocks in its load until the test releases it (a
registration building TensorRT engines for minutes, on a GPU). While it loads, Triton's own
``/v2/health/ready`` turns false; the compose health check and the Kubernetes startup and
readiness probes of Triton, and the gateway's, must still pass, and must fail when a serving
version does not answer.
"""

from __future__ import annotations

import shutil
import subprocess
import threading

import httpx
import pytest
import yaml

from rtmserve.launch import wait_until
from service.core.specs import PoseSpec
from service.metadata import ONNX_FILE, read_record, write_record
from service.repository.install import PENDING, install_model
from service.settings import Settings
from tests.support.cli import register_shipped_copy
from tests.support.deploy import local_command
from tests.support.paths import REPO

NAME = "slow-loading-pose"
# Prepended to the second version's model.py: its load waits for the test (a bounded wait, so
# a failed test leaves no stub blocked for ever).
BLOCK = """import pathlib as _pathlib, time as _time
_release = _pathlib.Path(__file__).with_name("release")
_deadline = _time.monotonic() + 300
while not _release.exists() and _time.monotonic() < _deadline:
    _time.sleep(0.05)
"""
pytestmark = pytest.mark.slow


def probes() -> dict[str, list[str]]:
    """Every Triton and gateway readiness command the deployments run, by where it comes from."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    out = {f"compose {n}": compose[n]["healthcheck"]["test"][1:] for n in ("triton", "gateway")}
    triton = yaml.safe_load((REPO / "deploy/k8s/overlays/gpu/triton-deployment.yaml").read_text())
    container = triton["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe"):
        out[f"k8s triton {probe}"] = container[probe]["exec"]["command"]
    return out


def run_probe(name: str, command: list[str], service, repository=None) -> int:
    url = service.triton_http if "triton" in name else service.http
    local = local_command(command, url, repository or service.repository)
    return subprocess.run(local, capture_output=True, text=True, timeout=60).returncode


@pytest.fixture(scope="module")
def slow_version(service, tmp_path_factory):
    """v1 registered and serving; v2 pending, its model.py blocked until ``release`` exists."""
    onnx = register_shipped_copy(service, NAME, tmp_path_factory.mktemp("slow"))
    spec = read_record(service.repository / NAME).parsed_spec
    assert isinstance(spec, PoseSpec)
    options = Settings().serving_options
    version = install_model(
        service.repository, NAME, spec, onnx, {"trained": False}, options, serve=False
    )
    folder = service.repository / NAME / str(version)
    assert (folder / ONNX_FILE).is_file()
    model_py = folder / "model.py"
    model_py.write_text(BLOCK + model_py.read_text())
    yield version, folder / "release"
    (folder / "release").touch()  # never leave a stub waiting


def test_probes_stay_ready_while_a_version_loads_and_fail_when_a_serving_one_does_not(
    service, slow_version, tmp_path
):
    version, release = slow_version
    triton = service.triton_http
    assert read_record(service.repository / NAME).versions[version]["state"] == PENDING
    for name, command in probes().items():  # before: everything ready
        assert run_probe(name, command, service) == 0, name

    loaded: dict[str, int] = {}

    def load() -> None:  # what the keeper or `models register` asks of Triton
        r = httpx.post(f"{triton}/v2/repository/models/{NAME}/load", timeout=600)
        loaded["status"] = r.status_code

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    try:
        # Triton's own readiness drops while the version loads: the defect the probes avoid
        wait_until(
            lambda: httpx.get(f"{triton}/v2/health/ready", timeout=5).status_code != 200,
            120,
            "Triton's /v2/health/ready to count the loading version",
        )
        for name, command in probes().items():
            assert run_probe(name, command, service) == 0, f"{name} failed while v2 loads"
        still = httpx.get(f"{triton}/v2/models/{NAME}/versions/{version}/ready", timeout=5)
        assert still.status_code != 200 and "status" not in loaded  # it was loading throughout
        # ... and a serving version that does not answer makes the Triton probes fail
        broken = tmp_path / "repository"
        shutil.copytree(service.repository / NAME, broken / NAME, ignore=ignore_versions)
        record = read_record(broken / NAME)
        record.serving_version = version  # the loading one: not answering yet
        write_record(broken / NAME, record)
        for name, command in probes().items():
            if "triton" in name:
                assert run_probe(name, command, service, broken) == 1, name
    finally:
        release.touch()
    loader.join(timeout=300)
    assert loaded.get("status") == 200
    wait_until(
        lambda: httpx.get(f"{triton}/v2/health/ready", timeout=5).status_code == 200,
        60,
        "Triton ready once the version loaded",
    )


def ignore_versions(folder: str, names: list[str]) -> list[str]:
    """Copy a model's record and configs, not its version folders."""
    return [n for n in names if n.isdigit()]
