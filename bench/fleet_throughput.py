"""Images/s of a one-machine fleet: 1 replica behind Envoy against 2 (``rtmserve fleet``),
side by side, same photos, 8 closed-loop clients of rtmserve's client, interleaved rounds.

    python bench/fleet_throughput.py [--rounds 2] [--clients 8]

On two cores a second replica adds no compute: the ratio says what the extra processes cost
(or gain from overlapping one replica's HTTP/gRPC work with the other's inference). Writes
bench/results/fleet_throughput.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

from _report import write_report
from peers import IMAGES, SHARED, closed_loop

from rtmserve.client import Client, RetryPolicy
from rtmserve.fleet import start_fleet

ROOT = Path(__file__).resolve().parents[1]
ENV = {"RTMSERVE_ALLOW_UNTRAINED": "1"}


def main(args: argparse.Namespace) -> None:
    photos = [p.read_bytes() for p in sorted(IMAGES.glob("*.jpg"))[: args.limit]]
    work = Path(tempfile.mkdtemp(prefix="rtmserve-fleet-bench-"))
    fleets = {}
    try:
        fleets[2] = start_fleet(work / "two", 2, SHARED / "models", ENV)
        fleets[1] = start_fleet(work / "one", 1, SHARED / "models", ENV,
                                repository=fleets[2].replicas[0].repository)  # fmt: skip
        patient = RetryPolicy(attempts=10_000, cap=5.0, deadline=600)
        rows = []
        for n in range(args.rounds):
            for replicas, fleet in sorted(fleets.items()):
                with Client(fleet.http, retry=patient, timeout=600) as client:
                    work_fn = lambda data, c=client: c.estimate(data)  # noqa: E731
                    if n == 0:
                        closed_loop(work_fn, photos[:16], args.clients)  # warm-up
                    result = closed_loop(work_fn, photos, args.clients)
                rows.append({"round": n + 1, "replicas": replicas, **result})
                print(rows[-1], flush=True)
    finally:
        for fleet in fleets.values():
            fleet.stop()
        shutil.rmtree(work, ignore_errors=True)
    median = {r: statistics.median(x["images_per_s"] for x in rows if x["replicas"] == r)
              for r in (1, 2)}  # fmt: skip
    ratio = round(median[2] / median[1], 2)
    print(f"images/s at {args.clients} clients: 1 replica {median[1]:.2f}, 2 replicas "
          f"{median[2]:.2f}: {ratio}x")  # fmt: skip
    write_report(args.output, "fleet_throughput", clients=args.clients, rows=rows,
                 images_per_s=median, ratio=ratio)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--limit", type=int, default=110)
    parser.add_argument("--output", type=Path,
                        default=ROOT / "bench" / "results" / "fleet_throughput.json")  # fmt: skip
    main(parser.parse_args())
