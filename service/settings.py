"""Service settings: every field can be set as an ``RTMSERVE_<NAME>`` environment variable.

The one place for defaults that several parts share: model names, where models live, limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.core.names import MODEL_NAME
from service.core.plans import DEFAULT_TRITON_RELEASE, tensorrt_for_release

DEFAULT_DETECTOR = "rtmdet-nano"
# Served by default whenever its official weights can be had (else: the bundled model).
OFFICIAL_POSE_MODEL = "rtmpose-m"


@dataclass(frozen=True)
class ServingOptions:
    """Instance counts and threading: the knobs an operator tunes per machine."""

    pipeline_instances: int
    detector_instances: int
    pose_instances: int
    intra_op_threads: int  # the pose model's; 0 = onnxruntime's default (all cores)
    detector_threads: int
    pose_queue_delay_us: int
    cpu_local_models: bool  # the CPU pipeline runs the ONNX files itself (no BLS)
    # Triton's own admission, per batched model: beyond these it rejects (the gateway's 503)
    triton_queue_size: int
    triton_queue_timeout_us: int
    # the NGC release of the GPU Triton (TRITON_VERSION): which TensorRT its plans need
    triton_release: str = DEFAULT_TRITON_RELEASE


def _default_home() -> Path:
    return Path.home() / ".cache" / "rtmserve"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RTMSERVE_", protected_namespaces=())

    home: Path = Field(default_factory=_default_home, description="cache, runtime repository, logs")
    model_mirror: str | None = Field(
        default=None, description="local folder(s) holding model files, searched before the URL"
    )
    offline: bool = Field(default=False, description="never download; use the cache and mirror")

    host: str = Field(
        default="127.0.0.1",
        description="bind address of HTTP and gRPC; any other than loopback needs API keys "
        "or `insecure` (the container images set 0.0.0.0)",
    )
    http_port: int = 8080
    grpc_port: int = 50051

    triton_url: str | None = Field(
        default=None, description="host:grpc_port of an external Triton; default starts one"
    )
    triton_http_port: int = 8000
    triton_http: str | None = Field(
        default=None, description="Triton HTTP URL for model control (default: localhost)"
    )
    triton_peers: str | None = Field(
        default=None,
        description="host:port[,...] resolving to the HTTP port of every Triton behind "
        "triton_url (a headless Service): the model keeper loads each serving version on all",
    )
    triton_grpc_port: int = 8001
    triton_metrics_port: int = 8002
    triton_metrics_host: str = Field(
        default="127.0.0.1",
        description="where the embedded Triton's metrics listen (its HTTP and gRPC ports are "
        "always loopback only)",
    )
    repository: Path | None = Field(
        default=None, description="runtime model repository (default: <home>/repository)"
    )

    detector: str = Field(default=DEFAULT_DETECTOR, pattern=MODEL_NAME)
    pose_model: str | None = Field(
        default=None,
        pattern=MODEL_NAME,
        description="default pose model; unset: RTMPose-m when its weights can be had, else "
        "the pose model trained and shipped with rtmserve (what `prepare` chose)",
    )
    allow_untrained: bool = Field(
        default=False,
        description="serve an explicitly chosen pose model whose weights are unavailable as an "
        "untrained seeded export (labelled as such) instead of failing",
    )
    score_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    max_persons: int = Field(default=100, ge=1)

    max_upload_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    inference_timeout_s: float = 30.0
    upload_timeout_s: float = Field(
        default=60.0, gt=0, description="longest an upload may take (slow clients are cut off)"
    )
    idle_timeout_s: float = Field(
        default=15.0, gt=0, description="longest silence inside an upload or between frames"
    )
    readiness_probe_s: float = Field(
        default=2.0, ge=0, description="how long a deep readiness check (one inference) holds"
    )
    shutdown_grace_s: float = Field(
        default=30.0, ge=0, description="on SIGTERM, time for requests and streams to finish"
    )

    # Admission control: beyond capacity the gateway refuses at once (503 + Retry-After) so
    # that accepted requests keep a bounded latency (service/app/admission.py).
    max_in_flight: int = Field(default=8, ge=1, description="images decoded and inferred at once")
    max_queued: int = Field(default=2, ge=0, description="images waiting for a slot")
    queue_timeout_s: float = Field(default=1.0, gt=0, description="longest wait for a slot")
    max_streams: int = Field(default=16, ge=1, description="video streams open at once")
    max_streams_per_client: int = Field(default=4, ge=1, description="per API key")

    # Slow clients and connection limits (service/http/upload.py, service/http/door.py): an
    # upload is received before its image takes a slot, under these limits.
    max_reading: int = Field(default=16, ge=1, description="request bodies received at once")
    max_reading_per_client: int = Field(
        default=8, ge=1, description="request bodies received at once from one client address"
    )
    min_upload_rate: int = Field(
        default=1024,
        ge=0,
        description="bytes/s an upload must average after upload_grace_s "
        "(slower: 408; 0: no minimum)",
    )
    upload_grace_s: float = Field(
        default=5.0, ge=0, description="how long an upload may go below min_upload_rate"
    )
    headers_timeout_s: float = Field(
        default=10.0, gt=0, description="longest a client may take to send a request's headers"
    )
    max_header_bytes: int = Field(
        default=64 * 1024, ge=1024, description="a request's line and headers, in bytes"
    )
    keep_alive_s: float = Field(
        default=5.0, gt=0, description="how long an idle HTTP connection is kept open"
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="HTTP connections and requests at once (uvicorn's "
        "limit_concurrency): beyond, 503",
    )
    max_grpc_rpcs: int = Field(
        default=100, ge=1, description="gRPC calls at once (beyond: RESOURCE_EXHAUSTED)"
    )
    refusal_delay_s: float = Field(
        # 0.25 s: a 4x retry storm keeps 89 % of capacity (81 % with 0), while one busy
        # address (a proxy, an open-loop client) keeps its accepted p99 (1.7x at 2x capacity;
        # 6.3x with 1 s, whose held connections fill the client's pool): bench/retry_storm.py
        default=0.25,
        ge=0,
        description="how long a 503 is held for an address that comes back "
        "before its Retry-After (clients retrying in a loop; 0: answer at once)",
    )

    # Access control (service/app/access.py): no keys, no checks.
    api_keys: str | None = Field(default=None, description="name:key,name:key", repr=False)
    api_keys_file: Path | None = Field(default=None, description="one name:key per line")
    rate_limit: float = Field(default=0.0, ge=0, description="requests/s per key (0: no limit)")
    rate_burst: int = Field(default=20, ge=1, description="requests a key may make at once")
    debug_endpoints: bool = Field(default=False, description="serve /debug/* (needs a key)")
    insecure: bool = Field(
        default=False,
        description="serve on a non-loopback address without API keys (refused otherwise)",
    )
    # TLS for HTTP and gRPC: one certificate chain and its private key (PEM files), or neither
    tls_cert: Path | None = Field(
        default=None, description="PEM certificate chain: HTTPS + gRPC TLS"
    )
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")

    # Video (gRPC Stream, POST /v1/pose/video): per-stream limits and the detection interval.
    video_det_interval: int = Field(
        default=1, ge=1, description="run the detector every N frames (5: the seeds' setting)"
    )
    max_video_bytes: int = Field(default=256 * 1024 * 1024, ge=1, description="upload size")
    max_video_seconds: float = Field(default=600.0, gt=0, description="stream duration")
    max_video_frames: int = Field(default=18_000, ge=1, description="frames per stream")

    # Trials (rtmserve models shadow|canary): copies of live requests for the other version
    trial_copy_timeout_s: float = Field(
        default=10.0, gt=0, description="longest wait for one copy's answer"
    )
    trial_copies_in_flight: int = Field(default=2, ge=1, description="copies sent at once")
    trial_copy_queue: int = Field(
        default=16, ge=1, description="copies waiting; beyond, a copy is skipped (and counted)"
    )
    trial_flush_s: float = Field(
        default=1.0, gt=0, description="how often trial figures are written and rules checked"
    )

    pipeline_instances: int = 4
    pose_instances: int = 1
    detector_instances: int = 1
    intra_op_threads: int = Field(
        default=0, ge=0, description="onnxruntime threads of the pose model (0: all cores)"
    )
    detector_threads: int = Field(
        default=1,
        ge=0,
        description="onnxruntime threads of the detector (one is the most "
        "efficient: a 320x320 image gains little from a second)",
    )
    pose_queue_delay_us: int = 2000
    cpu_local_models: bool = Field(
        default=True,
        description="on the embedded CPU server, run the detector and pose ONNX files in the "
        "pipeline's process instead of calling their Triton models (BLS): about 8 ms and two "
        "process crossings less per image, and no batching to lose on a CPU",
    )
    triton_queue_size: int = Field(default=256, ge=1, description="requests a model queues")
    triton_queue_timeout_us: int = Field(
        default=10_000_000, ge=1, description="longest a request waits in a model's queue"
    )
    triton_release: str = Field(
        default=DEFAULT_TRITON_RELEASE,
        description="NGC release of the GPU Triton image (TRITON_VERSION in .env): TensorRT "
        "plans built for another TensorRT are not served",
    )

    @field_validator("triton_release")
    @classmethod
    def _known_release(cls, value: str) -> str:
        tensorrt_for_release(value)  # a clear error at start, not a plan that cannot load
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both RTMSERVE_TLS_CERT and RTMSERVE_TLS_KEY, or neither")
        for path in (self.tls_cert, self.tls_key):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file not found: {path}")
        return self

    @property
    def repository_dir(self) -> Path:
        return self.repository or self.home / "repository"

    @property
    def triton_http_url(self) -> str:
        return self.triton_http or f"http://127.0.0.1:{self.triton_http_port}"

    @property
    def models_dir(self) -> Path:
        """The cache of verified ONNX files (``rtmserve models pull``)."""
        return self.home / "models"

    @property
    def serving_options(self) -> ServingOptions:
        return ServingOptions(
            pipeline_instances=self.pipeline_instances,
            detector_instances=self.detector_instances,
            pose_instances=self.pose_instances,
            intra_op_threads=self.intra_op_threads,
            detector_threads=self.detector_threads,
            pose_queue_delay_us=self.pose_queue_delay_us,
            cpu_local_models=self.cpu_local_models,
            triton_queue_size=self.triton_queue_size,
            triton_queue_timeout_us=self.triton_queue_timeout_us,
            triton_release=self.triton_release,
        )
