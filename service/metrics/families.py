"""Every metric family the gateway exports, defined once in the default registry.

Label values are bounded: routes are templates (``/v1/pose``), gRPC methods are the registered
ones, error codes are the API's. Buckets span 0.25 ms to 60 s: a Triton stage on a GPU takes
well under a millisecond, a CPU request hundreds of milliseconds, a video upload tens of seconds.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info, disable_created_metrics

from service import __version__

LATENCY_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1,
    0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0,
)  # fmt: skip
PERSON_BUCKETS = (0, 1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 100)

APIS = ("http", "grpc")
FLOWS = ("image", "video")  # one image (POST /v1/pose, Estimate) or one frame of a stream
# Gateway stages: decode (upload read + image decode), inference (Triton round trip), format
# (arrays -> response); inside Triton, from each response's STAGE_MS: the other four.
STAGES = ("decode", "inference", "preprocess", "detector", "pose", "postprocess", "format")
# The API's error codes (service/*/errors.py and friends) plus "internal" (an unhandled
# exception: HTTP 500, gRPC UNKNOWN). tests/test_metrics_families.py keeps this list complete.
ERROR_CODES = (
    "bad_request",
    "unauthenticated",
    "request_timeout",
    "rate_limited",
    "overloaded",
    "unsupported_media_type",
    "invalid_image",
    "invalid_video",
    "payload_too_large",
    "unknown_model",
    "invalid_parameter",
    "service_unavailable",
    "inference_failed",
    "internal",
)

HTTP_REQUESTS = Counter(
    "rtmserve_http_requests", "HTTP requests answered", ("method", "route", "status")
)
HTTP_LATENCY = Histogram(
    "rtmserve_http_request_duration_seconds",
    "HTTP request duration, until the last byte of the response (whole stream for video)",
    ("method", "route", "status"),
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("rtmserve_http_requests_in_flight", "HTTP requests being answered")
GRPC_REQUESTS = Counter("rtmserve_grpc_requests", "gRPC calls finished", ("method", "code"))
GRPC_LATENCY = Histogram(
    "rtmserve_grpc_request_duration_seconds",
    "gRPC call duration (whole stream for Stream)",
    ("method", "code"),
    buckets=LATENCY_BUCKETS,
)
GRPC_IN_FLIGHT = Gauge("rtmserve_grpc_requests_in_flight", "gRPC calls in progress", ("method",))
STAGE_LATENCY = Histogram(
    "rtmserve_stage_duration_seconds",
    "Duration of one stage of one image or frame",
    ("flow", "stage"),
    buckets=LATENCY_BUCKETS,
)
PERSONS = Histogram(
    "rtmserve_persons_per_image",
    "Persons returned per image or frame",
    ("flow",),
    buckets=PERSON_BUCKETS,
)
ERRORS = Counter("rtmserve_errors", "Errors answered, by API error code", ("api", "code"))
STREAMS = Counter("rtmserve_streams", "Video streams started", ("api",))
STREAMS_OPEN = Gauge("rtmserve_streams_open", "Video streams in progress", ("api",))
STREAM_FRAMES = Counter("rtmserve_stream_frames", "Video frames answered", ("api", "detected"))
READY = Gauge("rtmserve_ready", "1 while Triton and the serving models are ready (as /readyz)")
CLIENT_REQUESTS = Counter(
    "rtmserve_client_requests",
    "Requests by client (its API key's name, never the key)",
    ("api", "client"),
)
ADMISSION = Gauge(
    "rtmserve_admission", "Images in progress and waiting for a slot", ("state",)
)  # state: in_flight, waiting
TRITON_RESTARTS = Counter("rtmserve_triton_restarts", "Embedded tritonserver restarts")
TRITON_EXIT_CODE = Gauge(
    "rtmserve_triton_last_exit_code", "Exit code of the last unasked tritonserver exit"
)
MODEL_RELOADS = Counter(
    "rtmserve_model_reloads", "Models found unloaded or unready and loaded again", ("model",)
)
POSE_ANSWERS = Counter(
    "rtmserve_pose_answers",
    "Pose model calls answered, by version and role (live, canary)",
    ("model", "version", "role"),
)
TRIAL_COPIES = Counter(
    "rtmserve_trial_copies",
    "Copies of live requests for a trial's other version, by outcome (compared, failed, "
    "skipped: the copy path was busy)",
    ("model", "version", "mode", "outcome"),
)
TRIAL_AGREEMENT = Histogram(
    "rtmserve_trial_agreement_oks",
    "Keypoint agreement (OKS, live version as reference) of each compared pair",
    ("model", "version"),
    buckets=(0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0),
)
TRIAL_PERSON_DIFF = Histogram(
    "rtmserve_trial_person_diff",
    "Difference in persons found by the two versions, per compared pair",
    ("model", "version"),
    buckets=(0, 1, 2, 3, 5, 10),
)
TRIAL_POSE_TIME = Histogram(
    "rtmserve_trial_pose_duration_seconds",
    "Pose-model time inside Triton of each compared pair, by role (live, candidate)",
    ("model", "version", "role"),
    buckets=LATENCY_BUCKETS,
)
TRIAL_SHARE = Gauge(
    "rtmserve_trial_share", "Share of requests of a running trial (0: none)", ("model", "mode")
)
BUILD = Info("rtmserve_build", "rtmserve version")


def _initialise() -> None:
    """Create the bounded label sets at zero, so rates read 0 rather than nothing; drop the
    ``*_created`` series (a second series per label set that nothing here reads)."""
    disable_created_metrics()
    BUILD.info({"version": __version__})
    for api in APIS:
        for code in ERROR_CODES:
            ERRORS.labels(api, code)
        STREAMS.labels(api)
        STREAMS_OPEN.labels(api)
        for detected in ("true", "false"):
            STREAM_FRAMES.labels(api, detected)
    for flow in FLOWS:
        PERSONS.labels(flow)
        for stage in STAGES:
            STAGE_LATENCY.labels(flow, stage)


_initialise()
