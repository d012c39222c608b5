"""Regenerate ``service/core/keypoint_sets.json`` from mmpose's dataset metainfo files.

    python tools/keypoint_sets.py MMPOSE_CHECKOUT/configs/_base_/datasets

Each set's keypoint names, mirror pairs (flip indices), OKS sigmas, skeleton links and the
colours of MMPose's visualiser, as data: the one place the service, the renderer, tracking,
evaluation and training read them from. The files are mmpose's (Apache-2.0), which describe the
datasets' own conventions (COCO, COCO-WholeBody, Halpe, AP-10K, LaPa); the JSON is committed, so
nothing here runs at build or test time.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

# rtmserve's set name -> mmpose's dataset file
SOURCES = {
    "coco": "coco.py",
    "halpe26": "halpe26.py",
    "coco_wholebody": "coco_wholebody.py",
    "hand21": "coco_wholebody_hand.py",
    "ap10k": "ap10k.py",
    "face106": "lapa.py",
}
OUT = Path(__file__).resolve().parents[1] / "service" / "core" / "keypoint_sets.json"


def read_dataset_info(path: Path) -> dict:
    """``dataset_info = dict(...)`` evaluated as a literal (dict calls become dicts)."""
    tree = ast.parse(path.read_text())
    node = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                and n.targets[0].id == "dataset_info")  # fmt: skip

    def literal(n: ast.AST):
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult):  # [1.] * 133
            return literal(n.left) * literal(n.right)
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add):  # 'a' + 'b'
            return literal(n.left) + literal(n.right)
        if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "dict":
            return {kw.arg: literal(kw.value) for kw in n.keywords}
        if isinstance(n, ast.Dict):
            return {literal(k): literal(v) for k, v in zip(n.keys, n.values, strict=True)}
        if isinstance(n, ast.List | ast.Tuple):
            return [literal(e) for e in n.elts]
        return ast.literal_eval(n)

    return literal(node)


def convert(info: dict) -> dict:
    kinfo = [info["keypoint_info"][i] for i in sorted(info["keypoint_info"])]
    names = [k["name"] for k in kinfo]
    index = {n: i for i, n in enumerate(names)}
    links = [info["skeleton_info"][i] for i in sorted(info["skeleton_info"])]
    return {
        "dataset": info["dataset_name"],
        "homepage": info.get("paper_info", {}).get("homepage", ""),
        "keypoints": names,
        "flip_indices": [index[k["swap"]] if k["swap"] else i for i, k in enumerate(kinfo)],
        "sigmas": [float(s) for s in info["sigmas"]],
        "skeleton": [[index[a], index[b]] for a, b in (link["link"] for link in links)],
        "link_colors": [list(link["color"]) for link in links],  # RGB
        "keypoint_colors": [list(k["color"]) for k in kinfo],
    }


def main(folder: Path) -> None:
    sets = {name: convert(read_dataset_info(folder / file)) for name, file in SOURCES.items()}
    for name, s in sets.items():
        assert len(s["keypoints"]) == len(s["flip_indices"]), name
        assert len(s["sigmas"]) in (0, len(s["keypoints"])), name  # LaPa (face) has none
    OUT.write_text(json.dumps(sets, indent=1) + "\n")
    print({name: len(s["keypoints"]) for name, s in sets.items()}, "->", OUT)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
