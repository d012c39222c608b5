"""Which TensorRT plan fits which GPU and TensorRT: the one naming of ``model.<key>.plan``.

An engine runs only on the GPU architecture (compute capability) and the TensorRT release it
was built with, and plans live on a volume that several GPUs may share. So every plan is named
by both, ``model.sm86-trt10.7.0.plan``; Triton picks the one for its GPU from the config's
``cc_model_filenames``, and a plan built for another TensorRT is never listed. Standard library
only: the engine builder (TensorRT image) and the Triton start check (Triton image) import it
without rtmserve's dependencies.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

# The one version variable of a deployment is the NGC release (TRITON_VERSION in .env): the
# Triton image and the TensorRT image that builds plans share it, hence their TensorRT.
DEFAULT_TRITON_RELEASE = "24.12"
TENSORRT_OF_RELEASE = {  # NGC's framework support matrix
    "24.08": "10.3.0",
    "24.09": "10.4.0",
    "24.10": "10.5.0",
    "24.11": "10.6.0",
    "24.12": "10.7.0",
    "25.01": "10.8.0",
    "25.02": "10.8.0",
}
MISSING_PLAN = "model.plan"  # never written: a GPU with no plan of its own fails to load
_PLAN = re.compile(r"model\.sm(?P<cc>\d+)-trt(?P<trt>\d+\.\d+\.\d+)\.plan\Z")


@dataclass(frozen=True, order=True)
class PlanKey:
    """``compute_capability`` as Triton writes it ("8.6"), ``tensorrt`` as "10.7.0"."""

    compute_capability: str
    tensorrt: str

    @property
    def filename(self) -> str:
        return f"model.sm{self.compute_capability.replace('.', '')}-trt{self.tensorrt}.plan"

    def __str__(self) -> str:
        return f"compute capability {self.compute_capability}, TensorRT {self.tensorrt}"


def tensorrt_release(version: str) -> str:
    """ "10.7.0.23" -> "10.7.0": engines are compatible within a patch release."""
    parts = version.split(".")
    if len(parts) < 3 or not all(p.isdigit() for p in parts[:3]):
        raise ValueError(f"not a TensorRT version: {version!r}")
    return ".".join(parts[:3])


def tensorrt_for_release(release: str) -> str:
    if release not in TENSORRT_OF_RELEASE:
        known = ", ".join(sorted(TENSORRT_OF_RELEASE))
        raise ValueError(f"unknown NGC release {release!r} (known: {known})")
    return TENSORRT_OF_RELEASE[release]


def parse_plan(path: Path | str) -> PlanKey | None:
    m = _PLAN.match(Path(path).name)
    if m is None:
        return None
    cc = m["cc"]
    return PlanKey(f"{cc[:-1]}.{cc[-1]}", m["trt"])


def plans_in(version_dir: Path) -> list[PlanKey]:
    found = (parse_plan(p) for p in version_dir.glob("model.*.plan"))
    return sorted(k for k in found if k is not None)


def usable_plans(version_dirs: list[Path], tensorrt: str) -> dict[str, str]:
    """{compute capability: plan file name} for the GPUs every version has a plan for, built
    with ``tensorrt``: what a ``tensorrt_plan`` config lists in ``cc_model_filenames``."""
    per_version = [{k.compute_capability for k in plans_in(d) if k.tensorrt == tensorrt}
                   for d in version_dirs]  # fmt: skip
    common = set.intersection(*per_version) if per_version else set()
    return {cc: PlanKey(cc, tensorrt).filename for cc in sorted(common)}


def local_compute_capability() -> str | None:
    """This machine's first GPU, from nvidia-smi (present wherever the NVIDIA runtime is)."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.strip().splitlines()[0].strip() if out.strip() else ""
    return first if re.fullmatch(r"\d+\.\d+", first) else None


def local_tensorrt() -> str | None:
    """This image's TensorRT: NGC images set ``TRT_VERSION``; else the library's file name."""
    env = os.environ.get("TRT_VERSION")
    if env:
        try:
            return tensorrt_release(env)
        except ValueError:
            pass
    for lib in sorted(glob.glob("/usr/lib/*/libnvinfer.so.*.*.*")):
        try:
            return tensorrt_release(lib.split("libnvinfer.so.", 1)[1])
        except ValueError:
            continue
    return None
