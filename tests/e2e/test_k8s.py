"""deploy/k8s, checked with real tools and the real service (no cluster here): both overlays
render with kubectl's kustomize and every object validates strictly against Kubernetes' own
schemas; the probes, ports, commands and settings the manifests use exist on the running
service; the HorizontalPodAutoscalers' metrics come from prometheus-adapter rules whose PromQL
returns data from a real Prometheus scraping the service."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from rtmserve.cli import build_parser, settings_from_args
from rtmserve.launch import wait_until
from service.app.access import AccessControl
from service.server import exposure_problem
from service.settings import Settings
from tests.support.deploy import dotenv, local_command
from tests.support.paths import REPO
from tests.support.prometheus import service_targets, start_prometheus

BIN = Path(sys.executable).parent
OVERLAYS = REPO / "deploy" / "k8s" / "overlays"
K8S_VERSION = "1.37.0"


def render(overlay: str) -> list[dict]:
    run = subprocess.run([str(BIN / "kubectl"), "kustomize", str(OVERLAYS / overlay)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return [d for d in yaml.safe_load_all(run.stdout) if d]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(docs: list[dict]) -> dict[str, dict]:
    return {c["name"]: c for d in docs if d["kind"] in ("Deployment", "Job")
            for c in d["spec"]["template"]["spec"]["containers"]}  # fmt: skip


@pytest.mark.parametrize("overlay", ["gpu", "cpu"])
def test_each_overlay_renders_and_validates_strictly(overlay, tmp_path):
    docs = render(overlay)
    out = tmp_path / f"{overlay}.yaml"
    out.write_text(yaml.safe_dump_all(docs))
    cmd = [str(BIN / "kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count("passed") == len(docs), run.stdout
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "PersistentVolumeClaim", "Job", "PodDisruptionBudget",
            "HorizontalPodAutoscaler", "ConfigMap"} <= kinds  # fmt: skip
    assert all(d["metadata"].get("namespace", "rtmserve") == "rtmserve" for d in docs)
    pvc = by_kind(docs, "PersistentVolumeClaim")["rtmserve-models"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_the_overlays_differ_where_they_should():
    gpu, cpu = render("gpu"), render("cpu")
    assert "rtmserve-triton" in by_kind(gpu, "Deployment")
    assert "rtmserve-triton" not in by_kind(cpu, "Deployment")
    assert "NetworkPolicy" in {d["kind"] for d in gpu}
    triton = containers(gpu)["triton"]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--model-config-name=gpu" in triton["args"]
    gateway_gpu, gateway_cpu = containers(gpu)["gateway"], containers(cpu)["gateway"]
    assert gateway_gpu["args"] == ["serve", "--triton-url", "rtmserve-triton:8001", "--no-prepare"]
    assert gateway_cpu["args"] == ["serve", "--no-prepare"]
    assert "RTMSERVE_TRITON_HTTP" not in {e["name"] for e in gateway_cpu["env"]}
    # gRPC balanced per call: a headless Service lists every gateway pod
    grpc = by_kind(gpu, "Service")["rtmserve-gateway-grpc"]
    assert grpc["spec"]["clusterIP"] == "None"
    # every Triton pod, for the keepers: a headless Service over the Triton pods
    env = {e["name"]: e.get("value") for e in gateway_gpu["env"]}
    host, port = env["RTMSERVE_TRITON_PEERS"].split(":")
    peers = by_kind(gpu, "Service")[host]
    triton_pods = by_kind(gpu, "Deployment")["rtmserve-triton"]["spec"]["template"]["metadata"]
    assert peers["spec"]["clusterIP"] == "None"
    assert peers["spec"]["selector"].items() <= triton_pods["labels"].items()
    assert int(port) in {p["port"] for p in peers["spec"]["ports"]}
    assert "RTMSERVE_TRITON_PEERS" not in {e["name"] for e in gateway_cpu["env"]}


def test_commands_and_settings_are_the_services_own():
    for overlay in ("gpu", "cpu"):
        docs = render(overlay)
        for name, c in containers(docs).items():
            if name == "triton":
                continue
            build_parser().parse_args(c["args"])  # rtmserve's own CLI accepts them
            for env in c.get("env", []):
                field = env["name"].removeprefix("RTMSERVE_").lower()
                assert field in Settings.model_fields, env["name"]


def test_probe_paths_and_ports_exist_on_the_running_service(service):
    """HTTP probes answer 200 on the running service; exec probes (Triton's readiness: the
    serving versions answer) exit 0 when run here against it."""
    docs = render("gpu")
    urls = {"gateway": service.http, "triton": service.triton_http}
    checked = 0
    for name, c in containers(docs).items():
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe not in c:
                continue
            if "exec" in c[probe]:
                command = local_command(c[probe]["exec"]["command"], urls[name], service.repository)
                run = subprocess.run(command, capture_output=True, text=True, timeout=60)
                assert run.returncode == 0, (name, probe, command, run.stderr)
                checked += 1
                continue
            get = c[probe]["httpGet"]
            assert get["port"] in ports, (name, probe)
            r = httpx.get(urls[name] + get["path"], timeout=30)
            assert r.status_code == 200, (name, probe, get["path"], r.text)
            checked += 1
    assert checked == 6
    gateway = containers(docs)["gateway"]
    assert {p["containerPort"] for p in gateway["ports"]} == {8080, 50051}


def test_the_keeper_reaches_triton_pods_that_are_not_ready_and_one_release_is_named():
    docs = render("gpu")
    peers = by_kind(docs, "Service")["rtmserve-triton-peers"]
    assert peers["spec"]["clusterIP"] == "None"
    assert peers["spec"]["publishNotReadyAddresses"] is True  # loading pods too
    release = dotenv()["TRITON_VERSION"]
    image = containers(docs)["triton"]["image"]
    assert image.endswith(f":{release}"), image
    for name in ("gateway", "prepare"):
        env = {e["name"]: e.get("value") for e in containers(docs)[name]["env"]}
        assert env["RTMSERVE_TRITON_RELEASE"] == release, name


@pytest.fixture(scope="module")
def prometheus(service, tmp_path_factory):
    targets = service_targets(service)
    server = start_prometheus(tmp_path_factory.mktemp("prometheus-k8s"), targets, "1s")
    yield server
    server.stop()


def adapter_queries() -> dict[str, str]:
    """Each adapter rule's metricsQuery as prometheus-adapter would expand it for one job (the
    test Prometheus has no namespace/pod labels: the job stands in for them)."""
    config = by_kind(render("gpu"), "ConfigMap")["rtmserve-prometheus-adapter"]
    rules = yaml.safe_load(config["data"]["config.yaml"])["rules"]
    out = {}
    for rule in rules:
        series = rule["name"]["matches"]
        job = "triton" if series.startswith("nv_") else "rtmserve"
        fill = {"<<.Series>>": series, "<<.LabelMatchers>>": f'job="{job}"', "<<.GroupBy>>": "job"}
        query = rule["metricsQuery"]
        for template, value in fill.items():
            query = query.replace(template, value)
        out[rule["name"]["as"]] = query
    return out


def test_the_autoscalers_metrics_come_from_adapter_rules_that_return_data(
    service, prometheus, coco_images
):
    queries = adapter_queries()
    hpas = {**by_kind(render("gpu"), "HorizontalPodAutoscaler")}
    used = {m["pods"]["metric"]["name"] for h in hpas.values() for m in h["spec"]["metrics"]}
    assert used == set(queries)  # every HPA metric has a rule, every rule is used
    with httpx.Client(base_url=service.http, timeout=120) as client:
        for path in coco_images[:6]:  # traffic, so the rates have samples
            assert client.post("/v1/pose", content=path.read_bytes()).status_code == 200
    for name, query in queries.items():
        wait_until(lambda q=query: prometheus.query(q), 60, f"{name}: {shlex.quote(query)}")
        result = prometheus.query(query)
        assert result and all(float(r["value"][1]) >= 0 for r in result), (name, result)


@pytest.mark.parametrize("overlay", ["gpu", "cpu"])
def test_the_gateway_requires_its_api_keys(overlay, monkeypatch):
    """Keys come from a Secret the pod cannot start without, created outside git (none is
    rendered, so an apply never overwrites it with an empty one); the gateway is not told to
    serve open, and without keys on the image's 0.0.0.0 it would refuse to."""
    docs = render(overlay)
    assert "Secret" not in {d["kind"] for d in docs}
    for name in ("gateway", "prepare"):
        env = {e["name"]: e for e in containers(docs)[name].get("env", [])}
        assert "RTMSERVE_INSECURE" not in env
        assert "--insecure" not in containers(docs)[name]["args"]
    keys = {e["name"]: e for e in containers(docs)["gateway"]["env"]}["RTMSERVE_API_KEYS"]
    ref = keys["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "rtmserve-api-keys" and ref["optional"] is False
    for var in list(os.environ):
        if var.startswith("RTMSERVE_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("RTMSERVE_HOST", "0.0.0.0")  # the image's (Dockerfile)
    settings = settings_from_args(build_parser().parse_args(containers(docs)["gateway"]["args"]))
    assert exposure_problem(settings, AccessControl({})) is not None
