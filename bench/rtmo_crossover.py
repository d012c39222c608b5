"""Top-down (RTMDet-nano + RTMPose) against one-stage RTMO-s as the number of people grows.

    python bench/rtmo_crossover.py [--per-bin 12] [--rounds 2] [--clients 4]

RTMO's README reports that it overtakes RTMPose above about 4 people per image (on a GPU). This
measures where that happens on this machine, through the service (embedded Triton, defaults),
with seeded exports of RTMPose-t and -s and RTMO-s (real compute; weights cannot be had here)
and the real RTMDet-nano detector from ../shared/models. Photos come from ../shared/data (COCO
val and train images: benchmarked, never trained on), binned by the real detector's count of
people (1, 2, 3, 4-5, 6-9, 10+), up to ``--per-bin`` each. Per bin and model: mean latency at
one client and images/s at ``--clients``; the runners take turns, ``--rounds`` times (medians).

``auto`` (pick RTMO or top-down per image from the detector's count on the same pass) is
evaluated from the measured stage timings of each image: its cost is the top-down total below
a threshold K, and the detector plus RTMO at or above it; the best K over the mixed set is
compared with both fixed choices; ``auto`` counts as a win only if it saves more than 5 %
(its K is fitted on the same images). Writes bench/results/rtmo_crossover.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import write_report
from peers import SHARED, closed_loop, export, register

from rtmserve.client import Client, PoseResult

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("coco_val_subset", "coco_val_extra_unlabeled", "coco_train_partial")
BINS = ((1, 1), (2, 2), (3, 3), (4, 5), (6, 9), (10, 10_000))
RTMO = "bench-rtmo-s"
AUTO_MARGIN = 0.05  # what auto must save over the best fixed choice to be worth shipping


def label(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else (f"{lo}+" if hi > 1000 else f"{lo}-{hi}")


def export_rtmo(out: Path) -> None:
    cmd = [sys.executable, "-m", "training.export_rtmo", "--variant", "s", "--seed", "0",
           "--output", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, timeout=1800)


def pose(client: Client, data: bytes, model: str) -> PoseResult:
    return client.estimate(data, pose_model=model)


def binned(http: Client, model: str, per_bin: int) -> dict[str, list[bytes]]:
    """Photos by the real detector's count (the top-down pipeline's answer)."""
    bins: dict[str, list[bytes]] = {label(*b): [] for b in BINS}
    for folder in FOLDERS:
        for path in sorted((SHARED / "data" / folder).rglob("*.jpg")):
            data = path.read_bytes()
            n = len(pose(http, data, model).persons)
            for lo, hi in BINS:
                if lo <= n <= hi and len(bins[label(lo, hi)]) < per_bin:
                    bins[label(lo, hi)].append(data)
    return bins


def one_client(http: Client, model: str, images: list[bytes]) -> list[dict]:
    """Per image: wall latency, the stages the service reports and the people found."""
    out = []
    for data in images:
        t = time.perf_counter()
        body = pose(http, data, model)
        out.append({"ms": (time.perf_counter() - t) * 1e3, "people": len(body.persons),
                    **body.timings.stages_ms})  # fmt: skip
    return out


def auto_rule(td: list[dict], rtmo: list[dict], k: int) -> float:
    """Mean latency of ``auto`` with threshold K: top-down below K people, else detector +
    RTMO (the detector's pass is what decides, so it is paid either way)."""
    costs = [t["ms"] if t["people"] < k else t["detector"] + r["ms"]
             for t, r in zip(td, rtmo, strict=True)]  # fmt: skip
    return statistics.mean(costs)


def main(args: argparse.Namespace) -> None:
    from rtmserve.launch import start_service

    work = Path(tempfile.mkdtemp(prefix="rtmserve-rtmo-"))
    models = {f"rtmpose-{v}": f"bench-rtmpose-{v}" for v in ("t", "s")}
    for variant in ("t", "s"):
        export(variant, work / f"rtmpose-{variant}.onnx")
    export_rtmo(work / "rtmo-s.onnx")
    svc = start_service(work / "home", SHARED / "models")
    rows, per_image = [], {}
    try:
        for like, name in models.items():
            register(svc, name, str(work / f"{like}.onnx"), like)
        register(svc, RTMO, str(work / "rtmo-s.onnx"), "rtmo-s")
        names = [*models.values(), RTMO]
        http = Client(svc.http, timeout=600)
        bins = binned(http, names[0], args.per_bin)
        print({b: len(v) for b, v in bins.items()}, flush=True)
        everything = [d for v in bins.values() for d in v]
        for name in names:  # warm-up: every batch shape once
            closed_loop(lambda d, n=name: pose(http, d, n), everything[:16], args.clients)
        for n in range(args.rounds):
            print(f"-- round {n + 1} of {args.rounds}", flush=True)
            for b, images in bins.items():
                if not images:
                    continue
                for name in names:
                    seq = one_client(http, name, images)
                    par = closed_loop(lambda d, n=name: pose(http, d, n), images, args.clients)
                    per_image.setdefault((b, name), []).append(seq)
                    rows.append({"bin": b, "model": name, "images": len(images),
                                 "mean_ms": round(statistics.mean(s["ms"] for s in seq), 1),
                                 "people": round(statistics.mean(s["people"] for s in seq), 2),
                                 f"images_per_s_{args.clients}": par["images_per_s"]})  # fmt: skip
                    print(rows[-1], flush=True)
    finally:
        svc.stop()
        shutil.rmtree(work, ignore_errors=True)

    table = {}
    for r in rows:
        table.setdefault((r["bin"], r["model"]), []).append(r)
    summary = []
    for (b, name), rs in table.items():
        summary.append({"bin": b, "model": name, "images": rs[0]["images"],
                        "people": rs[0]["people"],
                        "mean_ms": round(statistics.median(r["mean_ms"] for r in rs), 1),
                        "images_per_s": round(statistics.median(
                            r[f"images_per_s_{args.clients}"] for r in rs), 2)})  # fmt: skip

    crossover = {}
    for td in models.values():
        pts = [(s["people"], s["mean_ms"]) for s in summary if s["model"] == td]
        rtmo_ms = statistics.mean(s["mean_ms"] for s in summary if s["model"] == RTMO)
        slope, intercept = statistics.linear_regression(*zip(*pts, strict=True))
        measured = next((s["bin"] for s in summary if s["model"] == td
                         and s["mean_ms"] > next(x["mean_ms"] for x in summary
                                                  if x["model"] == RTMO and x["bin"] == s["bin"])),
                        None)  # fmt: skip
        crossover[td] = {
            "top_down_ms": f"{intercept:.1f} + {slope:.1f} per person",
            "rtmo_s_ms": round(rtmo_ms, 1),
            "first_bin_where_rtmo_wins": measured,
            "extrapolated_people": round((rtmo_ms - intercept) / slope, 1) if slope > 0 else None,
        }

    last = {key: runs[-1] for key, runs in per_image.items()}  # the last round, image by image
    auto = {}
    for td in models.values():
        td_all = [x for b in bins for x in last.get((b, td), [])]
        rtmo_all = [x for b in bins for x in last.get((b, RTMO), [])]
        choices = {k: round(auto_rule(td_all, rtmo_all, k), 1) for k in range(1, 31)}
        best = min(choices, key=choices.get)
        fixed = min(statistics.mean(x["ms"] for x in td_all),
                    statistics.mean(x["ms"] for x in rtmo_all))  # fmt: skip
        auto[td] = {
            "top_down_ms": round(statistics.mean(x["ms"] for x in td_all), 1),
            "rtmo_s_ms": round(statistics.mean(x["ms"] for x in rtmo_all), 1),
            "auto_best_k": best,
            "auto_ms": choices[best],
            "auto_gain": round(1 - choices[best] / fixed, 4),
            # K is fitted on the same images, so a win must be clear to count: 5 %
            "auto_wins": choices[best] < (1 - AUTO_MARGIN) * fixed,
        }  # fmt: skip

    print(f"\nmedians of {args.rounds} interleaved rounds")
    print(f"{'people':7} {'model':18} {'images':>6} {'mean':>6} {'ms/img':>8} "
          f"{'img/s@' + str(args.clients):>9}")  # fmt: skip
    for s in summary:
        print(f"{s['bin']:7} {s['model']:18} {s['images']:>6} {s['people']:>6.2f} "
              f"{s['mean_ms']:>8.1f} {s['images_per_s']:>9.2f}")  # fmt: skip
    print("crossover:", crossover)
    print("auto on the mixed set:", auto)
    write_report(args.output, "rtmo_crossover", clients=args.clients, rounds=args.rounds,
                 summary=summary, crossover=crossover, auto=auto,
                 seed_claim="RTMO overtakes RTMPose above ~4 people per image (GPU)")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    parser.add_argument("--per-bin", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--output", type=Path,
                        default=ROOT / "bench" / "results" / "rtmo_crossover.json")  # fmt: skip
    main(parser.parse_args())
