"""The model catalogue and a cache of verified ONNX files (pull, mirror, import).

Heavy dependencies (onnxruntime, torch) are imported only where used.
"""

from .catalogue import (
    CATALOGUE,
    ModelEntry,
    ModelSpec,
    OneStageSpec,
    Source,
    UnknownModel,
    get_entry,
    list_entries,
    model_spec_from_dict,
)
from .checksums import Checksums, Digests, file_digests, git_blob_sha1, sha256_file
from .cli import add_models_commands
from .convert import ConversionUnavailable, convert_checkpoint_to_onnx
from .fetch import (
    ENV_HOME,
    ENV_MIRROR,
    MODEL_FILE,
    SOURCE_FILE,
    ChecksumMismatch,
    ModelUnavailable,
    PulledModel,
    cached_model,
    install_file,
    list_cached,
    mirror_dirs,
    models_dir,
    pull,
    rtmserve_home,
)
from .importer import SignatureMismatch, SignatureReport, check_onnx_signature, import_model
from .synthetic import write_synthetic_pose_onnx

__all__ = [
    "CATALOGUE",
    "ENV_HOME",
    "ENV_MIRROR",
    "MODEL_FILE",
    "SOURCE_FILE",
    "ChecksumMismatch",
    "Checksums",
    "ConversionUnavailable",
    "Digests",
    "ModelEntry",
    "ModelSpec",
    "ModelUnavailable",
    "OneStageSpec",
    "PulledModel",
    "SignatureMismatch",
    "SignatureReport",
    "Source",
    "UnknownModel",
    "add_models_commands",
    "cached_model",
    "check_onnx_signature",
    "convert_checkpoint_to_onnx",
    "file_digests",
    "get_entry",
    "git_blob_sha1",
    "import_model",
    "install_file",
    "list_cached",
    "list_entries",
    "mirror_dirs",
    "model_spec_from_dict",
    "models_dir",
    "pull",
    "rtmserve_home",
    "sha256_file",
    "write_synthetic_pose_onnx",
]
