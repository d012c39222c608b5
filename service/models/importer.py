"""Install a user's own file as a model: the official file offline, or a new model."""

from __future__ import annotations

import zipfile
from pathlib import Path

from service.core.specs import ModelSpec
from service.metadata import check_model_name

from .cache import CheckpointConverter, PulledModel, install_file
from .catalogue import CATALOGUE, ModelEntry, Source, get_entry


def import_model(
    name: str,
    file: str | Path,
    cache: str | Path,
    spec: ModelSpec | None = None,
    *,
    like: str | None = None,
    convert: CheckpointConverter | None = None,
) -> PulledModel:
    """Install ``file`` as ``cache/<name>/model.onnx`` after checking it.

    - ``name`` is a catalogue name (and neither ``spec`` nor ``like`` given): the file must be
      the official artifact (ONNX, SDK zip or .pth), verified like a mirror hit; this is the
      offline way to supply an official model.
    - otherwise ``name`` is new: an ONNX file, served with ``spec`` or the spec of catalogue
      model ``like``; checked only by signature, and recorded as such in ``source.json``.
    """
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"no such file: {file}")
    origin = f"import:{file}"
    if spec is None and like is None and name in CATALOGUE:
        return install_file(CATALOGUE[name], file, cache, origin, convert=convert)
    if name in CATALOGUE:
        raise ValueError(
            f"{name!r} is a catalogue model and stands for the official file; import your own "
            f"file under another name, e.g. `rtmserve models import my-{name} FILE --like {name}`"
        )
    check_model_name(name)
    base = get_entry(like) if like is not None else None
    if spec is None:
        if base is None:
            raise ValueError(
                f"{name!r} is not a catalogue model: say which one it resembles with "
                f"--like CATALOGUE_NAME (one of {', '.join(CATALOGUE)})"
            )
        spec = base.spec
    if zipfile.is_zipfile(file):
        raise ValueError(f"{file} is a zip: extract the .onnx and import that")
    entry = ModelEntry(
        name=name,
        task=spec.kind,
        spec=spec,
        source=Source(url=file.resolve().as_uri(), format="onnx"),
        dataset="custom",
        summary=f"imported from {file.name}" + (f", like {base.name}" if base else ""),
    )
    return install_file(entry, file, cache, origin, like=like, trust_first_pull=False)
