"""The model catalogue and a cache of verified ONNX files (pull, mirror, import).

``pull`` resolves a name through the cache, local mirrors and the official URL; ``import_model``
installs a user's file. Converting official ``.pth`` checkpoints needs torch: the command line
hands ``training.convert`` in as ``convert`` (this package never imports ``training``).
"""

from .cache import MODEL_FILE, CheckpointConverter, PulledModel, cached_model, list_cached
from .catalogue import CATALOGUE, ModelEntry, Source, UnknownModel, get_entry, list_entries
from .checksums import Checksums, Digests, file_digests, git_blob_sha1, sha256_file
from .errors import ChecksumMismatch, ConversionUnavailable, ModelUnavailable, UnsafeArchive
from .importer import import_model
from .mirror import mirror_dirs
from .pull import MIRROR_SETTING, pull

__all__ = [
    "CATALOGUE",
    "MIRROR_SETTING",
    "MODEL_FILE",
    "CheckpointConverter",
    "ChecksumMismatch",
    "Checksums",
    "ConversionUnavailable",
    "Digests",
    "ModelEntry",
    "ModelUnavailable",
    "PulledModel",
    "Source",
    "UnknownModel",
    "UnsafeArchive",
    "cached_model",
    "file_digests",
    "get_entry",
    "git_blob_sha1",
    "import_model",
    "list_cached",
    "list_entries",
    "mirror_dirs",
    "pull",
    "sha256_file",
]
