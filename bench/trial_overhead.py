"""What a shadow trial costs the clients: p95 latency and images/s of 4 closed-loop clients with
no trial and with a shadow copy of 20 % of requests (an identical candidate), side by side in
one service, interleaved rounds; and the share the candidate received.

    python bench/trial_overhead.py [--rounds 3] [--clients 4] [--share 0.2]

Writes bench/results/trial_overhead.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import httpx
from _report import write_report
from peers import IMAGES, SHARED, closed_loop

from rtmserve.client import Client
from rtmserve.launch import RTMSERVE, start_service, wait_until

ROOT = Path(__file__).resolve().parents[1]
NAME = "rtmserve-pose-n"


def models(svc, *args: str) -> None:
    cmd = [RTMSERVE, "models", *args, "--home", str(svc.home), "--triton-http", svc.triton_http]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def trial(svc) -> dict | None:
    listed = httpx.get(f"{svc.http}/v1/models", timeout=30).json()["models"]
    return next(m for m in listed if m["name"] == NAME)["trial"]


def settled(figures: dict) -> int:
    return sum(figures[k] for k in ("compared", "failed", "skipped", "empty"))


def main(args: argparse.Namespace) -> None:
    photos = [p.read_bytes() for p in sorted(IMAGES.glob("*.jpg"))[: args.limit]]
    home = Path(tempfile.mkdtemp(prefix="rtmserve-trial-bench-"))
    svc = start_service(home, SHARED / "models", {"RTMSERVE_POSE_MODEL": NAME})
    rows = []
    try:
        models(svc, "register", NAME, str(ROOT / "models" / NAME / "model.onnx"), "--hold")
        with Client(svc.http, timeout=600) as client:
            work = lambda data: client.estimate(data)  # noqa: E731
            closed_loop(work, photos[:16], args.clients)  # warm-up
            for n in range(args.rounds):
                for mode in ("none", "shadow"):
                    if mode == "shadow":
                        models(svc, "shadow", NAME, "2", "--share", str(args.share))
                        wait_until(lambda: trial(svc)["running"], 30, "the trial to run")
                    result = closed_loop(work, photos * args.passes, args.clients)
                    figures = None
                    if mode == "shadow":  # copies finish after their answers: wait for all
                        due = int(len(photos) * args.passes * args.share)
                        done = lambda due=due: settled(trial(svc)["figures"]) >= due  # noqa: E731
                        wait_until(done, 60, "every copy to settle")
                        figures = trial(svc)["figures"]
                        figures["received"] = round(
                            figures["compared"] / (due - figures["empty"]), 3
                        )
                        models(svc, "drop", NAME)
                    rows.append({"round": n + 1, "trial": mode, **result, "figures": figures})
                    print(rows[-1], flush=True)
    finally:
        svc.stop()
        shutil.rmtree(home, ignore_errors=True)

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in rows if r["trial"] == mode)

    p95 = {m: median(m, "p95_ms") for m in ("none", "shadow")}
    received = statistics.median(r["figures"]["received"] for r in rows if r["figures"])
    ips = {m: median(m, "images_per_s") for m in ("none", "shadow")}
    p95_ratio = round(p95["shadow"] / p95["none"], 3)
    ips_ratio = round(ips["shadow"] / ips["none"], 3)
    print(f"p95 {p95['none']:.1f} -> {p95['shadow']:.1f} ms ({p95_ratio}x); images/s "
          f"{ips['none']:.2f} -> {ips['shadow']:.2f} ({ips_ratio}x); the candidate compared "
          f"{received:.0%} of the copies due for the people found")  # fmt: skip
    write_report(args.output, "trial_overhead", clients=args.clients, share=args.share,
                 rows=rows, p95_ms=p95, images_per_s=ips, p95_ratio=p95_ratio,
                 images_per_s_ratio=ips_ratio, received=received)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--limit", type=int, default=110)
    parser.add_argument("--passes", type=int, default=3, help="passes over the photos per run")
    parser.add_argument("--output", type=Path,
                        default=ROOT / "bench" / "results" / "trial_overhead.json")  # fmt: skip
    main(parser.parse_args())
