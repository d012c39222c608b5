"""Prometheus, with the repository's own configuration, scraping the real service.

A real Prometheus (Debian's package) runs deploy/prometheus/prometheus.yml with only the targets
and intervals replaced, scrapes the gateway's ``/metrics`` and the embedded Triton's metrics
port, and is asked back what the test sent: the exact request count, a latency quantile that
matches the gateway's own histogram and the latencies measured here, Triton's executions, and
data for every query of the Grafana dashboard and of the alert and recording rules.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from dataclasses import dataclass, field

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from rtmserve.client.grpc import channel
from rtmserve.launch import ServiceProcess, wait_until
from service.grpc.gen import pose_pb2 as pb
from service.grpc.gen import pose_pb2_grpc as pb_grpc
from tests.support.prometheus import (
    DASHBOARD,
    DEPLOY,
    PROMTOOL,
    PrometheusServer,
    dashboard_queries,
    grafana_expand,
    histogram_quantile,
    rewrite_config,
    service_targets,
    start_prometheus,
)

POSE = 'method="POST",route="/v1/pose",status="200"'
COUNT = f"rtmserve_http_requests_total{{{POSE}}}"
BUCKETS = f"rtmserve_http_request_duration_seconds_bucket{{{POSE}}}"
IMAGES = 6


def test_promtool_accepts_the_configuration_and_the_alerts_fire_as_specified():
    for args in (
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "rules.yml", "alerts.yml"),
        ("test", "rules", "alerts_test.yml"),  # synthetic series: alerts fire, or stay quiet
    ):
        run = subprocess.run([PROMTOOL, *args], cwd=DEPLOY, capture_output=True, text=True)
        assert run.returncode == 0, f"promtool {' '.join(args)}:\n{run.stdout}{run.stderr}"


def test_the_rewritten_configuration_changes_only_targets_and_intervals():
    text = (DEPLOY / "prometheus.yml").read_text()
    source = yaml.safe_load(text)
    targets = {"rtmserve": ["127.0.0.1:1"], "triton": ["127.0.0.1:2"], "rtmserve-fleet": []}
    rewritten = yaml.safe_load(rewrite_config(text, targets, "1s"))
    original = {j["job_name"]: j["static_configs"] for j in source["scrape_configs"]}
    for job in rewritten["scrape_configs"]:
        assert job["static_configs"] == [{"targets": targets[job["job_name"]]}]
        job["static_configs"] = original[job["job_name"]]
    assert {k: v for k, v in rewritten.pop("global").items() if not k.endswith("_timeout")} == {
        "scrape_interval": "1s",
        "evaluation_interval": "1s",
    }
    source.pop("global")
    assert rewritten == source


@pytest.fixture(scope="module")
def prometheus(service: ServiceProcess, tmp_path_factory) -> PrometheusServer:
    targets = service_targets(service)
    server = start_prometheus(tmp_path_factory.mktemp("prometheus"), targets, "1s")
    yield server
    server.stop()


def gateway_metrics(service: ServiceProcess) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} from the gateway's own GET /metrics."""
    text = httpx.get(f"{service.http}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def pose_buckets(samples: dict) -> dict[float, float]:
    pose = {("method", "POST"), ("route", "/v1/pose"), ("status", "200")}
    return {
        float(dict(labels)["le"]): value
        for (name, labels), value in samples.items()
        if name == "rtmserve_http_request_duration_seconds_bucket" and pose <= labels
    }


@dataclass
class Traffic:
    """What the test sent and measured, and the gateway's histogram before and after."""

    sent: int
    client_s: list[float] = field(default_factory=list)  # round trips measured here
    server_total_s: list[float] = field(default_factory=list)  # each response's timings
    count_before: float = 0.0
    t_before: float = 0.0  # timestamp of Prometheus' sample of the state before
    t_after: float = 0.0
    buckets_before: dict[float, float] = field(default_factory=dict)
    buckets_after: dict[float, float] = field(default_factory=dict)


def _scraped(prometheus: PrometheusServer, count: float) -> bool:
    return prometheus.value(COUNT) == count


@pytest.fixture(scope="module")
def traffic(service, prometheus, coco_images) -> Traffic:
    photos = [p.read_bytes() for p in coco_images[:IMAGES]]
    with httpx.Client(base_url=service.http, timeout=120) as http:
        assert http.post("/v1/pose", content=photos[0]).status_code == 200  # series exist
        count = gateway_metrics(service)[("rtmserve_http_requests_total", frozenset(
            {("method", "POST"), ("route", "/v1/pose"), ("status", "200")}))]  # fmt: skip
        wait_until(lambda: _scraped(prometheus, count), 60, "Prometheus to scrape the baseline")
        traffic = Traffic(sent=len(photos), count_before=count)
        traffic.t_before = prometheus.value(f"timestamp({COUNT})")
        traffic.buckets_before = pose_buckets(gateway_metrics(service))
        for data in photos:
            start = time.perf_counter()
            r = http.post("/v1/pose", content=data)
            traffic.client_s.append(time.perf_counter() - start)
            assert r.status_code == 200, r.text
            traffic.server_total_s.append(r.json()["timings"]["total_ms"] / 1e3)
    with channel(f"127.0.0.1:{service.grpc_port}") as ch:  # gRPC series for the dashboards
        stub = pb_grpc.PoseServiceStub(ch)
        stub.Estimate(pb.EstimateRequest(image=pb.Image(encoded=photos[1])), timeout=120)
        frames = [pb.StreamRequest(frame=pb.Frame(image=pb.Image(encoded=p))) for p in photos[:2]]
        assert len(list(stub.Stream(iter(frames), timeout=120))) == 2
    final = count + len(photos)
    wait_until(lambda: _scraped(prometheus, final), 60, "Prometheus to scrape every request")
    traffic.t_after = prometheus.value(f"timestamp({COUNT})")
    traffic.buckets_after = pose_buckets(gateway_metrics(service))
    return traffic


def test_prometheus_counts_exactly_the_requests_sent(prometheus, traffic):
    delta = f"{COUNT} - {COUNT} offset {round((traffic.t_after - traffic.t_before) * 1e3)}ms"
    assert prometheus.value(delta, at=traffic.t_after) == traffic.sent
    assert prometheus.value(COUNT, at=traffic.t_after) == traffic.count_before + traffic.sent


def test_latency_quantiles_agree_with_the_gateway_histogram_and_the_measured_latencies(
    prometheus, traffic
):
    window = f"{round((traffic.t_after - traffic.t_before) * 1e3)}ms"
    ours = {le: n - traffic.buckets_before.get(le, 0) for le, n in traffic.buckets_after.items()}
    assert ours[float("inf")] == traffic.sent
    bounds = sorted(ours)
    # Every request's gateway time lies between its own total_ms and the round trip seen here,
    # so its bucket lies between theirs, and so does any quantile.
    lowest = max([0.0, *(b for b in bounds if b < min(traffic.server_total_s))])
    highest = min(b for b in bounds if b >= max(traffic.client_s))
    for q in (0.5, 0.9, 0.99):
        expr = f"histogram_quantile({q}, sum by (le) ({BUCKETS} - {BUCKETS} offset {window}))"
        got = prometheus.value(expr, at=traffic.t_after)
        assert got == pytest.approx(histogram_quantile(q, ours), rel=1e-9), q
        assert lowest <= got <= highest, (q, got, traffic.server_total_s, traffic.client_s)
    sums = f"rtmserve_http_request_duration_seconds_sum{{{POSE}}}"
    total = prometheus.value(f"{sums} - {sums} offset {window}", at=traffic.t_after)
    assert sum(traffic.server_total_s) <= total <= sum(traffic.client_s)


def test_triton_metrics_are_scraped_per_model(service, prometheus, traffic):
    assert prometheus.value('up{job="triton"}') == 1
    assert prometheus.value('up{job="rtmserve"}') == 1
    assert prometheus.value("rtmserve_ready") == 1
    # the CPU default runs both ONNX sessions inside the pipeline model (RTMSERVE_CPU_LOCAL_MODELS):
    # Triton counts the pipeline's executions; the models' own time is the gateway's stage series
    executions = 'sum(nv_inference_exec_count{job="triton", model="pose_pipeline"})'
    wait_until(lambda: (prometheus.value(executions) or 0) > 0, 60, "Triton's executions")
    pipeline = 'sum(nv_inference_request_success{job="triton", model="pose_pipeline"})'
    assert prometheus.value(pipeline) >= traffic.sent
    stage = 'sum(rtmserve_stage_duration_seconds_count{job="rtmserve", stage="pose"})'
    assert prometheus.value(stage) >= traffic.sent


COMPARISON = re.compile(r"^(?P<query>.+?)\s*(?:>|<|==|!=|>=|<=)\s*[-+0-9.eE]+\s*$", re.DOTALL)


def rule_queries() -> list[str]:
    """Recording rules as they are; alerts without their threshold (alerts.yml's convention),
    since a healthy service must not satisfy them."""
    out = []
    for name in ("rules.yml", "alerts.yml"):
        for group in yaml.safe_load((DEPLOY / name).read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    match = COMPARISON.match(rule["expr"].strip())
                    assert match, f"{rule['alert']}: not `<query> <comparison> <number>`"
                    out.append(match["query"])
                else:
                    out.append(rule["expr"])
    return out


def test_every_dashboard_and_alert_query_returns_data(prometheus, traffic):
    queries = [grafana_expand(q) for q in dashboard_queries()] + rule_queries()
    assert len(queries) > 30

    def empty() -> list[str]:
        return [q for q in queries if not prometheus.query(q)]

    # A series seen once needs a second scrape before rate() has data: poll, don't sleep.
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not empty(), 60, "every query to return data")
    assert empty() == []

    def unhealthy() -> list[dict]:
        return [r for r in prometheus.rules() if r["health"] != "ok"]

    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not unhealthy(), 30, "every rule to be evaluated")
    assert unhealthy() == []
    names = {r["name"] for r in prometheus.rules()}
    assert {"RtmserveHighLatencyP99", "RtmserveHighErrorRate", "RtmserveNotReady"} <= names


def test_dashboard_panels_use_the_provisioned_datasource():
    provisioned = yaml.safe_load(
        (DASHBOARD.parents[1] / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    uids = {d["uid"] for d in provisioned if d["type"] == "prometheus"}
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert all(t["datasource"]["uid"] in uids for t in panel["targets"]), panel["title"]
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("p50", "stage", "error", "persons", "queue", "batch", "frames/s", "in flight"):
        assert topic in titles, topic
