"""A long fuzzing run over the gateway's parsers: the image and container sniffers (and the
decoding behind them, in process), the multipart upload parser and the WebSocket message
parser (against a live service, which they need whole).

    python bench/fuzz.py [--server URL] [--scale 1.0] [--seed N] [--only images,videos,...]

The same strategies and properties as the CI tests (tests/support/fuzz.py), with many more
examples and a random seed (``--seed`` to replay one). A property that fails is a crash: a bug
to fix; Hypothesis shrinks it and prints the falsifying example. Without --server (and unless
``--only`` names in-process targets alone) it starts ``rtmserve serve`` itself from a fresh
home with the local mirror. Prints examples run, outcomes, examples/s and crashes per target,
and writes JSON (default bench/results/fuzz.json); exits 1 when anything crashed.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
from _report import write_report
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from rtmserve.launch import start_service

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support: the strategies and properties the tests use
from tests.support.fuzz import (  # noqa: E402
    check_answer,
    check_image,
    check_video,
    check_ws,
    image_inputs,
    multipart_requests,
    video_inputs,
    ws_sessions,
)
from tests.support.paths import MODELS_MIRROR  # noqa: E402

EXAMPLES = {"images": 5000, "videos": 1500, "multipart": 2000, "websocket": 400}
LIVE = {"multipart", "websocket"}


def run_target(
    name: str,
    strategy: st.SearchStrategy,
    check: Callable[[object], str],
    examples: int,
    seeded: Callable,
) -> dict:
    outcomes: Counter[str] = Counter()
    crashes: list[str] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        report_multiple_bugs=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def fuzz(value) -> None:
        outcomes[check(value)] += 1

    fuzz = seeded(fuzz)
    start = time.perf_counter()
    try:
        fuzz()
    except BaseException as exc:  # one failure, or a group of distinct ones
        found = exc.exceptions if isinstance(exc, BaseExceptionGroup) else [exc]
        crashes = ["".join(traceback.format_exception_only(e)).strip() for e in found]
    seconds = time.perf_counter() - start
    run = sum(outcomes.values())
    result = {
        "examples": run,
        "outcomes": dict(outcomes),
        "seconds": round(seconds, 1),
        "examples_per_s": round(run / seconds, 1) if seconds else None,
        "crashes": len(crashes),
        "crash_messages": crashes,
    }
    print(
        f"{name:10s} {run:6d} examples  {result['examples_per_s']:8.1f}/s  "
        f"crashes {len(crashes)}  {dict(outcomes)}"
    )
    for message in crashes:
        print(f"  CRASH: {message[:500]}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="a running service's HTTP URL (else one is started)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplies every target's examples"
    )
    parser.add_argument("--seed", type=int, help="Hypothesis's seed (default: random)")
    parser.add_argument("--only", help=f"comma-separated targets among {', '.join(EXAMPLES)}")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/fuzz.json")
    args = parser.parse_args()
    targets = args.only.split(",") if args.only else list(EXAMPLES)
    seed_value = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"seed {seed_value}")
    examples = {t: max(1, int(EXAMPLES[t] * args.scale)) for t in targets}

    seeded = seed(seed_value)

    results: dict[str, dict] = {}
    ready_after: bool | None = None
    service = None
    url = args.server
    try:
        if LIVE & set(targets) and url is None:
            home = Path(tempfile.mkdtemp(prefix="rtmserve-fuzz-"))
            service = start_service(home, MODELS_MIRROR)
            url = service.http
        if "images" in targets:
            results["images"] = run_target(
                "images", image_inputs(), check_image, examples["images"], seeded
            )
        if "videos" in targets:
            results["videos"] = run_target(
                "videos", video_inputs(), check_video, examples["videos"], seeded
            )
        if "multipart" in targets:
            with httpx.Client(base_url=url, timeout=60) as http:

                def multipart(request) -> str:
                    body, content_type = request
                    r = http.post("/v1/pose", content=body, headers={"content-type": content_type})
                    check_answer(r.status_code, r.content)
                    return str(r.status_code)

                results["multipart"] = run_target(
                    "multipart", multipart_requests(), multipart, examples["multipart"], seeded
                )
        if "websocket" in targets:
            ws_url = url.replace("http://", "ws://") + "/v1/pose/ws"
            results["websocket"] = run_target(
                "websocket",
                ws_sessions(),
                lambda messages: check_ws(ws_url, messages),
                examples["websocket"],
                seeded,
            )
        if url is not None:
            ready_after = httpx.get(f"{url}/readyz", timeout=10).status_code == 200
            print(f"service ready after fuzzing: {ready_after}")
    finally:
        if service is not None:
            code = service.stop()
            print(f"service exited with {code}")
    crashes = sum(r["crashes"] for r in results.values())
    examples_run = sum(r["examples"] for r in results.values())
    print(f"total: {examples_run} examples, {crashes} crashes")
    write_report(
        args.out,
        "fuzz",
        seed=seed_value,
        examples_run=examples_run,
        crashes_found=crashes,
        service_ready_after=ready_after,
        targets=results,
    )
    return 1 if crashes or ready_after is False else 0


if __name__ == "__main__":
    sys.exit(main())
