"""Goodput under a retry storm: clients that ignore ``Retry-After`` and retry at once.

    python bench/retry_storm.py [--server URL] [--clients 8] [--storm 32] [--seconds 15]
                                [--rounds 2]

First the capacity: ``--clients`` closed-loop clients (as many as the gateway admits at once),
goodput = 200 answers/s. Then ``--storm`` clients (4x) that send their next request the
moment any answer comes, 503s included. The gateway must keep serving at capacity while it
refuses the rest (the SRE rule: a server under overload keeps its goodput); the target is a
storm goodput of at least 85 % of the capacity (over ``--rounds`` alternated capacity and
storm phases, which share any drift in the machine's load). The load generator runs in a
process of its own (this script, ``--generate``), and its CPU time is reported next to the
gateway's and Triton's: on a small machine it competes with the service for the same cores.

Without --server it starts ``rtmserve serve`` itself (embedded Triton, the shipped model) from
a fresh home with the local mirror. Prints the figures and writes JSON (default
bench/results/retry_storm.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import write_report

from rtmserve.launch import start_service

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.support: the load generator the tests use
from tests.support.load import closed_loop, summary  # noqa: E402
from tests.support.paths import COCO_VAL, MODELS_MIRROR  # noqa: E402
from tests.support.procs import processes  # noqa: E402

TARGET = 0.85
TICKS = 100  # /proc/<pid>/stat's clock ticks per second (USER_HZ)


def generate(url: str, clients: int, seconds: float, images: int) -> None:
    """The generator process: ``clients`` closed-loop clients for ``seconds``; prints JSON."""
    bodies = [p.read_bytes() for p in sorted((COCO_VAL / "images").glob("*.jpg"))[:images]]
    before = resource.getrusage(resource.RUSAGE_SELF)
    outcomes = asyncio.run(closed_loop(url, bodies, clients, seconds, timeout=60))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    figures = summary(outcomes, seconds)
    refused = [o.latency_s * 1e3 for o in outcomes if o.status == 503]
    refused_ms = (lambda q: round(float(np.percentile(refused, q)), 2)) if refused else None
    out = {
        "clients": clients,
        "seconds": seconds,
        "requests": figures["requests"],
        "statuses": {str(k): v for k, v in figures["statuses"].items()},
        "ok_per_s": round(figures["ok_per_s"], 2),
        "refused_per_s": round(len(refused) / seconds, 2),
        "ok_p50_ms": round(figures["p50_ms"], 1),
        "ok_p99_ms": round(figures["p99_ms"], 1),
        "refused_p50_ms": refused_ms(50) if refused_ms else None,
        "refused_p99_ms": refused_ms(99) if refused_ms else None,
        "retry_after": sorted({o.retry_after for o in outcomes if o.status == 503} - {None}),
        "generator_cpu_s": round(cpu, 2),
    }
    print(json.dumps(out))


def cpu_ticks(root: int) -> dict[str, int]:
    """CPU clock ticks (user + system) of the gateway process and of everything under it."""
    procs = {p.pid: p for p in processes()}
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += [p.pid for p in procs.values() if p.ppid == pid and p.pid not in tree]
    ticks = {}
    for pid in tree:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime, stime
    return {"gateway": ticks.get(root, 0), "all": sum(ticks.values())}


def phase(url: str, clients: int, seconds: float, images: int, pid: int | None) -> dict:
    """One load phase from a generator process; the service's CPU over the same time."""
    start = cpu_ticks(pid) if pid else None
    t0 = time.perf_counter()
    cmd = [sys.executable, __file__, "--generate", url, str(clients), str(seconds), str(images)]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    figures = json.loads(run.stdout.strip().splitlines()[-1])
    figures["generator_cpu_share"] = round(figures["generator_cpu_s"] / wall, 2)  # of one core
    if start is not None and pid:
        end = cpu_ticks(pid)
        figures["gateway_cpu_s"] = round((end["gateway"] - start["gateway"]) / TICKS, 2)
        figures["service_cpu_s"] = round((end["all"] - start["all"]) / TICKS, 2)  # + Triton
    return figures


def line(name: str, f: dict) -> str:
    text = (
        f"{name}: {f['clients']} clients, {f['ok_per_s']:.1f} ok/s (p50 {f['ok_p50_ms']:.0f} "
        f"ms, p99 {f['ok_p99_ms']:.0f} ms), {f['refused_per_s']:.1f} refused/s"
    )
    if f["refused_p50_ms"] is not None:
        text += f" (p50 {f['refused_p50_ms']:.1f} ms, p99 {f['refused_p99_ms']:.1f} ms)"
    text += f", statuses {f['statuses']}, generator CPU {f['generator_cpu_s']:.1f} s"
    if "gateway_cpu_s" in f:
        text += f", gateway CPU {f['gateway_cpu_s']:.1f} s, service CPU {f['service_cpu_s']:.1f} s"
    return text


def main(args: argparse.Namespace) -> None:
    svc = None
    url, pid = args.server, None
    if url is None:
        env = {}
        if args.refusal_delay is not None:  # 0: every refusal answered at once
            env["RTMSERVE_REFUSAL_DELAY_S"] = str(args.refusal_delay)
        home = Path(tempfile.mkdtemp(prefix="rtmserve-bench-"))
        svc = start_service(home, MODELS_MIRROR, env)
        url, pid = svc.http, svc.proc.pid
    rounds = []
    try:
        phase(url, args.clients, args.warmup, args.images, None)  # warm the caches
        for n in range(args.rounds):  # alternated, so that drift in the machine's load is shared
            capacity = phase(url, args.clients, args.seconds, args.images, pid)
            print(line(f"round {n + 1} capacity", capacity), flush=True)
            storm = phase(url, args.storm, args.seconds, args.images, pid)
            print(line(f"round {n + 1} storm", storm), flush=True)
            rounds.append({"capacity": capacity, "storm": storm})
    finally:
        if svc is not None:
            svc.stop()
    ratio = sum(r["storm"]["ok_per_s"] for r in rounds) / sum(
        r["capacity"]["ok_per_s"] for r in rounds
    )
    print(
        f"goodput under a {args.storm / args.clients:g}x retry storm: {100 * ratio:.1f} % of "
        f"capacity (target >= {100 * TARGET:.0f} %): {'met' if ratio >= TARGET else 'MISSED'}"
    )
    write_report(
        args.output,
        "retry_storm",
        server=args.server or "started here (embedded Triton, the shipped model)",
        refusal_delay_s=args.refusal_delay,
        rounds=rounds,
        goodput_ratio=round(ratio, 3),
        target=TARGET,
        met=ratio >= TARGET,
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--generate":
        generate(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
        sys.exit(0)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--server", help="HTTP URL of a running service; default starts one")
    parser.add_argument("--clients", type=int, default=8, help="clients at capacity")
    parser.add_argument("--storm", type=int, default=32, help="clients in the storm")
    parser.add_argument("--seconds", type=float, default=15.0, help="each phase")
    parser.add_argument("--rounds", type=int, default=2, help="capacity + storm, alternated")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--images", type=int, default=40, help="COCO images sent in turn")
    parser.add_argument(
        "--refusal-delay", type=float, help="RTMSERVE_REFUSAL_DELAY_S of the service started"
    )
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "retry_storm.json"
    )
    main(parser.parse_args())
