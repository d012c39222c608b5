"""What a kill -9 costs a supervised one-machine fleet (``rtmserve fleet``, two replicas behind
Envoy): 8 plain closed-loop clients (no retries) post images through Envoy while each replica
in turn is killed (gateway and Triton), then Envoy itself.

    python bench/fleet_failover.py [--kills 4] [--envoy-kills 1] [--clients 8]

Prints and writes (bench/results/fleet_failover.json): answers and non-200s around the replica
kills, seconds from each kill until the restarted replica has answered an image, seconds from
each Envoy kill until it proxies again, and what the plain clients saw then (a client without
retries loses what was in flight on the killed Envoy).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _report import write_report

from rtmserve.fleet import start_fleet
from rtmserve.launch import wait_until

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support: the load generator the tests use
from tests.support.load import BackgroundLoad  # noqa: E402
from tests.support.paths import COCO_VAL, MODELS_MIRROR  # noqa: E402

ENV = {"RTMSERVE_ALLOW_UNTRAINED": "1"}


def answered(replica) -> bool:
    """The replica's own gateway has answered an image (its /metrics, fresh per process)."""
    try:
        text = httpx.get(f"{replica.http}/metrics", timeout=5).text
    except httpx.HTTPError:
        return False
    return any(line.startswith("rtmserve_http_requests_total{") and 'route="/v1/pose"' in line
               and 'status="200"' in line and not line.endswith(" 0.0")
               for line in text.splitlines())  # fmt: skip


def proxies(fleet) -> bool:
    try:
        return httpx.get(f"{fleet.http}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def statuses(outcomes) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in outcomes:
        out[str(o.status)] = out.get(str(o.status), 0) + 1
    return out


def main(args: argparse.Namespace) -> None:
    photos = [p.read_bytes() for p in sorted((COCO_VAL / "images").glob("*.jpg"))[:16]]
    work = Path(tempfile.mkdtemp(prefix="rtmserve-failover-bench-"))
    fleet = start_fleet(work, 2, MODELS_MIRROR, ENV)
    rejoin, envoy_back = [], []
    try:
        with BackgroundLoad(fleet.http, photos, args.clients) as load:
            wait_until(lambda: all(answered(r) for r in fleet.replicas), 300, "both answering")
            for k in range(args.kills):
                victim, old = k % 2, fleet.replicas[k % 2]
                killed = time.monotonic()
                fleet.kill(victim)
                wait_until(lambda v=victim, o=old: fleet.replicas[v] is not o
                           and answered(fleet.replicas[v]), 300, "the replica back")  # fmt: skip
                rejoin.append(round(time.monotonic() - killed, 2))
                print(f"replica {victim} killed: back and answering after {rejoin[-1]} s",
                      flush=True)  # fmt: skip
            replica_phase = list(load.outcomes)
            for _ in range(args.envoy_kills):
                old, killed = fleet.envoy, time.monotonic()
                old.kill()
                wait_until(lambda o=old: fleet.envoy is not o and proxies(fleet), 60, "Envoy")
                envoy_back.append(round(time.monotonic() - killed, 2))
                print(f"Envoy killed: proxying again after {envoy_back[-1]} s", flush=True)
                n = len(load.outcomes)
                wait_until(lambda n=n: len(load.outcomes) >= n + 2 * args.clients, 120, "load")
            envoy_phase = load.outcomes[len(replica_phase) :]
    finally:
        fleet.stop()
        failures = (work / "envoy-access.log").read_text().splitlines()
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "clients": args.clients,
        "replica_kills": {"answers": statuses(replica_phase), "rejoin_s": rejoin},
        "envoy_kills": {"answers": statuses(envoy_phase), "back_s": envoy_back},
        "envoy_failures": failures,  # Envoy's log of its answers >= 500, with their reason
    }
    print(report)
    write_report(args.output, "fleet_failover", **report)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--envoy-kills", type=int, default=1)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--output", type=Path,
                        default=ROOT / "bench" / "results" / "fleet_failover.json")  # fmt: skip
    main(parser.parse_args())
