"""Generate the Python gRPC stubs of ``proto/`` into ``service/grpc/gen/`` (``make proto``).

    python tools/gen_protos.py [--out DIR]

protoc names modules after the proto's path (``rtmserve.v1.pose_pb2``) while the committed stubs
live in the ``service.grpc.gen`` package, so the one import between them is made relative. The
stubs embed the generator's version, which is why ``grpcio-tools`` is pinned in the ``dev``
extra; ``tests/test_proto_stubs.py`` regenerates into a temporary folder and fails on any drift.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PROTOS = ("rtmserve/v1/pose.proto",)
DEFAULT_OUT = ROOT / "service" / "grpc" / "gen"
INIT = '"""Generated gRPC stubs (tools/gen_protos.py, ``make proto``): do not edit."""\n'


def _protoc(args: list[str]) -> None:
    from grpc_tools import protoc  # dev extra: only needed to generate

    include = str(resources.files("grpc_tools") / "_proto")
    code = protoc.main(["protoc", f"-I{PROTO_ROOT}", f"-I{include}", *args])
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")


def generate(out: Path) -> list[Path]:
    """Write ``__init__.py`` and, per proto, ``*_pb2.py``, ``*_pb2.pyi``, ``*_pb2_grpc.py``."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "__init__.py"]
    written[0].write_text(INIT)
    with tempfile.TemporaryDirectory() as tmp:
        _protoc([f"--python_out={tmp}", f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", *PROTOS])
        for proto in PROTOS:
            package, stem = Path(proto).parent.as_posix().replace("/", "."), Path(proto).stem
            for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
                source = Path(tmp) / Path(proto).parent / f"{stem}{suffix}"
                text = re.sub(
                    rf"^from {re.escape(package)} import ",
                    "from . import ",
                    source.read_text(),
                    flags=re.M,
                )
                target = out / source.name
                target.write_text(text)
                written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    args = parser.parse_args(argv)
    if args.out.resolve() == DEFAULT_OUT.resolve() and DEFAULT_OUT.exists():
        shutil.rmtree(DEFAULT_OUT)  # no stale module of a renamed proto survives
    for path in generate(args.out):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
