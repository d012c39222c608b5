"""The Triton image's entrypoint: refuse TensorRT plans that cannot run here, then exec the command.

    python3 start.py tritonserver --model-repository=DIR --model-config-name=tensorrt ...

With ``--model-config-name=tensorrt``, every model whose config serves plans must list one for
this GPU's compute capability, built with this image's TensorRT (``service.core.plans``);
otherwise Triton would fail each such model with a deserialisation error deep in its log, or
load no file at all. This says which model, which plans exist and what to run instead, and
exits 1 before Triton starts. Any other command runs unchanged.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the source tree: service.core
from service.core.plans import PlanKey, local_compute_capability, local_tensorrt, parse_plan

_CC_ENTRY = re.compile(r'cc_model_filenames\s*\{\s*key:\s*"([^"]+)"\s*value:\s*"([^"]+)"\s*\}')


def flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
    return None


def plan_problems(repository: Path, config_name: str, here: PlanKey) -> list[str]:
    """One line per model whose ``configs/<config_name>.pbtxt`` serves plans that do not fit
    ``here`` (this GPU and this TensorRT)."""
    problems = []
    for config in sorted(repository.glob(f"*/configs/{config_name}.pbtxt")):
        text = config.read_text()
        if not re.search(r'platform:\s*"tensorrt_plan"', text):
            continue  # the ONNX through onnxruntime: builds its own engines
        model = config.parent.parent.name
        listed = dict(_CC_ENTRY.findall(text))
        plan = listed.get(here.compute_capability)
        key = parse_plan(plan) if plan else None
        if key is None:
            have = ", ".join(str(parse_plan(p)) for p in listed.values()) or "none"
            problems.append(f"{model}: no TensorRT plan for this GPU ({here}); plans: {have}")
        elif key.tensorrt != here.tensorrt:
            problems.append(f"{model}: its plan {plan} was built with TensorRT {key.tensorrt}, "
                            f"this image has {here.tensorrt}")  # fmt: skip
    return problems


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: start.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    repository = flag(argv, "--model-repository")
    config_name = flag(argv, "--model-config-name")
    if Path(argv[0]).name == "tritonserver" and repository and config_name == "tensorrt":
        cc = os.environ.get("RTMSERVE_COMPUTE_CAPABILITY") or local_compute_capability()
        trt = os.environ.get("RTMSERVE_TENSORRT") or local_tensorrt()
        if cc is None or trt is None:
            print("rtmserve: cannot tell this GPU's compute capability or TensorRT; TensorRT "
                  "plans are not checked", file=sys.stderr, flush=True)  # fmt: skip
        else:
            problems = plan_problems(Path(repository), config_name, PlanKey(cc, trt))
            for line in problems:
                print(f"rtmserve: refusing TensorRT plans: {line}", file=sys.stderr)
            if problems:
                print(
                    "rtmserve: build plans on this GPU (docker compose run --rm engines) or "
                    "serve the ONNX with TRITON_MODEL_CONFIG=gpu",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
    os.execvp(argv[0], argv)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
