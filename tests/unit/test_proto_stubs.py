"""The committed gRPC stubs are exactly what ``make proto`` generates from the .proto files."""

from __future__ import annotations

import subprocess
import sys

from tests.support.paths import REPO

COMMITTED = REPO / "service" / "grpc" / "gen"


def test_committed_stubs_match_a_fresh_generation(tmp_path):
    out = tmp_path / "gen"
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_protos.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    fresh = {p.name: p.read_text() for p in out.iterdir() if p.is_file()}
    committed = {p.name: p.read_text() for p in COMMITTED.iterdir() if p.is_file()}
    assert set(fresh) == set(committed), "stub files differ: run `make proto`"
    drifted = [name for name in sorted(fresh) if fresh[name] != committed[name]]
    assert not drifted, f"{drifted} drifted from proto/: run `make proto` and commit the result"


def test_stubs_describe_the_api():
    from service.grpc.gen import pose_pb2

    service = pose_pb2.DESCRIPTOR.services_by_name["PoseService"]
    assert pose_pb2.DESCRIPTOR.package == "rtmserve.v1"
    assert {m.name: (m.client_streaming, m.server_streaming) for m in service.methods} == {
        "Estimate": (False, False),
        "Stream": (True, True),
    }
