"""Several Tritons behind one gateway (Kubernetes: Triton pods behind a Service): the gateway's
model keeper loads every version the shared repository serves on each of them, and answers
with a version only once all of them have it.

Real processes: the session's service (gateway + its Triton A) and a second Triton B on the same
repository; a gateway G infers through B and names A and B as its peers (what the headless
Service's name resolves to on Kubernetes). Versions are registered with ``--no-triton`` (the
record only), so nothing but G's keeper loads them on B.
"""

from __future__ import annotations

import httpx
import pytest

from rtmserve.launch import free_port, start_service, wait_until
from service.metadata import read_record
from service.triton.embedded import EmbeddedTriton, TritonPorts
from tests.support.cli import models_cli, register_shipped_copy

NAME = "peers-pose"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(service, tmp_path_factory):
    """A model of its own in the session's repository, v1 loaded on Triton A."""
    return register_shipped_copy(service, NAME, tmp_path_factory.mktemp("peers"))


@pytest.fixture(scope="module")
def triton_b(service, model, tmp_path_factory):
    ports = TritonPorts(free_port(), free_port(), free_port())
    t = EmbeddedTriton(service.repository, tmp_path_factory.mktemp("triton-b"), ports)
    t.start()
    t.wait_ready()
    yield t
    t.stop()


@pytest.fixture(scope="module")
def gateway(service, triton_b, tmp_path_factory):
    b_http = f"http://127.0.0.1:{triton_b.ports.http}"
    env = {
        "RTMSERVE_REPOSITORY": str(service.repository),
        "RTMSERVE_TRITON_HTTP": b_http,
        "RTMSERVE_TRITON_PEERS": f"{service.triton_http.split('://')[1]},127.0.0.1:{triton_b.ports.http}",
    }
    args = ("--triton-url", triton_b.url, "--no-prepare")
    svc = start_service(tmp_path_factory.mktemp("gateway-g"), extra_env=env, args=args)
    yield svc
    assert svc.stop() == 0, svc.log_tail()


def ready(url: str, version: int) -> bool:
    return (
        httpx.get(f"{url}/v2/models/{NAME}/versions/{version}/ready", timeout=5).status_code == 200
    )


def answered_by(gateway, photo: bytes) -> int:
    r = httpx.post(f"{gateway.http}/v1/pose", content=photo, params={"pose_model": NAME},
                   timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()["models"]["pose"]["version"]


def test_a_new_version_reaches_every_triton_and_serves_once_all_have_it(
    service, model, triton_b, gateway, coco_images
):
    b = f"http://127.0.0.1:{triton_b.ports.http}"
    photo = coco_images[0].read_bytes()
    assert answered_by(gateway, photo) == 1
    r = models_cli(service, "register", NAME, str(model), "--force", "--no-triton")
    assert r.returncode == 0, r.stdout + r.stderr
    assert read_record(service.repository / NAME).serving_version == 2
    # nothing else controls Triton B: G's keeper loads v2 there (A's own keeper loads it on A)
    wait_until(lambda: ready(b, 2) and ready(service.triton_http, 2), 120, "v2 on A and B")
    wait_until(lambda: answered_by(gateway, photo) == 2, 30, "G to answer with v2")


def test_answers_during_a_rollout_never_fail_nor_go_back(
    service, model, triton_b, gateway, coco_images
):
    """While v3 reaches A (its own keeper) and B (G's keeper) at different moments, G keeps
    answering: the old version until every Triton has the new one, then the new one."""
    b = f"http://127.0.0.1:{triton_b.ports.http}"
    photo = coco_images[1].read_bytes()
    before = answered_by(gateway, photo)
    r = models_cli(service, "register", NAME, str(model), "--force", "--no-triton")
    assert r.returncode == 0, r.stdout + r.stderr
    versions = []

    def rolled_out() -> bool:
        versions.append(answered_by(gateway, photo))  # a failure fails the test
        return versions[-1] == before + 1

    wait_until(rolled_out, 120, f"G to answer with v{before + 1}")
    assert versions == sorted(versions) and set(versions) <= {before, before + 1}
    assert ready(b, before + 1) and ready(service.triton_http, before + 1)
