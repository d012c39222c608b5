"""PyTorch models whose parameter names match the official OpenMMLab checkpoints."""

from training.models.cspnext import CSPNeXt
from training.models.rtmpose import (
    VARIANTS,
    CheckpointMismatchError,
    RTMCCBlock,
    RTMCCHead,
    RTMPose,
    build_rtmpose,
    count_parameters,
    infer_build_args,
    load_official_state_dict,
    seeded_rtmpose,
)

__all__ = [
    "VARIANTS",
    "CSPNeXt",
    "CheckpointMismatchError",
    "RTMCCBlock",
    "RTMCCHead",
    "RTMPose",
    "build_rtmpose",
    "count_parameters",
    "infer_build_args",
    "load_official_state_dict",
    "seeded_rtmpose",
]
