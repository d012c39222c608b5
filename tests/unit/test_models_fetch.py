"""Pulling models: cache, local mirrors (files, zips, unpacked zips), download, failures."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import stat
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rtmserve.cli.fallbacks import training_fallbacks
from service.core.specs import PoseSpec
from service.models import (
    MIRROR_SETTING,
    ChecksumMismatch,
    Checksums,
    ConversionUnavailable,
    ModelEntry,
    ModelUnavailable,
    Source,
    UnknownModel,
    UnsafeArchive,
    file_digests,
    mirror_dirs,
    pull,
)
from service.models import archive as model_archive
from service.settings import Settings
from tests.support.paths import MODELS_MIRROR
from tests.support.synthetic import write_synthetic_pose_onnx

STAGED = MODELS_MIRROR
RTMDET = STAGED / "rtmdet-nano_person_320x320_ort-end2end" / "end2end.onnx"
RTMDET_SHA256 = "b8585adb6d1352796f6e86337e09c3459b830645a7e7192d9381670bea2facbd"
YOLOX_SHA256 = "1450966de24902b18aada1a78913d7efd8fc8dcd51bd4d0d5591476bd4a38821"
needs_staged = pytest.mark.skipif(not RTMDET.is_file(), reason="staged models not present")

STEM = "tiny-pose_simcc-test-256x192-00000000_20990101"
URL = f"https://download.example.invalid/onnx_sdk/{STEM}.zip"


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MIRROR_SETTING, raising=False)


def _entry(url: str = URL, checksums: Checksums | None = None) -> ModelEntry:
    """A catalogue-style entry for an SDK zip the real catalogue does not list."""
    return ModelEntry(
        name="tiny-pose",
        task="pose",
        spec=PoseSpec(),
        source=Source(url=url, format="zip", member="end2end.onnx"),
        onnx_checksums=checksums or Checksums(),
        dataset="test",
        summary="synthetic pose model in an SDK-style zip",
    )


def _sdk_zip(path: Path, onnx: Path, folder: str = STEM) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(onnx, f"{folder}/end2end.onnx")
        zf.writestr(f"{folder}/deploy.json", "{}")
        zf.writestr(f"{folder}/pipeline.json", "{}")
    return path


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --------------------------------------------------------------------------- staged mirror


@needs_staged
def test_pull_rtmdet_from_staged_mirror_is_verified_and_idempotent(tmp_path: Path) -> None:
    dest = tmp_path / "models"
    m = pull("rtmdet-nano", dest, mirror=STAGED, allow_download=False)
    assert m.path == dest / "rtmdet-nano" / "model.onnx"
    assert m.sha256 == RTMDET_SHA256 == file_digests(m.path).sha256
    assert m.verified and not m.from_cache and m.origin == f"mirror:{RTMDET}"
    record = json.loads(m.source_json.read_text())
    assert record["url"].endswith("/rtmpose-cpu.zip") and record["sha256"] == RTMDET_SHA256
    assert record["origin"] == f"mirror:{RTMDET}" and record["verified"] and record["pulled_at"]
    assert record["expected"]["onnx"]["sha256"] == RTMDET_SHA256
    assert _all_files(dest) == [
        dest / "rtmdet-nano" / "model.onnx",
        dest / "rtmdet-nano" / "source.json",
    ]
    assert m.path.stat().st_mode & 0o777 == 0o644  # readable by a Triton running as another user

    mtime = m.path.stat().st_mtime_ns
    again = pull("rtmdet-nano", dest, allow_download=False)  # no mirror needed any more
    assert again.from_cache and again.path == m.path and again.sha256 == RTMDET_SHA256
    assert m.path.stat().st_mtime_ns == mtime


@needs_staged
def test_pull_yolox_through_env_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIRROR_SETTING, os.pathsep.join([str(tmp_path / "nowhere"), str(STAGED)]))
    mirror = Settings().model_mirror  # what `rtmserve models pull` and `prepare` pass on
    m = pull("yolox-nano-humanart", tmp_path / "models", mirror=mirror, allow_download=False)
    assert m.sha256 == YOLOX_SHA256 and m.verified
    assert m.origin.endswith("yolox_nano_8xb8-300e_humanart-40f6f0d0.onnx")
    assert pull("yolox-nano-humanart", tmp_path / "models", allow_download=False).from_cache


@needs_staged
def test_corrupted_cache_is_pulled_again(tmp_path: Path) -> None:
    m = pull("rtmdet-nano", tmp_path, mirror=STAGED, allow_download=False)
    m.path.write_bytes(b"corrupt")
    with pytest.raises(ModelUnavailable):
        pull("rtmdet-nano", tmp_path, allow_download=False)
    assert m.path.read_bytes() == b"corrupt"  # a failed pull does not touch what is there
    fixed = pull("rtmdet-nano", tmp_path, mirror=STAGED, allow_download=False)
    assert not fixed.from_cache and fixed.sha256 == RTMDET_SHA256


@needs_staged
def test_pull_from_official_bundle_zip(tmp_path: Path) -> None:
    """rtmpose-cpu.zip holds two end2end.onnx files; the member path picks the detector."""
    pose = write_synthetic_pose_onnx(tmp_path / "pose.onnx")
    bundle = tmp_path / "mirror" / "rtmpose-cpu.zip"
    bundle.parent.mkdir()
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.write(pose, "rtmpose-cpu/rtmpose-ort/rtmpose-m/end2end.onnx")
        zf.write(RTMDET, "rtmpose-cpu/rtmpose-ort/rtmdet-nano/end2end.onnx")
        zf.writestr("rtmpose-cpu/rtmpose-ort/rtmdet-nano/pipeline.json", "{}")
    m = pull("rtmdet-nano", tmp_path / "models", mirror=tmp_path / "mirror", allow_download=False)
    assert m.sha256 == RTMDET_SHA256 and m.verified and m.origin == f"mirror:{bundle}"
    record = json.loads(m.source_json.read_text())
    assert record["member"] == "rtmpose-cpu/rtmpose-ort/rtmdet-nano/end2end.onnx"
    assert record["source_sha256"] == file_digests(bundle).sha256


@needs_staged
def test_pull_from_unpacked_bundle(tmp_path: Path) -> None:
    target = tmp_path / "mirror" / "rtmpose-cpu" / "rtmpose-ort" / "rtmdet-nano" / "end2end.onnx"
    target.parent.mkdir(parents=True)
    target.write_bytes(RTMDET.read_bytes())
    m = pull("rtmdet-nano", tmp_path / "models", mirror=tmp_path / "mirror", allow_download=False)
    assert m.origin == f"mirror:{target}" and m.verified


# --------------------------------------------------------------------------- constructed entries


def test_pull_zip_by_official_name(tmp_path: Path) -> None:
    pose = write_synthetic_pose_onnx(tmp_path / "end2end.onnx")
    z = _sdk_zip(tmp_path / "mirror" / "sub" / f"{STEM}.zip", pose)
    entry = _entry(checksums=Checksums(sha256=file_digests(pose).sha256))
    m = pull(entry, tmp_path / "models", mirror=tmp_path / "mirror", allow_download=False)
    assert m.path == tmp_path / "models" / "tiny-pose" / "model.onnx"
    assert m.verified and m.origin == f"mirror:{z}"
    assert m.path.read_bytes() == pose.read_bytes()


def test_pull_renamed_zip_found_by_checksum(tmp_path: Path) -> None:
    pose = write_synthetic_pose_onnx(tmp_path / "end2end.onnx")
    z = _sdk_zip(tmp_path / "mirror" / "download (1).zip", pose, folder="whatever")
    entry = _entry(checksums=Checksums(git_sha1=file_digests(pose).git_sha1))
    m = pull(entry, tmp_path / "models", mirror=tmp_path / "mirror", allow_download=False)
    assert m.verified and m.origin == f"mirror:{z}"


def test_pull_unpacked_zip_without_published_checksum(tmp_path: Path) -> None:
    unpacked = tmp_path / "mirror" / STEM / "end2end.onnx"
    unpacked.parent.mkdir(parents=True)
    write_synthetic_pose_onnx(unpacked)
    dest = tmp_path / "models"
    m = pull(_entry(), dest, mirror=tmp_path / "mirror", allow_download=False)
    assert not m.verified and m.origin == f"mirror:{unpacked}"
    # nothing published: the recorded sha256 is what a later pull checks against
    again = pull(_entry(), dest, allow_download=False)
    assert again.from_cache and again.sha256 == m.sha256
    m.path.write_bytes(b"tampered")
    with pytest.raises(ModelUnavailable):
        pull(_entry(), dest, allow_download=False)


def test_wrong_checksum_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "mirror").mkdir()
    pose = write_synthetic_pose_onnx(tmp_path / "mirror" / f"{STEM}.onnx")  # rtmlib's naming
    wrong = "0" * 64
    dest = tmp_path / "models"
    with pytest.raises(ChecksumMismatch) as err:
        pull(
            _entry(checksums=Checksums(sha256=wrong)),
            dest,
            mirror=tmp_path / "mirror",
            allow_download=False,
        )
    msg = str(err.value)
    assert wrong in msg and file_digests(pose).sha256 in msg
    assert not dest.exists()


def test_wrong_checksum_inside_zip_leaves_nothing(tmp_path: Path) -> None:
    pose = write_synthetic_pose_onnx(tmp_path / "end2end.onnx")
    _sdk_zip(tmp_path / "mirror" / f"{STEM}.zip", pose)
    dest = tmp_path / "models"
    dest.mkdir()
    with pytest.raises(ChecksumMismatch, match="f" * 40):
        pull(
            _entry(checksums=Checksums(git_sha1="f" * 40)),
            dest,
            mirror=tmp_path / "mirror",
            allow_download=False,
        )
    assert _all_files(dest) == [] and list(dest.iterdir()) == []


def test_checkpoint_with_wrong_name_hash_is_refused_before_conversion(tmp_path: Path) -> None:
    if importlib.util.find_spec("torch") is None:  # without torch: ConversionUnavailable first
        pytest.skip("torch not installed")
    name = "rtmpose-m_simcc-test_420e-256x192-12345678_20990101.pth"
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / name).write_bytes(b"not really a checkpoint")
    entry = ModelEntry(
        name="pth-model",
        task="pose",
        spec=PoseSpec(),
        source=Source(
            url=f"https://download.example.invalid/{name}",
            format="pth",
            checksums=Checksums(sha256_prefix="12345678"),
        ),
        dataset="test",
        summary="",
        variant="m",
    )
    with pytest.raises(ConversionUnavailable, match="rtmserve\\[train\\]"):  # no converter given
        pull(entry, tmp_path / "models", mirror=tmp_path / "mirror", allow_download=False)
    convert = training_fallbacks().convert  # what the command line hands in
    with pytest.raises(ChecksumMismatch, match="12345678"):
        pull(entry, tmp_path / "models", mirror=tmp_path / "mirror", allow_download=False,
             convert=convert)  # fmt: skip
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
def test_checkpoint_is_converted_with_the_training_package(tmp_path: Path) -> None:
    """The .pth path end to end, with a random-weight checkpoint in the official layout."""
    torch = pytest.importorskip("torch")
    rtmpose = pytest.importorskip("training.models.rtmpose")
    pytest.importorskip("training.export")
    model = rtmpose.build_rtmpose("t", (192, 256))
    ckpt = tmp_path / "ckpt.pth"
    # meta as mmengine writes it: numpy arrays and scalars among the dataset's metadata
    dataset_meta = {
        "sigmas": np.full(17, 0.05, np.float32),
        "keypoint_colors": np.zeros((17, 3), np.uint8),
        "dataset_keypoint_weights": np.ones(17, np.float64),
        "num_keypoints": np.int64(17),
        "keypoint_id2name": {0: "nose"},
    }
    meta = {"epoch": 420, "cfg": "model = dict(...)", "dataset_meta": dataset_meta}
    torch.save({"meta": meta, "state_dict": model.state_dict()}, ckpt)
    tag = file_digests(ckpt).sha256[:8]
    name = f"rtmpose-tiny_simcc-test_420e-256x192-{tag}_20990101.pth"
    (tmp_path / "mirror").mkdir()
    ckpt.rename(tmp_path / "mirror" / name)
    entry = _pth_entry(name, tag)
    convert = training_fallbacks().convert
    m = pull(entry, tmp_path / "models", mirror=tmp_path / "mirror", allow_download=False,
             convert=convert)  # fmt: skip
    record = json.loads(m.source_json.read_text())
    # the 8-hex name tag matched, but 32 bits prove nothing: trusted as the first pull
    assert record["converted_from_checkpoint"] and not m.verified
    assert record["trust"] == "first pull"
    assert record["first_pull"]["source_sha256"] == record["source_sha256"]
    assert record["signature"]["outputs"] == [
        "simcc_x [batch, 17, 384] tensor(float)",
        "simcc_y [batch, 17, 512] tensor(float)",
    ]
    assert pull(entry, tmp_path / "models", allow_download=False).from_cache


# --------------------------------------------------------------------------- hostile files


def _pth_entry(name: str, tag: str) -> ModelEntry:
    return ModelEntry(
        name="pth-t",
        task="pose",
        spec=PoseSpec(),
        source=Source(
            url=f"https://download.example.invalid/{name}",
            format="pth",
            checksums=Checksums(sha256_prefix=tag),
        ),
        dataset="test",
        summary="",
        variant="t",
    )


def test_checkpoint_whose_pickle_runs_code_is_refused_unrun(tmp_path: Path) -> None:
    """The 8-hex tag in a checkpoint's name is no proof (2**32 tries): a file that matches it
    and would run code while unpickled is refused, and its code never runs."""
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"

    class RunsCode:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    ckpt = tmp_path / "ckpt.pth"
    torch.save({"meta": {"epoch": 420, "hook": RunsCode()}, "state_dict": {}}, ckpt)
    tag = file_digests(ckpt).sha256[:8]  # what an attacker grinds for
    name = f"rtmpose-tiny_simcc-test_420e-256x192-{tag}_20990101.pth"
    (tmp_path / "mirror").mkdir()
    ckpt.rename(tmp_path / "mirror" / name)
    convert = training_fallbacks().convert
    with pytest.raises(Exception) as err:  # any refusal; the marker is checked first
        pull(_pth_entry(name, tag), tmp_path / "models", mirror=tmp_path / "mirror",
             allow_download=False, convert=convert)  # fmt: skip
    assert not marker.exists(), "the checkpoint's pickle ran code"
    assert isinstance(err.value, ValueError) and "refused without loading them" in str(err.value)
    assert "posix.mkdir" in str(err.value)  # says what it wanted to call
    assert not (tmp_path / "models").exists()


def _zip_with(path: Path, members: dict[str, bytes], links: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize(
    "hostile",
    ["../../escape.onnx", f"{STEM}/../../escape.onnx", "/tmp/escape.onnx", "link"],
)
def test_archive_reaching_outside_its_folder_is_refused(tmp_path: Path, hostile: str) -> None:
    pose = write_synthetic_pose_onnx(tmp_path / "end2end.onnx").read_bytes()
    members = {f"{STEM}/end2end.onnx": pose}
    links: tuple[str, ...] = ()
    if hostile == "link":
        links = (f"{STEM}/deploy.json",)
    else:
        members[hostile] = b"x"
    z = _zip_with(tmp_path / "mirror" / f"{STEM}.zip", members, links)
    dest = tmp_path / "models"
    with pytest.raises(UnsafeArchive, match=r"outside the archive|is a link") as err:
        pull(_entry(), dest, mirror=tmp_path / "mirror", allow_download=False)
    assert str(z) in str(err.value)
    assert not dest.exists() and not list(tmp_path.rglob("escape.onnx"))


def test_zip_bomb_is_refused_before_it_is_unpacked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member that unpacks past the cap (2 GiB, an ONNX file's limit; lowered here so the
    test writes 8 MiB, not gigabytes) is refused from its declared size, unread."""
    monkeypatch.setattr(model_archive, "MAX_MEMBER_BYTES", 1 << 20)
    _zip_with(tmp_path / "mirror" / f"{STEM}.zip", {f"{STEM}/end2end.onnx": bytes(8 << 20)})
    dest = tmp_path / "models"
    with pytest.raises(UnsafeArchive, match="more than any model file"):
        pull(_entry(), dest, mirror=tmp_path / "mirror", allow_download=False)
    assert not dest.exists()


def test_first_pull_records_its_sums_and_a_changed_file_is_refused(tmp_path: Path) -> None:
    """Nothing published pins this zip: the first pull records its sha256 and the ONNX's
    beside the cached file, and a later pull of another file under the same name fails."""
    first = write_synthetic_pose_onnx(tmp_path / "first.onnx")
    other = write_synthetic_pose_onnx(tmp_path / "other.onnx", declare_output_shapes=False)
    z = _sdk_zip(tmp_path / "mirror" / f"{STEM}.zip", first)
    z_sha = file_digests(z).sha256
    dest = tmp_path / "models"
    m = pull(_entry(), dest, mirror=tmp_path / "mirror", allow_download=False)
    record = json.loads(m.source_json.read_text())
    assert not m.verified and record["trust"] == "first pull"
    pins = record["first_pull"]
    assert pins["source_sha256"] == z_sha and pins["sha256"] == file_digests(first).sha256

    m.path.unlink()  # the cache is lost; the mirror now holds another file
    _sdk_zip(z, other)
    with pytest.raises(ChecksumMismatch, match="recorded at the first pull") as err:
        pull(_entry(), dest, mirror=tmp_path / "mirror", allow_download=False)
    assert z_sha in str(err.value) and file_digests(z).sha256 in str(err.value)
    assert str(dest / "tiny-pose") in str(err.value)  # how to trust another file on purpose
    assert not m.path.exists()
    # the unpacked ONNX of the other file is refused too (pinned by the ONNX's own sum)
    z.unlink()
    (tmp_path / "mirror" / STEM).mkdir()
    (tmp_path / "mirror" / STEM / "end2end.onnx").write_bytes(other.read_bytes())
    with pytest.raises(ChecksumMismatch, match="recorded at the first pull"):
        pull(_entry(), dest, mirror=tmp_path / "mirror", allow_download=False)

    (tmp_path / "mirror" / STEM / "end2end.onnx").write_bytes(first.read_bytes())
    again = pull(_entry(), dest, mirror=tmp_path / "mirror", allow_download=False)
    assert again.sha256 == m.sha256
    assert json.loads(again.source_json.read_text())["first_pull"] == pins


@pytest.mark.parametrize("pinned_by", ["published", "first pull"])
def test_checksum_is_checked_before_the_archive_is_opened(tmp_path: Path, pinned_by: str) -> None:
    """A zip that fails its checksum is refused as such, before its members are looked at
    (this one also reaches outside its folder, which opening it would report instead)."""
    pose = write_synthetic_pose_onnx(tmp_path / "end2end.onnx")
    z = _sdk_zip(tmp_path / "mirror" / f"{STEM}.zip", pose)
    dest = tmp_path / "models"
    entry = _entry()
    if pinned_by == "published":
        published = Checksums(sha256=file_digests(z).sha256)
        entry = replace(entry, source=replace(entry.source, checksums=published))
    pull(entry, dest, mirror=tmp_path / "mirror", allow_download=False).path.unlink()
    _zip_with(z, {f"{STEM}/end2end.onnx": pose.read_bytes(), "../../escape.onnx": b"x"})
    with pytest.raises(ChecksumMismatch):
        pull(entry, dest, mirror=tmp_path / "mirror", allow_download=False)
    assert not (dest / "tiny-pose" / "model.onnx").exists()


# --------------------------------------------------------------------------- unavailable


def test_offline_without_mirror_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable) as err:
        pull("rtmpose-m", tmp_path, allow_download=False)
    msg = str(err.value)
    entry_url = (
        "https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/onnx_sdk/"
        "rtmpose-m_simcc-body7_pt-body7_420e-256x192-e48f03d0_20230504.zip"
    )
    assert entry_url in msg
    assert "99800164738d90c78002ba3c5939377856f12626" in msg
    assert f"{MIRROR_SETTING}=DIR" in msg and "rtmserve models import rtmpose-m FILE" in msg
    assert _all_files(tmp_path) == []


def test_empty_mirror_is_reported(tmp_path: Path) -> None:
    (tmp_path / "mirror").mkdir()
    with pytest.raises(ModelUnavailable, match="mirror"):
        pull("rtmo-s", tmp_path / "models", mirror=tmp_path / "mirror", allow_download=False)


def test_unknown_model(tmp_path: Path) -> None:
    with pytest.raises(UnknownModel):
        pull("rtmpose-xxl", tmp_path, allow_download=False)


def test_mirror_dirs_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert mirror_dirs(None) == [] and mirror_dirs(Settings().model_mirror) == []
    monkeypatch.setenv(MIRROR_SETTING, os.pathsep.join(["/a", "", "/b"]))
    assert mirror_dirs(Settings().model_mirror) == [Path("/a"), Path("/b")]
    assert mirror_dirs("/c") == [Path("/c")]
    assert mirror_dirs(["/d", Path("/e")]) == [Path("/d"), Path("/e")]


# --------------------------------------------------------------------------- download (loopback)


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served on 127.0.0.1 (stands in for download.openmmlab.com; no network)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_download_streams_verifies_and_renames(
    tmp_path: Path, http_dir: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, base = http_dir
    pose = write_synthetic_pose_onnx(tmp_path / "end2end.onnx")
    _sdk_zip(root / f"{STEM}.zip", pose)
    entry = _entry(url=f"{base}/{STEM}.zip", checksums=Checksums(sha256=file_digests(pose).sha256))
    dest = tmp_path / "models"
    m = pull(entry, dest)
    assert m.verified and m.origin == entry.source.url
    assert "downloading tiny-pose" in capsys.readouterr().err
    assert _all_files(dest) == [
        dest / "tiny-pose" / "model.onnx",
        dest / "tiny-pose" / "source.json",
    ]
    assert pull(entry, dest).from_cache


def test_download_error_is_model_unavailable_and_leaves_nothing(
    tmp_path: Path, http_dir: tuple[Path, str]
) -> None:
    _, base = http_dir
    dest = tmp_path / "models"
    with pytest.raises(ModelUnavailable, match="download failed") as err:
        pull(_entry(url=f"{base}/{STEM}.zip"), dest, progress=False)
    assert f"{base}/{STEM}.zip" in str(err.value)
    assert not dest.exists()


def test_downloaded_file_with_wrong_checksum_leaves_nothing(
    tmp_path: Path, http_dir: tuple[Path, str]
) -> None:
    root, base = http_dir
    pose = write_synthetic_pose_onnx(tmp_path / "end2end.onnx")
    _sdk_zip(root / f"{STEM}.zip", pose)
    dest = tmp_path / "models"
    with pytest.raises(ChecksumMismatch):
        pull(
            _entry(url=f"{base}/{STEM}.zip", checksums=Checksums(sha256="1" * 64)),
            dest,
            progress=False,
        )
    assert not dest.exists()
