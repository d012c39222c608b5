"""Check that an ONNX file has the signature a spec promises, and import users' own files.

The Triton configs and the pre/post-processing are written against the MMDeploy export
signatures (``input`` -> ``simcc_x``/``simcc_y`` for pose, ``dets``/``labels`` for detectors):
a file that differs would only fail later, inside Triton, with a far less helpful message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.core.specs import DetectorSpec, PoseSpec

from .catalogue import CATALOGUE, ModelEntry, ModelSpec, OneStageSpec, Source, get_entry

Dim = int | str | None

_NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}
_FLOAT_TYPES = frozenset(_NP_TYPES)
_INT_TYPES = frozenset(f"tensor({t})" for t in ("int64", "int32", "int16", "int8", "uint8"))
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[Dim, ...]  # ints are static, strings/None symbolic
    dtype: str  # onnxruntime's type string, e.g. "tensor(float)"

    def __str__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} [{dims}] {self.dtype}"


@dataclass(frozen=True)
class SignatureReport:
    """What was found; returned only when the file fits the spec."""

    path: Path
    kind: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    # output shapes measured on a zero batch of 1 (only when the declared ones were symbolic)
    run_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    dynamic_batch: bool = False
    notes: tuple[str, ...] = ()

    @property
    def ran(self) -> bool:
        return bool(self.run_shapes)


class SignatureMismatch(ValueError):
    """The ONNX file's inputs/outputs do not match the spec; the message lists both."""

    def __init__(self, path: Path, kind: str, problems: list[str], found: str) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path} does not fit a {kind} model:\n{lines}\nfound: {found}")


def _infos(args: list[Any]) -> tuple[TensorInfo, ...]:
    return tuple(TensorInfo(a.name, tuple(a.shape), a.type) for a in args)


def _dim_ok(found: Dim, expected: int) -> bool:
    return not isinstance(found, int) or found == expected


def _fmt(dims: tuple[Any, ...]) -> str:
    return "(" + ", ".join(str(d) for d in dims) + ")"


def _fmt_expected(dims: tuple[int | None, ...]) -> str:
    """Free dims shown as N (batch) and M (count)."""
    return _fmt(tuple(("N" if i == 0 else "M") if d is None else d for i, d in enumerate(dims)))


def check_onnx_signature(
    path: str | Path, spec: ModelSpec, *, label: str | None = None
) -> SignatureReport:
    """Load ``path`` with onnxruntime (CPU) and check it against ``spec``.

    Static dims are compared directly; when an output dim that matters is symbolic, a zero batch
    of 1 is run to measure it. Raises :class:`SignatureMismatch` listing expected vs found.
    ``label`` names the file in messages (when ``path`` is a temporary copy).
    """
    import onnxruntime as ort

    path = Path(path)
    kind = spec.kind
    shown = Path(label) if label else path
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise SignatureMismatch(shown, kind, [f"onnxruntime cannot load it: {exc}"], "-") from exc
    inputs, outputs = _infos(sess.get_inputs()), _infos(sess.get_outputs())
    found = "inputs " + "; ".join(map(str, inputs)) + " | outputs " + "; ".join(map(str, outputs))
    w, h = spec.input_size
    problems: list[str] = []
    notes: list[str] = []

    # --- the input: one float image batch (N, 3, H, W)
    if len(inputs) != 1:
        problems.append(f"expected 1 input (N,3,{h},{w}), found {len(inputs)}")
        raise SignatureMismatch(shown, kind, problems, found)
    inp = inputs[0]
    if inp.dtype not in _FLOAT_TYPES:
        problems.append(f"expected a float input, found {inp.dtype}")
    if len(inp.shape) != 4:
        problems.append(f"expected input rank 4 (N,3,{h},{w}), found {_fmt(inp.shape)}")
        raise SignatureMismatch(shown, kind, problems, found)
    _, c, ih, iw = inp.shape
    if not (_dim_ok(c, 3) and _dim_ok(ih, h) and _dim_ok(iw, w)):
        problems.append(f"expected input (N,3,{h},{w}), found {_fmt(inp.shape)}")
    dynamic_batch = not isinstance(inp.shape[0], int)

    # --- the outputs, by kind: name -> expected shape (None = any batch/count dim)
    by_name = {o.name: o for o in outputs}
    if isinstance(spec, PoseSpec):
        k = spec.num_keypoints
        expected = {
            "simcc_x": (None, k, round(w * spec.simcc_split_ratio)),
            "simcc_y": (None, k, round(h * spec.simcc_split_ratio)),
        }
        dtypes = {"simcc_x": _FLOAT_TYPES, "simcc_y": _FLOAT_TYPES}
    elif isinstance(spec, DetectorSpec):
        expected = {"dets": (None, None, 5), "labels": (None, None)}
        dtypes = {"dets": _FLOAT_TYPES, "labels": _INT_TYPES | _FLOAT_TYPES}
    elif isinstance(spec, OneStageSpec):
        expected = {"dets": (None, None, 5), "keypoints": (None, None, spec.num_keypoints, 3)}
        dtypes = {"dets": _FLOAT_TYPES, "keypoints": _FLOAT_TYPES}
        if set(expected) - set(by_name) and len(outputs) == 2:
            # RTMO consumers (rtmlib) read the two outputs by position; accept other names
            by_name = dict(zip(expected, outputs, strict=True))
            notes.append("outputs matched by position: " + ", ".join(o.name for o in outputs))
    else:  # pragma: no cover - ModelSpec is closed
        raise TypeError(f"unsupported spec {type(spec).__name__}")

    missing = [n for n in expected if n not in by_name]
    if missing:
        want = ", ".join(f"{n} {_fmt_expected(s)}" for n, s in expected.items())
        problems.append(f"expected outputs {want}; missing {', '.join(missing)}")
    if problems:
        raise SignatureMismatch(shown, kind, problems, found)
    extra = [o.name for o in outputs if o.name not in {by_name[n].name for n in expected}]
    if extra:
        notes.append(f"extra outputs ignored: {', '.join(extra)}")

    def shape_problems(shapes: dict[str, tuple[Dim, ...]]) -> list[str]:
        out = []
        for n, want in expected.items():
            got = shapes[n]
            if len(got) != len(want) or not all(
                e is None or _dim_ok(g, e) for g, e in zip(got, want, strict=False)
            ):
                out.append(f"expected {n} {_fmt_expected(want)}, found {_fmt(got)}")
        return out

    declared = {n: by_name[n].shape for n in expected}
    for n in expected:
        if by_name[n].dtype not in dtypes[n]:
            problems.append(
                f"expected {n} of a {'float' if n != 'labels' else 'numeric'} type, "
                f"found {by_name[n].dtype}"
            )
    problems += shape_problems(declared)
    if problems:
        raise SignatureMismatch(shown, kind, problems, found)

    # symbolic dims that the spec pins down (bins, keypoints, box width): measure them
    run_shapes: dict[str, tuple[int, ...]] = {}
    needs_run = any(
        e is not None and not isinstance(g, int)
        for n, want in expected.items()
        for g, e in zip(declared[n], want, strict=False)
    )
    if needs_run:
        batch = inp.shape[0] if isinstance(inp.shape[0], int) else 1
        x = np.zeros((batch, 3, h, w), dtype=_NP_TYPES.get(inp.dtype, np.float32))
        try:
            results = sess.run([by_name[n].name for n in expected], {inp.name: x})
        except Exception as exc:
            raise SignatureMismatch(
                shown, kind, [f"a zero batch of shape {x.shape} fails to run: {exc}"], found
            ) from exc
        run_shapes = {
            n: tuple(int(d) for d in r.shape) for n, r in zip(expected, results, strict=True)
        }
        problems += [p + " (measured on a zero batch of 1)" for p in shape_problems(run_shapes)]
        if problems:
            raise SignatureMismatch(shown, kind, problems, found)

    return SignatureReport(
        path=path,
        kind=kind,
        inputs=inputs,
        outputs=outputs,
        run_shapes=run_shapes,
        dynamic_batch=dynamic_batch,
        notes=tuple(notes),
    )


def import_model(
    name: str,
    file: str | Path,
    dest_dir: str | Path,
    spec: ModelSpec | None = None,
    *,
    like: str | None = None,
):
    """Install a user's file as ``dest_dir/<name>/model.onnx`` after checking it.

    - ``name`` is a catalogue name (and neither ``spec`` nor ``like`` given): the file must be
      the official artifact (ONNX, SDK zip or .pth), verified like a mirror hit; this is the
      offline way to supply an official model.
    - otherwise ``name`` is new: an ONNX file, served with ``spec`` or the spec of catalogue
      model ``like``; checked only by signature, and recorded as such in ``source.json``.

    Returns the :class:`~service.models.fetch.PulledModel`.
    """
    from . import fetch

    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"no such file: {file}")
    if spec is None and like is None and name in CATALOGUE:
        return fetch.install_file(CATALOGUE[name], file, dest_dir, origin=f"import:{file}")
    if name in CATALOGUE:
        raise ValueError(
            f"{name!r} is a catalogue model and stands for the official file; import your own "
            f"file under another name, e.g. `rtmserve models import my-{name} FILE --like {name}`"
        )
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-'")
    base = get_entry(like) if like is not None else None
    if spec is None:
        if base is None:
            raise ValueError(
                f"{name!r} is not a catalogue model: say which one it resembles with "
                f"--like CATALOGUE_NAME (one of {', '.join(CATALOGUE)})"
            )
        spec = base.spec
    if _is_zip(file):
        raise ValueError(f"{file} is a zip: extract the .onnx and import that")
    entry = ModelEntry(
        name=name,
        task=spec.kind,
        spec=spec,
        source=Source(url=file.resolve().as_uri(), format="onnx"),
        dataset="custom",
        summary=f"imported from {file.name}" + (f", like {base.name}" if base else ""),
    )
    return fetch.install_file(entry, file, dest_dir, origin=f"import:{file}", like=like)


def _is_zip(path: Path) -> bool:
    import zipfile

    return zipfile.is_zipfile(path)
