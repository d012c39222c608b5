"""Why a model file could not be had; every message says what to do about it."""

from __future__ import annotations


class ModelUnavailable(RuntimeError):
    """The model file could not be found or downloaded; the message says how to supply it."""


class ChecksumMismatch(ValueError):
    """A file is not the one expected; the message names expected and found checksums."""

    def __init__(self, what: str, mismatches: list[tuple[str, str, str]], hint: str = "") -> None:
        self.mismatches = mismatches
        detail = "; ".join(f"expected {k} {exp}, found {got}" for k, exp, got in mismatches)
        super().__init__(f"checksum mismatch for {what}: {detail}" + (f". {hint}" if hint else ""))


class UnsafeArchive(ValueError):
    """An archive refused unextracted: members outside its folder, links, or more bytes than
    any model file (a zip bomb)."""


class ConversionUnavailable(RuntimeError):
    """A .pth checkpoint must be converted, but no converter was given (torch, training/)."""


TRAIN_EXTRA_HINT = "pip install 'rtmserve[train]'"
