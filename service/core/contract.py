"""The ONNX I/O contract every served model keeps, and the check that a file keeps it.

Tensor names and shapes follow the MMDeploy exports (``input`` -> ``simcc_x``/``simcc_y`` for
pose, ``dets``/``labels`` for detectors, ``dets``/``keypoints`` for RTMO); the Triton configs,
the pipeline model and the exporter in ``training/`` are written against them, so a file that
differs is refused at import with both signatures side by side instead of failing later
inside Triton. Also here: the names of the pipeline model's tensors and how onnxruntime
sessions are opened (the Triton Python backend, the in-process baseline and the tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .specs import POSE_MAX_BATCH, DetectorSpec, ModelSpec, OneStageSpec, PoseSpec

__all__ = ["POSE_MAX_BATCH"]  # re-exported: the batch the contract's pose models take

INPUT = "input"
POSE_OUTPUTS = ("simcc_x", "simcc_y")
DETECTOR_OUTPUTS = ("dets", "labels")
YOLOX_INPUT, YOLOX_OUTPUTS = "images", ("output",)  # Megvii's export (service.core.yolox)
ONE_STAGE_OUTPUTS = ("dets", "keypoints")
PIPELINE_MODEL = "pose_pipeline"
# the same pipeline, one low-priority instance: copies of live requests for a candidate on
# trial (service.app.trials), so that a slow, hung or crashed copy never holds the instances
# that answer clients, and the OS scheduler lets client requests go first
COPY_PIPELINE_MODEL = "pose_pipeline_copy"
COPY_PIPELINE_NICE = 10
RECORD_FILE = "rtmserve.json"  # a model's record in the runtime repository (service.metadata)


def io_names(spec: ModelSpec) -> tuple[str, tuple[str, ...]]:
    """The input and output tensor names a model of ``spec`` has."""
    if isinstance(spec, DetectorSpec):
        return (YOLOX_INPUT, YOLOX_OUTPUTS) if spec.head == "yolox" else (INPUT, DETECTOR_OUTPUTS)
    return INPUT, POSE_OUTPUTS if isinstance(spec, PoseSpec) else ONE_STAGE_OUTPUTS


def session(path: str | Path, threads: int = 0, *, quiet: bool = False):
    """A CPU onnxruntime session: ``threads`` intra-op threads (0: all cores), one inter-op,
    and threads that sleep when idle. onnxruntime's threads spin after each run by default:
    with a detector and a pose model side by side (in one process, or in Triton's stubs) each
    session's spinning threads steal the cores the other one needs (on 2 cores the detector
    burnt 33 CPU-ms per image for 10 of work)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if quiet:
        options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


Dim = int | str | None

_NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}
_FLOAT_TYPES = frozenset(_NP_TYPES)
_INT_TYPES = frozenset(f"tensor({t})" for t in ("int64", "int32", "int16", "int8", "uint8"))


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
    path = Path(path)
    kind = spec.kind
    shown = Path(label) if label else path
    try:
        sess = session(path, quiet=True)
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
        sx, sy = POSE_OUTPUTS
        expected = {
            sx: (None, k, round(w * spec.simcc_split_ratio)),
            sy: (None, k, round(h * spec.simcc_split_ratio)),
        }
        dtypes = {sx: _FLOAT_TYPES, sy: _FLOAT_TYPES}
    elif isinstance(spec, DetectorSpec) and spec.head == "yolox":
        from .yolox import anchors

        (out,) = YOLOX_OUTPUTS  # (batch, anchors, 5 + classes)
        expected = {out: (None, len(anchors(spec.input_size)[0]), None)}
        dtypes = {out: _FLOAT_TYPES}
    elif isinstance(spec, DetectorSpec):
        dets, labels = DETECTOR_OUTPUTS
        expected = {dets: (None, None, 5), labels: (None, None)}
        dtypes = {dets: _FLOAT_TYPES, labels: _INT_TYPES | _FLOAT_TYPES}
    elif isinstance(spec, OneStageSpec):
        dets, kpts = ONE_STAGE_OUTPUTS
        expected = {dets: (None, None, 5), kpts: (None, None, spec.num_keypoints, 3)}
        dtypes = {dets: _FLOAT_TYPES, kpts: _FLOAT_TYPES}
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
