"""The model catalogue, checksum helpers, ONNX signature checks, import and `models list`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from rtmserve.cli import main as cli_main
from service.core.contract import SignatureMismatch, check_onnx_signature
from service.core.specs import (
    BGR_MEAN,
    BGR_STD,
    DetectorSpec,
    OneStageSpec,
    PoseSpec,
    spec_from_dict,
)
from service.models import (
    CATALOGUE,
    MIRROR_SETTING,
    ChecksumMismatch,
    Checksums,
    UnknownModel,
    file_digests,
    get_entry,
    git_blob_sha1,
    import_model,
)
from service.models.catalogue import ModelEntry, bundled_card
from tests.support.paths import MODELS_MIRROR
from tests.support.synthetic import write_synthetic_pose_onnx

STAGED = MODELS_MIRROR
RTMDET = STAGED / "rtmdet-nano_person_320x320_ort-end2end" / "end2end.onnx"
RTMDET_SHA256 = "b8585adb6d1352796f6e86337e09c3459b830645a7e7192d9381670bea2facbd"
needs_staged = pytest.mark.skipif(not RTMDET.is_file(), reason="staged models not present")


@pytest.fixture(autouse=True)
def _no_env_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MIRROR_SETTING, raising=False)


@pytest.fixture
def pose_onnx(tmp_path: Path) -> Path:
    return write_synthetic_pose_onnx(tmp_path / "tiny_pose.onnx")


# --------------------------------------------------------------------------- catalogue


def _official() -> list[ModelEntry]:
    """Catalogue entries from OpenMMLab (not the model bundled in models/)."""
    bundled = bundled_card()
    return [e for e in CATALOGUE.values() if not bundled or e.name != bundled["name"]]


def test_bundled_model_is_catalogued_from_its_card() -> None:
    card = bundled_card()
    if card is None:
        pytest.skip("no model bundled in models/")
    entry = get_entry(card["name"])
    assert entry.source.url == card["file"].as_uri() and entry.task == "pose"
    assert entry.onnx_checksums.sha256 == card["sha256"]
    assert entry.spec == PoseSpec(input_size=tuple(card["input_size"]), crop=card["crop"])


def test_catalogue_names() -> None:
    assert {e.name for e in _official()} == {
        "rtmdet-nano",
        "yolox-nano-humanart",
        "rtmpose-t",
        "rtmpose-s",
        "rtmpose-m",
        "rtmpose-l",
        "rtmpose-t-aic-coco",
        "rtmpose-s-aic-coco",
        "rtmpose-m-aic-coco",
        "rtmpose-l-aic-coco",
        "rtmo-s",
        "rtmo-m",
        "rtmo-l",
        # the other families (tests/unit/test_keypoint_sets.py)
        "rtmdet-nano-hand",
        "yolox-nano-coco80",
        "rtmpose-m-384",
        "rtmpose-l-384",
        "rtmpose-m-384-aic-coco",
        "rtmpose-l-384-aic-coco",
        "rtmpose-x-384",
        "rtmpose-s-halpe26",
        "rtmpose-m-halpe26",
        "rtmpose-x-halpe26",
        "rtmpose-m-wholebody",
        "rtmpose-l-wholebody",
        "rtmw-l-m",
        "rtmw-x-l",
        "rtmpose-m-hand",
        "rtmpose-m-ap10k",
        "rtmpose-m-face106",
        "rtmpose-s-pruned",
    }


def test_entries_point_at_openmmlab_and_are_consistent() -> None:
    for e in _official():
        if not e.released:  # announced, no file: the entry points at its config
            assert e.source.url.startswith("https://github.com/open-mmlab/mmpose/")
            continue
        megvii = e.spec.kind == "detector" and e.spec.head == "yolox"  # Megvii's own release
        home = "https://github.com/Megvii-BaseDetection/YOLOX/releases/" if megvii else (
            "https://download.openmmlab.com/mmpose/v1/projects/")  # fmt: skip
        if not e.convertible:  # MMRazor's pruned RTMPose-s
            home = "https://download.openmmlab.com/mmrazor/v1/pruning/"
        assert e.source.url.startswith(home), e.name
        assert e.spec.kind == e.task
        if e.task == "pose" and e.family == "body" and e.input_hw == "256x192":
            assert e.spec == PoseSpec()
            assert e.input_hw == "256x192"
        if e.source.format == "zip":
            assert e.source.filename.endswith(".zip") and e.source.member
    det = get_entry("rtmdet-nano")
    assert det.spec == DetectorSpec()
    assert det.spec.input_size == (320, 320) and det.spec.mean == BGR_MEAN
    assert det.spec.std == BGR_STD and det.spec.score_thr == 0.05 and not det.spec.batchable
    assert det.source.url.endswith("/rtmpose/rtmpose-cpu.zip")
    assert det.onnx_checksums.sha256 == RTMDET_SHA256
    yolox = get_entry("yolox-nano-humanart")
    assert yolox.spec.input_size == (416, 416)
    assert yolox.spec.mean == (0, 0, 0) and yolox.spec.std == (1, 1, 1) and not yolox.spec.to_rgb
    assert "yolox_nano_8xb8-300e_humanart-40f6f0d0.onnx" in yolox.official_names
    rtmo = get_entry("rtmo-m")
    assert rtmo.task == "one-stage" and isinstance(rtmo.spec, OneStageSpec)
    assert rtmo.spec.input_size == (640, 640) and rtmo.spec.pad_value == 114
    assert rtmo.spec.mean == (0, 0, 0) and rtmo.spec.std == (1, 1, 1)
    assert (rtmo.spec.score_thr, rtmo.spec.nms_thr) == (0.1, 0.65)
    assert "/rtmo/onnx_sdk/rtmo-m_" in rtmo.source.url


def test_body7_pose_git_blob_ids() -> None:
    assert get_entry("rtmpose-t").onnx_checksums.git_sha1 == (
        "7b0ba9f6c5129dc1bce2dbe48b0fea796970e642"
    )
    assert get_entry("rtmpose-s").onnx_checksums.git_sha1 == (
        "484074be46b708d90c06c1b58cc418f6269cc88b"
    )
    assert get_entry("rtmpose-m").onnx_checksums.git_sha1 == (
        "99800164738d90c78002ba3c5939377856f12626"
    )
    assert not get_entry("rtmpose-l").onnx_checksums.known
    for v, tag in zip("tsml", ("026a1439", "acd4a1ef", "e48f03d0", "4dba18fc"), strict=True):
        assert get_entry(f"rtmpose-{v}").source.filename == (
            f"rtmpose-{v}_simcc-body7_pt-body7_420e-256x192-{tag}_20230504.zip"
        )


def test_checkpoints_are_checked_by_the_hash_in_their_name() -> None:
    for v in "tsml":
        e = get_entry(f"rtmpose-{v}-aic-coco")
        assert e.source.format == "pth" and e.variant == v
        tag = re.search(r"-([0-9a-f]{8})_\d{8}\.pth$", e.source.filename).group(1)
        assert e.source.checksums.sha256_prefix == tag
    assert get_entry("rtmpose-t-aic-coco").source.filename.startswith("rtmpose-tiny_")
    assert get_entry("rtmpose-m-aic-coco").source.filename == (
        "rtmpose-m_simcc-aic-coco_pt-aic-coco_420e-256x192-63eb25f7_20230126.pth"
    )


def test_every_entry_is_pinned_by_a_full_checksum_or_its_first_pull() -> None:
    """No entry counts a file as proven by the 8-hex name tag (32 bits): each has a full
    published digest, or says its first pull is trusted (and recorded)."""
    trust = {e.name: e.trust for e in CATALOGUE.values()}
    assert set(trust.values()) <= {"published checksum", "first pull"}
    for name in ("rtmdet-nano", "yolox-nano-humanart", "rtmpose-t", "rtmpose-s", "rtmpose-m"):
        assert trust[name] == "published checksum", name
    for e in CATALOGUE.values():
        if e.source.format == "pth":  # the name tag alone: the converted ONNX is not pinned
            assert e.trust == "first pull" and e.to_dict()["trust"] == "first pull", e.name
    assert trust["rtmpose-l"] == "first pull"  # its blob is missing from every snapshot
    assert not Checksums(sha256_prefix="63eb25f7").strong


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(UnknownModel, match="rtmpose-m"):
        get_entry("rtmpose-mm")


def test_specs_round_trip_through_json() -> None:
    for e in CATALOGUE.values():
        data = json.loads(json.dumps(e.spec.to_dict()))
        assert spec_from_dict(data) == e.spec


# --------------------------------------------------------------------------- checksums


def test_git_blob_sha1_matches_git_hash_object(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    f = tmp_path / "blob.bin"
    f.write_bytes(b"hello\x00world\n" * 1000)
    expected = subprocess.run(
        ["git", "hash-object", str(f)], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert git_blob_sha1(f) == expected
    d = file_digests(f)
    assert d.sha256 == hashlib.sha256(f.read_bytes()).hexdigest() and d.size == 12000


def test_empty_file_digests(tmp_path: Path) -> None:
    f = tmp_path / "empty"
    f.write_bytes(b"")
    assert git_blob_sha1(f) == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob


@needs_staged
def test_staged_rtmdet_sha256() -> None:
    assert file_digests(RTMDET).sha256 == RTMDET_SHA256


# --------------------------------------------------------------------------- signatures


@needs_staged
def test_rtmdet_is_a_detector() -> None:
    report = check_onnx_signature(RTMDET, DetectorSpec())
    assert report.kind == "detector" and report.dynamic_batch
    # dets' last dim is symbolic in this export: measured on a zero batch
    assert report.ran and report.run_shapes["dets"][-1] == 5


@needs_staged
def test_rtmdet_is_not_a_pose_model() -> None:
    with pytest.raises(SignatureMismatch) as err:
        check_onnx_signature(RTMDET, PoseSpec())
    msg = str(err.value)
    assert "simcc_x" in msg and "simcc_y" in msg and "dets" in msg  # expected and found


@pytest.mark.parametrize("declared", [True, False])
def test_synthetic_pose_model_fits(tmp_path: Path, declared: bool) -> None:
    path = write_synthetic_pose_onnx(tmp_path / "p.onnx", declare_output_shapes=declared)
    report = check_onnx_signature(path, PoseSpec())
    assert report.ran is not declared
    if not declared:
        assert report.run_shapes == {"simcc_x": (1, 17, 384), "simcc_y": (1, 17, 512)}


def test_pose_model_of_another_size_is_refused(pose_onnx: Path) -> None:
    with pytest.raises(SignatureMismatch, match=r"expected input \(N,3,384,288\)"):
        check_onnx_signature(pose_onnx, PoseSpec(input_size=(288, 384)))
    with pytest.raises(SignatureMismatch, match=r"expected simcc_x \(N, 17, 576\)"):
        check_onnx_signature(pose_onnx, PoseSpec(simcc_split_ratio=3.0))


def test_pose_model_is_not_a_detector(pose_onnx: Path) -> None:
    with pytest.raises(SignatureMismatch, match="missing dets, labels"):
        check_onnx_signature(pose_onnx, DetectorSpec(input_size=(192, 256)))


def test_garbage_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "junk.onnx"
    f.write_bytes(b"not a model")
    with pytest.raises(SignatureMismatch, match="cannot load"):
        check_onnx_signature(f, PoseSpec())


# --------------------------------------------------------------------------- import


@needs_staged
def test_import_rtmdet_as_a_new_detector(tmp_path: Path) -> None:
    m = import_model("my-det", RTMDET, tmp_path, like="rtmdet-nano")
    assert m.path == tmp_path / "my-det" / "model.onnx" and m.sha256 == RTMDET_SHA256
    assert not m.verified  # a user's file: only its signature was checked
    record = json.loads(m.source_json.read_text())
    assert record["like"] == "rtmdet-nano" and record["spec"]["kind"] == "detector"
    assert record["origin"] == f"import:{RTMDET}"


@needs_staged
def test_import_rtmdet_as_pose_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    dest = tmp_path / "cache"
    with pytest.raises(SignatureMismatch) as err:
        import_model("my-pose", RTMDET, dest, like="rtmpose-m")
    assert "simcc_x" in str(err.value) and str(RTMDET) in str(err.value)
    assert not dest.exists()


@needs_staged
def test_import_official_file_under_its_catalogue_name(tmp_path: Path) -> None:
    m = import_model("rtmdet-nano", RTMDET, tmp_path)
    assert m.verified and m.sha256 == RTMDET_SHA256


def test_import_other_file_under_catalogue_name_is_refused(tmp_path: Path, pose_onnx: Path) -> None:
    with pytest.raises(ChecksumMismatch) as err:
        import_model("rtmpose-m", pose_onnx, tmp_path)
    msg = str(err.value)
    assert "99800164738d90c78002ba3c5939377856f12626" in msg and git_blob_sha1(pose_onnx) in msg
    assert list(tmp_path.iterdir()) == [pose_onnx]


def test_import_under_catalogue_name_without_published_checksum(
    tmp_path: Path, pose_onnx: Path
) -> None:
    m = import_model("rtmpose-l", pose_onnx, tmp_path / "cache")
    assert not m.verified and m.path.is_file()
    # trusted on first use: the same file again is fine, another one is refused
    assert import_model("rtmpose-l", pose_onnx, tmp_path / "cache").sha256 == m.sha256
    other = write_synthetic_pose_onnx(tmp_path / "other.onnx", declare_output_shapes=False)
    with pytest.raises(ChecksumMismatch, match="recorded at the first pull"):
        import_model("rtmpose-l", other, tmp_path / "cache")
    assert file_digests(m.path).sha256 == m.sha256


def test_own_model_imported_under_a_new_name_may_be_replaced(
    tmp_path: Path, pose_onnx: Path
) -> None:
    first = import_model("my-pose", pose_onnx, tmp_path / "cache", like="rtmpose-m")
    other = write_synthetic_pose_onnx(tmp_path / "other.onnx", declare_output_shapes=False)
    again = import_model("my-pose", other, tmp_path / "cache", like="rtmpose-m")
    assert again.sha256 != first.sha256 == file_digests(pose_onnx).sha256
    record = json.loads(again.source_json.read_text())
    assert record["trust"].startswith("signature only") and record["first_pull"] is None


def test_import_new_name_needs_like(tmp_path: Path, pose_onnx: Path) -> None:
    with pytest.raises(ValueError, match="--like"):
        import_model("my-pose", pose_onnx, tmp_path)
    with pytest.raises(ValueError, match="catalogue model"):
        import_model("rtmpose-m", pose_onnx, tmp_path, like="rtmpose-s")
    with pytest.raises(ValueError, match="invalid model name"):
        import_model("../evil", pose_onnx, tmp_path, like="rtmpose-s")


def test_import_with_explicit_spec(tmp_path: Path) -> None:
    spec = PoseSpec(input_size=(288, 384))
    f = write_synthetic_pose_onnx(tmp_path / "big.onnx", spec)
    m = import_model("pose-384", f, tmp_path / "cache", spec)
    assert m.spec == spec


# --------------------------------------------------------------------------- CLI


def test_cli_list_shows_catalogue_and_cache(
    tmp_path: Path, pose_onnx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["models", "--home", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    for name, e in CATALOGUE.items():
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert e.task in line and e.input_hw in line and e.source.url in line
        assert line.split()[-2] == "no"  # CACHED (DATASET may hold spaces)
    assert (
        cli_main(
            [
                "models",
                "import",
                "my-pose",
                str(pose_onnx),
                "--like",
                "rtmpose-m",
                "--home",
                str(tmp_path),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert cli_main(["models", "--home", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^my-pose\s+pose\s+256x192\s+custom .* yes ", out, re.M)


def test_cli_import_error_exit_code(
    tmp_path: Path, pose_onnx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = cli_main(
        [
            "models",
            "--home",
            str(tmp_path),
            "import",
            "my-det",
            str(pose_onnx),
            "--like",
            "rtmdet-nano",
        ]
    )
    assert rc == 1
    assert "does not fit a detector model" in capsys.readouterr().err


def test_cli_home_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RTMSERVE_HOME", str(tmp_path / "h"))
    assert cli_main(["models", "list"]) == 0
    assert f"cache: {tmp_path / 'h' / 'models'}" in capsys.readouterr().out


def test_the_catalogue_is_data_checked_against_its_schema(tmp_path):
    """catalogue.json is the catalogue: a typo in a field, an unknown family or keypoint set, a
    spec field the kind lacks or a name listed twice is refused when it is read."""
    import json

    import pydantic

    from service.models.catalogue import CATALOGUE_FILE, load_catalogue

    data = json.loads(CATALOGUE_FILE.read_text())
    assert len(load_catalogue()) == len(data["models"])
    good = data["models"][2]

    def refused(*models: dict) -> str:
        path = tmp_path / "catalogue.json"
        path.write_text(json.dumps({"models": list(models)}))
        with pytest.raises((pydantic.ValidationError, ValueError, KeyError)) as exc:
            load_catalogue(path)
        return str(exc.value)

    assert "datset" in refused({**good, "datset": "x"})
    assert "family" in refused({**good, "family": "bodyy"})
    assert "nope" in refused({**good, "spec": {"keypoint_set": "nope"}})
    assert "heads" in refused({**good, "spec": {"heads": "yolox"}})
    assert "listed twice" in refused(good, good)
