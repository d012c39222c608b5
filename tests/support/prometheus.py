"""A real Prometheus (Debian's /usr/bin/prometheus) running the repository's own configuration,
with only the scrape targets and intervals replaced, plus the PromQL helpers the tests use.

``histogram_quantile`` reimplements Prometheus' interpolation so a quantile read back from
Prometheus can be compared with the one computed from the gateway's own ``/metrics``.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from rtmserve.launch import free_port, stop_process, wait_http_ready
from tests.support.paths import REPO

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
DEPLOY = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "rtmserve.json"
# Grafana's global variables, as Grafana would expand them for a 1 s scrape interval.
GRAFANA_VARIABLES = {"$__rate_interval": "1m"}


def service_targets(svc) -> dict[str, list[str]]:
    """Every job of deploy/prometheus/prometheus.yml pointed at one running service (its
    gateway and its Triton); no fleet supervisor (tests/e2e/test_fleet_lb.py scrapes one)."""
    host = lambda url: url.split("://", 1)[1]  # noqa: E731
    return {"rtmserve": [host(svc.http)], "triton": [host(svc.triton_metrics)],
            "rtmserve-fleet": []}  # fmt: skip


def rewrite_config(text: str, targets: dict[str, list[str]], interval: str) -> str:
    """The configuration ``text`` scraping ``targets`` ({job: [host:port]}) every ``interval``
    (also the rule evaluation interval). Every job must be given: a job added to the file
    without a test target fails here rather than scraping nothing."""
    config = yaml.safe_load(text)
    config["global"].update(
        scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval
    )
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    if set(jobs) != set(targets):
        raise ValueError(f"jobs in the configuration {sorted(jobs)} != given {sorted(targets)}")
    for name, job in jobs.items():
        job["static_configs"] = [{"targets": targets[name]}]
    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class PrometheusServer:
    proc: subprocess.Popen
    url: str
    config: Path
    log: Path

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """An instant query's result vector (raises on a PromQL error)."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        body = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10).json()
        if body["status"] != "success":
            raise AssertionError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]["result"]

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single sample of ``expr``, or None while there is none."""
        result = self.query(expr, at)
        if len(result) > 1:
            raise AssertionError(f"{expr}: {len(result)} series, expected one")
        return float(result[0]["value"][1]) if result else None

    def rules(self) -> list[dict]:
        groups = httpx.get(f"{self.url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def stop(self) -> None:
        stop_process(self.proc, 30)


def start_prometheus(work: Path, targets: dict[str, list[str]], interval: str) -> PrometheusServer:
    """deploy/prometheus/prometheus.yml (rewritten) with its rule files beside it, as in the
    compose deployment, on a free port; returns once Prometheus says it is ready."""
    work.mkdir(parents=True, exist_ok=True)
    source = DEPLOY / "prometheus.yml"
    config = work / "prometheus.yml"
    config.write_text(rewrite_config(source.read_text(), targets, interval))
    for rules in yaml.safe_load(source.read_text()).get("rule_files", []):
        shutil.copy(DEPLOY / rules, work / rules)
    port = free_port()
    log = work / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = PrometheusServer(proc, f"http://127.0.0.1:{port}", config, log)

    try:
        wait_http_ready(proc, f"{server.url}/-/ready", 60, "prometheus", log.read_text)
    except BaseException:
        server.stop()
        raise
    return server


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus' ``histogram_quantile`` over cumulative ``buckets`` ({le: count}, +Inf
    included): linear interpolation inside the bucket holding rank ``q * count``."""
    bounds = sorted(buckets)
    counts = [buckets[b] for b in bounds]
    if len(bounds) < 2 or not math.isinf(bounds[-1]) or counts[-1] == 0:
        return math.nan
    rank = q * counts[-1]
    i = next(k for k, c in enumerate(counts) if c >= rank)
    if i == len(bounds) - 1:
        return bounds[-2]
    if i == 0 and bounds[0] <= 0:
        return bounds[0]
    start, below = (0.0, 0.0) if i == 0 else (bounds[i - 1], counts[i - 1])
    return start + (bounds[i] - start) * (rank - below) / (counts[i] - below)


TRIAL_PANELS = "Trial:"  # series that exist only while a candidate is on trial (test_trials)


def dashboard_queries(trial: bool = False) -> list[str]:
    """Every panel's queries; ``trial``: those of the trial panels instead."""

    def panels(items: list[dict]):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    dashboard = json.loads(DASHBOARD.read_text())
    return [
        t["expr"]
        for p in panels(dashboard["panels"])
        if p["title"].startswith(TRIAL_PANELS) == trial
        for t in p.get("targets", [])
    ]


def grafana_expand(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
    return expr
