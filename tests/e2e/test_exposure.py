"""What ``rtmserve serve`` exposes, as a process: loopback by default (the README's command
needs nothing more), refused on another address without keys unless ``--insecure`` (then it
says so), a malformed key configuration refused at start, no internal URL in what an
unauthenticated caller reads, and TLS for HTTP and gRPC from one certificate and key.

Each gateway here is started without Triton (``--triton-url`` to a closed port): only what it
exposes matters."""

from __future__ import annotations

import os
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rtmserve.client import Client, RetryPolicy, RtmserveError
from rtmserve.launch import RTMSERVE, free_port, start_service, stop_process, wait_until
from tests.support.procs import is_loopback, listening

pytestmark = pytest.mark.slow

NO_TRITON = ("--triton-url", "127.0.0.1:9", "--no-prepare")
KEY = "alice:tooshort#-rest"  # a '#' used to start a comment, and 8 characters are too few


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test runner's environment without any RTMSERVE_ setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTMSERVE_")}
    return {**env, "RTMSERVE_HOME": str(tmp_path), "RTMSERVE_OFFLINE": "1", **extra}


@contextmanager
def serving(tmp_path: Path, scheme: str = "http", **extra: str) -> Iterator[tuple[int, int]]:
    """``rtmserve serve`` with exactly ``extra`` set; yields (http port, grpc port) once
    ``/healthz`` answers (over TLS when ``scheme`` is https, trusting RTMSERVE_TLS_CERT)."""
    http, grpc_port = free_port(), free_port()
    env = _env(tmp_path, RTMSERVE_HTTP_PORT=str(http), RTMSERVE_GRPC_PORT=str(grpc_port), **extra)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([RTMSERVE, "serve", *NO_TRITON], env=env, stdout=out, stderr=out)
    ca = extra.get("RTMSERVE_TLS_CERT")
    verify = ssl.create_default_context(cafile=ca) if ca else True

    def up() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            url = f"{scheme}://127.0.0.1:{http}/healthz"
            return httpx.get(url, verify=verify, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 120, "rtmserve")
        yield http, grpc_port
    finally:
        assert stop_process(proc, 60) == 0, log.read_text()


def refused(tmp_path: Path, *args: str, **extra: str) -> str:
    """``rtmserve serve`` must exit 2 at once; its output."""
    env = _env(tmp_path, RTMSERVE_HTTP_PORT=str(free_port()), **extra)
    run = subprocess.run([RTMSERVE, "serve", *args, *NO_TRITON], env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    return run.stdout + run.stderr


def test_by_default_it_serves_on_loopback_only_with_no_extra_step(tmp_path):
    """The README's ``make serve``: no host, no keys, and it answers on localhost."""
    with serving(tmp_path) as (http, grpc_port):
        assert listening(http) and all(is_loopback(a) for a in listening(http))
        assert listening(grpc_port) and all(is_loopback(a) for a in listening(grpc_port))


def test_another_address_without_keys_is_refused(tmp_path):
    out = refused(tmp_path, "--host", "0.0.0.0")
    assert "refusing to serve on 0.0.0.0 without API keys" in out and "--insecure" in out


def test_a_malformed_key_configuration_is_refused_without_echoing_it(tmp_path):
    out = refused(tmp_path, RTMSERVE_API_KEYS=KEY)
    assert "RTMSERVE_API_KEYS, entry 1: the key is shorter than 16 characters" in out
    assert "tooshort" not in out
    keys = tmp_path / "keys.txt"
    keys.write_text("alice:alice-3b9f6c1e7d2a\nalice:bob-77e1c0a4f5d9ab\n")
    assert "used twice" in refused(tmp_path, RTMSERVE_API_KEYS_FILE=str(keys))


def test_insecure_serves_open_on_purpose_says_so_and_tells_no_internal_url(tmp_path):
    svc = start_service(
        tmp_path,
        extra_env={"RTMSERVE_HOST": "0.0.0.0", "RTMSERVE_INSECURE": "1"},
        args=NO_TRITON,
        ready_path="/healthz",
    )
    try:
        readiness = httpx.get(f"{svc.http}/readyz", timeout=10)
        models = httpx.get(f"{svc.http}/v1/models", timeout=10)
        log = svc.log.read_text()
    finally:
        assert svc.stop() == 0
    assert "INSECURE: serving on 0.0.0.0 without API keys" in log
    assert readiness.status_code == 503 and readiness.json()["reason"]
    assert "127.0.0.1:9" not in readiness.text and "127.0.0.1:9" not in models.text


@pytest.fixture
def certificate(tmp_path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (openssl, as an operator would)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    run = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return cert, key


def test_tls_covers_http_and_grpc_with_one_certificate(tmp_path, certificate):
    cert, key = certificate
    tls = {"RTMSERVE_TLS_CERT": str(cert), "RTMSERVE_TLS_KEY": str(key)}
    with serving(tmp_path, "https", **tls) as (http, grpc_port):
        trust = ssl.create_default_context(cafile=cert)
        r = httpx.get(f"https://127.0.0.1:{http}/healthz", verify=trust, timeout=10)
        assert r.status_code == 200
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not spoken
            httpx.get(f"http://127.0.0.1:{http}/healthz", timeout=10)
        with pytest.raises(httpx.HTTPError):  # nor is TLS with a certificate not trusted
            httpx.get(f"https://127.0.0.1:{http}/healthz", timeout=10)
        request = health_pb2.HealthCheckRequest()
        credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{grpc_port}", credentials) as ch:
            answer = health_pb2_grpc.HealthStub(ch).Check(request, timeout=30)
            assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING  # no Triton
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
            with pytest.raises(grpc.RpcError) as err:
                health_pb2_grpc.HealthStub(ch).Check(request, timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # rtmserve's Python client, trusting the certificate: HTTP and its gRPC stream answer
        # (with the service's own errors: it has no models here), which a failed handshake
        # would not
        url, target, once = f"https://127.0.0.1:{http}", f"127.0.0.1:{grpc_port}", RetryPolicy(1)
        with Client(url, grpc_target=target, ca_file=cert, retry=once) as client:
            assert client.models().models == []
            with pytest.raises(RtmserveError) as refused:
                next(client.stream([b"not an image"]))
            assert refused.value.status == "NOT_FOUND"  # no default model here
        with Client(url, retry=once) as client, pytest.raises(httpx.ConnectError):
            client.models()  # the system's CAs do not vouch for a self-signed certificate


def test_tls_needs_both_files(tmp_path, certificate):
    cert, _ = certificate
    env = _env(tmp_path, RTMSERVE_TLS_CERT=str(cert))
    run = subprocess.run([RTMSERVE, "serve", *NO_TRITON], env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert run.returncode != 0 and "RTMSERVE_TLS_KEY" in run.stderr


def test_without_keys_each_caller_address_has_its_own_rate(tmp_path):
    """No keys: the rate counts per caller address, so one caller at its limit leaves the
    others their share (it was one ``anonymous`` bucket for everyone, and no limit at all)."""
    limits = {"RTMSERVE_RATE_LIMIT": "0.2", "RTMSERVE_RATE_BURST": "2"}
    with serving(tmp_path, **limits) as (http, _):
        url = f"http://127.0.0.1:{http}/v1/models"
        one, other = (httpx.Client(transport=httpx.HTTPTransport(local_address=a), timeout=10)
                      for a in ("127.0.0.1", "127.0.0.2"))  # fmt: skip
        with one, other:
            codes = [one.get(url).status_code for _ in range(3)]
            assert codes == [200, 200, 429]
            assert "this address" in one.get(url).json()["error"]["message"]
            assert other.get(url).status_code == 200  # another caller is not held back
