"""Make the runtime model repository hold the models ``serve`` needs.

For each default model: keep what the repository has and add a newly pulled official file as the
next version. Without official RTMPose weights (offline, no mirror), the default pose model is
the one trained and shipped with rtmserve; an explicitly chosen pose model can instead be
served as an untrained seeded export when allowed (labelled as such everywhere).

What needs torch (converting a ``.pth``, exporting a seeded stand-in) comes in as
``Fallbacks`` from the command line, which gets it from ``training``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from service.metadata import RECORD_FILE, read_record, write_defaults
from service.models import (
    CheckpointConverter,
    ConversionUnavailable,
    ModelUnavailable,
    PulledModel,
    get_entry,
    pull,
    sha256_file,
)
from service.models.catalogue import bundled_card
from service.repository.install import ensure_pipeline, install_model, refresh
from service.repository.register import register
from service.settings import OFFICIAL_POSE_MODEL, Settings

log = logging.getLogger(__name__)
# (RTMPose size, output ONNX, (width, height)) -> what the file is: training.convert provides it
SeededExport = Callable[[str, Path, tuple[int, int]], str]


@dataclass(frozen=True)
class Fallbacks:
    convert: CheckpointConverter | None = None
    seeded_export: SeededExport | None = None


@dataclass
class Prepared:
    repository: Path
    installed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _known_sha256(repository: Path, name: str) -> set[str]:
    path = repository / name / RECORD_FILE
    if not path.exists():
        return set()
    return {m.get("sha256", "") for m in read_record(path.parent).versions.values()}


def _serving_is_untrained(repository: Path, name: str) -> bool:
    record = read_record(repository / name)
    return not record.versions[record.serving_version].get("trained", True)


def _install_pulled(settings: Settings, name: str, pulled: PulledModel) -> int:
    meta = {
        "trained": True,
        "source": pulled.entry.source.url,
        "origin": pulled.origin,
        "sha256": pulled.sha256,
        "catalogue": pulled.entry.name,
    }
    return install_model(
        settings.repository_dir, name, pulled.spec, pulled.path, meta, settings.serving_options
    )


def _install_seeded(settings: Settings, name: str, export: SeededExport | None) -> int:
    entry = get_entry(name)
    if entry.task != "pose" or not entry.variant:
        raise ModelUnavailable(f"no untrained fallback exists for {name}")
    if export is None:
        raise ConversionUnavailable("exporting a seeded stand-in needs torch (rtmserve[train])")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.onnx"
        what = export(entry.variant, out, entry.spec.input_size)
        meta = {
            "trained": False,
            "source": f"{what}: NOT a trained model",
            "sha256": sha256_file(out),
        }
        return install_model(
            settings.repository_dir, name, entry.spec, out, meta, settings.serving_options
        )


def ensure_model(
    settings: Settings,
    name: str,
    report: Prepared,
    fallbacks: Fallbacks,
    untrained_ok: bool = False,
) -> None:
    """``name`` serves from the repository; a newly obtainable official file becomes the next
    version. Raises ``ModelUnavailable`` when nothing can be served (unless ``untrained_ok``:
    then a seeded export serves, labelled untrained)."""
    repo = settings.repository_dir
    present = (repo / name / RECORD_FILE).exists()
    if present and not _serving_is_untrained(repo, name):
        return
    try:
        pulled = pull(
            name,
            settings.models_dir,
            mirror=settings.model_mirror,
            allow_download=not settings.offline,
            progress=True,
            convert=fallbacks.convert,
        )
    except ModelUnavailable as exc:
        if not untrained_ok:
            raise
        if not present:
            log.warning("%s", exc)
            try:
                version = _install_seeded(settings, name, fallbacks.seeded_export)
            except ConversionUnavailable as conv:
                raise ModelUnavailable(f"{exc}\n\nNo untrained fallback either: {conv}") from exc
            report.installed.append(f"{name} v{version} (UNTRAINED seeded export)")
        report.warnings.append(
            f"{name} serves an UNTRAINED seeded export (random keypoints): its official "
            f"weights could not be obtained; `rtmserve models pull {name}` says how to supply them"
        )
        return
    if pulled.sha256 not in _known_sha256(repo, name):
        version = _install_pulled(settings, name, pulled)
        report.installed.append(f"{name} v{version} from {pulled.origin}")


def _bundled_notice(name: str, card: dict) -> str:
    return (
        f"{name} was trained by rtmserve on open data and is NOT the official RTMPose "
        f"({100 * card['evaluation']['ap']:.1f} AP on 110 COCO val2017 images, see "
        f"{card['card']}); `rtmserve models pull {OFFICIAL_POSE_MODEL}` installs the official one"
    )


def ensure_bundled_pose_model(settings: Settings, report: Prepared) -> str:
    """The pose model trained by this project and shipped in ``models/``, registered through
    the normal registration path (version 1 in a fresh repository)."""
    card = bundled_card()
    if card is None:
        raise ModelUnavailable("no pose model is bundled with this installation")
    name = card["name"]
    if not (settings.repository_dir / name / RECORD_FILE).exists():
        entry = get_entry(name)
        pulled = pull(entry, settings.models_dir, allow_download=False, progress=False)
        done = register(
            settings.repository_dir, name, pulled.path, card["evaluation"],
            settings.serving_options, triton=None, spec=entry.spec,
            extra_meta={"source": f"bundled with rtmserve ({card['card']})",
                        "sha256": pulled.sha256, "catalogue": name,
                        "notice": _bundled_notice(name, card)},
        )  # fmt: skip
        report.installed.append(f"{name} v{done.version} (bundled, trained by rtmserve)")
    return name


def ensure_pose_model(settings: Settings, report: Prepared, fallbacks: Fallbacks) -> str:
    """The pose model to serve by default, as ``prepare`` decides it.

    A pose model named in the settings must be available (or, with ``allow_untrained``, is
    served as a labelled seeded export). Unset: official RTMPose-m when its weights can be
    had, else the pose model trained and shipped with rtmserve.
    """
    if settings.pose_model:
        ensure_model(settings, settings.pose_model, report, fallbacks, settings.allow_untrained)
        return settings.pose_model
    try:
        ensure_model(settings, OFFICIAL_POSE_MODEL, report, fallbacks)
        return OFFICIAL_POSE_MODEL
    except ModelUnavailable as exc:
        name = ensure_bundled_pose_model(settings, report)
        first_line = str(exc).splitlines()[0]
        report.warnings.append(
            f"serving {name}, the pose model trained by rtmserve (not the official RTMPose; "
            f"see models/{name}/MODEL_CARD.md), because {first_line} "
            f"`rtmserve models pull {OFFICIAL_POSE_MODEL}` says how to supply it"
        )
        return name


def prepare_repository(settings: Settings, fallbacks: Fallbacks | None = None) -> Prepared:
    fallbacks = fallbacks or Fallbacks()
    repo = settings.repository_dir
    repo.mkdir(parents=True, exist_ok=True)
    report = Prepared(repo)
    refresh(repo, settings.serving_options)
    ensure_pipeline(repo, settings.serving_options)
    ensure_model(settings, settings.detector, report, fallbacks)
    pose = ensure_pose_model(settings, report, fallbacks)
    family_detector = getattr(read_record(repo / pose).parsed_spec, "detector", None)
    if family_detector:  # e.g. a hand model serves with the hand detector
        ensure_model(settings, family_detector, report, fallbacks)
    write_defaults(repo, detector=settings.detector, pose_model=pose)
    return report
