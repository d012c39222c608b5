"""docker-compose.yml and the Dockerfiles, checked as far as possible without a Docker engine.

The compose file is validated against the official compose specification schema (vendored by
the ``check-jsonschema`` package, run as its CLI), every path it and the Dockerfiles refer to
must exist in the build context, and the commands the containers run must be the ones the
tests run as processes: ``rtmserve serve`` parsed by rtmserve's own CLI, Triton with the flags
``service/triton/embedded.py`` passes, the health checks run against the real service.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from rtmserve.cli import build_parser, settings_from_args
from rtmserve.fleet import METRICS_PORT
from rtmserve.launch import RTMSERVE, free_port
from service.app.access import AccessControl
from service.repository.configs import GPU_CONFIG_NAME, TENSORRT_CONFIG_NAME
from service.server import exposure_problem
from service.settings import Settings
from service.triton.embedded import EmbeddedTriton, TritonPorts, find_tritonserver
from tests.support.deploy import dockerignore_excludes, dotenv, local_command
from tests.support.paths import REPO

ROOT = REPO
COMPOSE = ROOT / "docker-compose.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
# Flags of the embedded server that differ by nature in the NGC image: its own backends, and
# GPU metrics (the embedded server has no GPU).
# the embedded server listens on loopback; in compose, Triton's own container listens on the
# internal `backend` network
EMBEDDED_ONLY = {
    "--backend-directory",
    "--allow-gpu-metrics",
    "--http-address",
    "--grpc-address",
    "--metrics-address",
}
COMPOSE_ONLY = {"--model-config-name"}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$``, with ``env`` as
    the environment (a required variable unset raises, as ``docker compose`` refuses)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value
    pattern = re.compile(r"\$\$|\$\{(\w+)(?::?([-?])([^}]*))?\}")

    def one(m: re.Match) -> str:
        if m[0] == "$$":
            return "$"
        if m[2] == "?" and not env.get(m[1]):
            raise KeyError(f"required variable {m[1]} is missing a value: {m[3]}")
        return env.get(m[1]) or (m[3] if m[2] == "-" else "") or ""

    return pattern.sub(one, value)


# What an operator puts in .env beside the committed settings (compose requires them).
OPERATOR_ENV = {
    "RTMSERVE_API_KEYS": "ops:0123456789abcdef0123",
    "GRAFANA_ADMIN_PASSWORD": "a-password-of-their-own",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), {**dotenv(), **OPERATOR_ENV})


def flags(command: list[str]) -> dict[str, str]:
    """``--name=value`` arguments as {name: value}."""
    out = {}
    for arg in command:
        assert arg.startswith("--") and "=" in arg, f"not a --flag=value argument: {arg}"
        name, value = arg.split("=", 1)
        out[name] = value
    return out


def container_ports(service: dict) -> set[int]:
    """Ports the container serves: published or only exposed to its networks."""
    listed = [*service.get("ports", []), *service.get("expose", [])]
    return {int(str(p).split(":")[-1].split("/")[0]) for p in listed}


def url_port(url: str) -> int:
    return int(re.search(r":(\d+)(/|$)", url.split("://", 1)[-1])[1])


def test_compose_file_follows_the_compose_specification(tmp_path):
    check = [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec"]
    run = subprocess.run([*check, str(COMPOSE)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    broken = tmp_path / "docker-compose.yml"  # the schema does reject a misspelt key
    broken.write_text(COMPOSE.read_text().replace("shm_size:", "shm_sise:", 1))
    assert subprocess.run([*check, str(broken)], capture_output=True).returncode == 1


def test_profiles_gpu_by_default_and_cpu_on_request(compose):
    env = dict(
        line.split("=", 1) for line in (ROOT / ".env").read_text().splitlines()
        if line and not line.startswith("#")
    )  # fmt: skip
    assert env["COMPOSE_PROFILES"] == "gpu"
    profiles = {name: tuple(s.get("profiles", ())) for name, s in compose["services"].items()}
    assert profiles["triton"] == profiles["gateway"] == ("gpu",)
    assert profiles["gateway-cpu"] == ("cpu",)
    assert profiles["models"] == profiles["prometheus"] == profiles["grafana"] == ()
    gpu = [n for n, s in compose["services"].items() if "deploy" in s]
    assert "gateway-cpu" not in gpu and "triton" in gpu
    for name in ("triton", "gateway-cpu"):  # the Python backend needs /dev/shm
        assert compose["services"][name]["shm_size"]


def test_every_path_compose_refers_to_exists(compose):
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = ROOT / build["context"]
            assert context.is_dir(), name
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {volume}"
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"


def dockerfiles(compose: dict) -> dict[str, tuple[Path, DockerfileParser]]:
    out = {}
    for name, service in compose["services"].items():
        if "build" in service:
            context = ROOT / service["build"]["context"]
            path = context / service["build"].get("dockerfile", "Dockerfile")
            out[name] = (context, DockerfileParser(path=str(path), cache_content=True))
    return out


def test_dockerfile_copy_sources_exist_in_the_build_context(compose):
    needed = ("pyproject.toml", "README.md", "service/server.py", "model_repository/pose")
    for name, (context, parsed) in dockerfiles(compose).items():
        for step in parsed.structure:
            if step["instruction"] not in ("COPY", "ADD"):
                continue
            args = [a for a in shlex.split(step["value"]) if not a.startswith("--")]
            if "--from=" in step["value"]:
                continue  # from an earlier stage
            for source in args[:-1]:
                assert (context / source).exists(), f"{name}: COPY {source}"
                assert not dockerignore_excludes(context, source), f"{name}: {source} ignored"
        for path in needed:
            assert (context / path).exists() and not dockerignore_excludes(context, path), path


def test_gateway_image_runs_rtmserve_serve_as_a_non_root_user(compose):
    _, parsed = dockerfiles(compose)["gateway"]
    assert parsed.is_multistage and len(parsed.parent_images) >= 2
    final = parsed.parent_images[-1]
    assert re.fullmatch(r"python:3\.\d+-slim", final)
    # The embedded Triton's Python-backend stub exists only for some Python versions.
    version = final.split(":")[1].removesuffix("-slim")
    _, _, triton = find_tritonserver()
    assert (triton / "python_backend_stubs" / version).is_dir(), version
    steps = [(s["instruction"], s["value"]) for s in parsed.structure]
    users = [v for i, v in steps if i == "USER"]
    assert users and users[-1] not in ("root", "0")
    entrypoint = next(v for i, v in reversed(steps) if i == "ENTRYPOINT")
    cmd = next(v for i, v in reversed(steps) if i == "CMD")
    # What the tests run (service.launch.start_service): rtmserve serve.
    assert [*yaml.safe_load(entrypoint), *yaml.safe_load(cmd)] == [Path(RTMSERVE).name, "serve"]
    healthcheck = next(v for i, v in steps if i == "HEALTHCHECK")
    assert "python -m service.healthcheck" in healthcheck and "/readyz" in healthcheck


def serve_settings(service: dict, monkeypatch) -> Settings:
    """The settings ``rtmserve`` derives from the service's command and environment."""
    for key, value in service.get("environment", {}).items():
        monkeypatch.setenv(key, str(value))
    args = build_parser().parse_args(service["command"])
    assert args.func.__name__ == "_serve"
    return settings_from_args(args)


def test_containers_run_the_commands_the_tests_run(compose, monkeypatch):
    services = compose["services"]
    assert build_parser().parse_args(services["models"]["command"]).func.__name__ == "_prepare"
    assert services["gateway-cpu"]["command"] == ["serve"]  # exactly what start_service runs

    triton = services["triton"]["command"]
    assert triton[0] == "tritonserver"
    ours = flags(triton[1:])
    home = services["models"]["environment"]["RTMSERVE_HOME"]
    ports = TritonPorts(
        int(ours["--http-port"]), int(ours["--grpc-port"]), int(ours["--metrics-port"])
    )
    embedded = EmbeddedTriton(Path(home) / "repository", Path("/tmp"), ports)
    theirs = flags(embedded.command(Path("/backends"))[1:])
    assert {k: v for k, v in ours.items() if k not in COMPOSE_ONLY} == {
        k: v for k, v in theirs.items() if k not in EMBEDDED_ONLY
    }
    assert ours["--model-config-name"] in (GPU_CONFIG_NAME, TENSORRT_CONFIG_NAME)
    for kind in ("detector", "pose"):
        for config in (GPU_CONFIG_NAME, TENSORRT_CONFIG_NAME):
            assert (ROOT / "model_repository" / kind / "configs" / f"{config}.pbtxt").is_file()
    for name in ("models", "triton", "gateway", "gateway-cpu"):
        assert f"models:{home}" in services[name]["volumes"], name
    assert ports.http in container_ports(services["triton"])
    # Triton (model control included) is never published, only on the internal network
    assert "ports" not in services["triton"] and services["triton"]["networks"] == ["backend"]
    assert compose["networks"]["backend"]["internal"] is True
    assert "backend" in services["gateway"]["networks"]

    gateway = serve_settings(services["gateway"], monkeypatch)
    assert gateway.triton_url == f"triton:{ports.grpc}"
    assert url_port(gateway.triton_http_url) == ports.http
    assert "triton:" in gateway.triton_http_url
    assert {gateway.http_port, gateway.grpc_port} <= container_ports(services["gateway"])
    depends = services["gateway"]["depends_on"]
    assert depends["triton"]["condition"] == "service_healthy"
    assert depends["models"]["condition"] == "service_completed_successfully"

    cpu = serve_settings(services["gateway-cpu"], monkeypatch)
    assert cpu.triton_url is None  # starts the embedded Triton
    expected = {cpu.http_port, cpu.grpc_port, cpu.triton_metrics_port}
    assert expected <= container_ports(services["gateway-cpu"])
    networks = services["gateway-cpu"]["networks"]
    assert networks["default"]["aliases"] == ["gateway"]
    assert networks["backend"]["aliases"] == ["triton"]
    assert cpu.triton_metrics_host == "0.0.0.0" and cpu.triton_metrics_port not in {
        int(str(p).split(":")[-1]) for p in services["gateway-cpu"]["ports"]
    }


def test_prometheus_and_grafana_point_at_the_services(compose, monkeypatch):
    services = compose["services"]
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    gateway = serve_settings(services["gateway"], monkeypatch)
    triton = flags(services["triton"]["command"][1:])
    expected = {
        "rtmserve": f"gateway:{gateway.http_port}",
        "triton": f"triton:{triton['--metrics-port']}",
        "rtmserve-fleet": f"localhost:{METRICS_PORT}",  # `rtmserve fleet`, not compose
    }
    for job in prometheus["scrape_configs"]:
        assert [t for c in job["static_configs"] for t in c["targets"]] == [
            expected[job["job_name"]]
        ]
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    config_dir = Path(mounts["./deploy/prometheus/prometheus.yml"]).parent
    for rules in prometheus["rule_files"]:
        assert mounts[f"./deploy/prometheus/{rules}"] == str(config_dir / rules)

    grafana = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert url_port(grafana["url"]) in container_ports(services["prometheus"])
    assert grafana["url"].startswith("http://prometheus:")
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/rtmserve.yml").read_text()
    )["providers"][0]
    grafana_mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    assert grafana_mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert grafana_mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_tensorrt_image_matches_the_triton_image(compose):
    """One version variable (TRITON_VERSION in .env) for the Triton image, the TensorRT image
    that builds plans and the release ``prepare`` lists plans for."""
    release = dotenv()["TRITON_VERSION"]
    _, parsed = dockerfiles(compose)["triton"]
    assert compose["services"]["triton"]["build"]["args"]["TRITON_VERSION"] == release
    parsed.build_args = {"TRITON_VERSION": release}
    assert parsed.parent_images[-1] == f"nvcr.io/nvidia/tritonserver:{release}-py3"
    assert f"ARG TRITON_VERSION={release}" in parsed.content  # the default agrees
    engines = compose["services"]["engines"]["image"]
    assert engines == f"nvcr.io/nvidia/tensorrt:{release}-py3"  # engines load where built
    for name in ("models", "gateway", "gateway-cpu"):
        assert compose["services"][name]["environment"]["RTMSERVE_TRITON_RELEASE"] == release
    Settings(triton_release=release)  # a release whose TensorRT rtmserve knows
    script = compose["services"]["engines"]["command"][1]
    mounts = dict(v.split(":")[:2] for v in compose["services"]["engines"]["volumes"])
    assert (ROOT / "deploy/tensorrt" / Path(script).name).is_file()
    assert script.startswith(mounts["./deploy/tensorrt"])
    # the builder imports service.core.plans from the tree it sits in
    assert mounts["./service"] == str(Path(mounts["./deploy/tensorrt"]).parents[1] / "service")


def healthcheck_command(service: dict, url: str, repository: Path | None = None) -> list[str]:
    """The service's health check, run here: its URL's host and port replaced by ``url``'s and
    the container's repository path by ``repository``."""
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD"
    return local_command(test[1:], url, repository)


def test_health_checks_pass_on_the_running_service_and_fail_without_it(compose, service):
    services = compose["services"]
    for name, url in (
        ("gateway", service.http),
        ("gateway-cpu", service.http),
        ("triton", service.triton_http),
    ):
        command = healthcheck_command(services[name], url, service.repository)
        run = subprocess.run(command, capture_output=True, text=True)
        assert run.returncode == 0, (name, command, run.stderr)
    closed = healthcheck_command(services["gateway"], f"http://127.0.0.1:{free_port()}")
    assert subprocess.run(closed, capture_output=True).returncode == 1


def test_compose_is_closed_by_default(compose, monkeypatch):
    """Every published port on the host's loopback unless a documented variable says
    otherwise; the gateways need API keys (they serve on 0.0.0.0 in their containers, which
    ``rtmserve serve`` refuses without keys); Grafana has no anonymous access and no default
    password; without those secrets in .env compose refuses to start."""
    services = compose["services"]
    published = {n: s["ports"] for n, s in services.items() if "ports" in s}
    assert set(published) == {"gateway", "gateway-cpu", "prometheus", "grafana"}
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), (name, port)
    raw = yaml.safe_load(COMPOSE.read_text())["services"]
    assert raw["gateway"]["ports"][0].startswith("${RTMSERVE_PUBLISH_ADDRESS:-127.0.0.1}:")
    assert raw["grafana"]["ports"][0].startswith("${MONITORING_ADDRESS:-127.0.0.1}:")
    open_env = {**dotenv(), **OPERATOR_ENV, "RTMSERVE_PUBLISH_ADDRESS": "0.0.0.0"}
    assert interpolate(raw["gateway"]["ports"], open_env)[0] == "0.0.0.0:8080:8080"
    for name in ("gateway", "gateway-cpu"):
        monkeypatch.setenv("RTMSERVE_HOST", "0.0.0.0")  # the image's (Dockerfile)
        settings = serve_settings(services[name], monkeypatch)
        access = AccessControl.from_settings(settings)
        assert access.enabled and exposure_problem(settings, access) is None
        assert exposure_problem(settings, AccessControl({})) is not None  # without: refused
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == OPERATOR_ENV["GRAFANA_ADMIN_PASSWORD"]
    for missing in OPERATOR_ENV:
        env = {k: v for k, v in {**dotenv(), **OPERATOR_ENV}.items() if k != missing}
        with pytest.raises(KeyError, match=missing):
            interpolate(yaml.safe_load(COMPOSE.read_text()), env)
