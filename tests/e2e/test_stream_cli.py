"""``rtmserve stream`` as a user runs it: a real process streaming a folder of frames."""

from __future__ import annotations

import json
import subprocess

import cv2
import pytest

from rtmserve.launch import RTMSERVE, free_port
from tests.support.streaming import clip_images, write_video


@pytest.fixture(scope="module")
def frame_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    for i, image in enumerate(clip_images(10)):
        cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    (folder / "notes.txt").write_text("not a frame")
    return folder


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([RTMSERVE, "stream", *args], capture_output=True, text=True, timeout=300)


def test_stream_a_folder_of_frames(service, frame_dir, tmp_path):
    out = tmp_path / "poses.ndjson"
    server = f"127.0.0.1:{service.grpc_port}"
    done = run_cli(str(frame_dir), "--server", server, "--ndjson", str(out), "--det-interval", "5",
                   "--fps", "28", "--no-smoothing")  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    assert len(printed) == 11 and printed[0].startswith("frame     0") and " det " in printed[0]
    assert "10 frames in" in printed[-1] and "frames/s (0 frame errors)" in printed[-1]
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame_index"] for r in results] == list(range(10))
    assert [r["timestamp"] for r in results] == pytest.approx([i / 28 for i in range(10)])
    assert [r["detected"] for r in results] == [i % 5 == 0 for i in range(10)]
    assert results[0]["image"]["format"] == "png" and results[0]["persons"]


def test_stream_a_video_file_quietly(service, tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(write_video(clip_images(6), "mp4", "libx264"))
    server = f"127.0.0.1:{service.grpc_port}"
    done = run_cli(str(video), "--server", server, "--quiet", "--jpeg", "90")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("6 frames in") and len(done.stdout.splitlines()) == 1
    # not a terminal: progress as plain lines on stderr, the last one complete
    assert done.stderr.strip().splitlines()[-1].startswith("stream: 6/6 frames"), done.stderr


def test_unreachable_server_and_missing_source_fail_clearly(frame_dir, tmp_path):
    down = run_cli(str(frame_dir), "--server", f"127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr
    missing = run_cli(str(tmp_path / "nope.mp4"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
