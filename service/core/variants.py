"""The RTMPose sizes of the OpenMMLab model zoo: described once, for the catalogue (what a
pulled ``.pth`` is rebuilt as, the parameters it lists) and for ``training/`` (the network it
builds). ``n`` is rtmserve's own: RTMDet-nano's backbone under the RTMCC head."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RTMPoseSize:
    deepen_factor: float
    widen_factor: float
    head_in_channels: int
    published_params_m: float | None  # the zoo's "Params(M)"; None for sizes it does not list
    depthwise: bool = False


RTMPOSE_SIZES: dict[str, RTMPoseSize] = {
    "t": RTMPoseSize(0.167, 0.375, 384, 3.34),
    "s": RTMPoseSize(0.33, 0.5, 512, 5.47),
    "m": RTMPoseSize(0.67, 0.75, 768, 13.59),
    "l": RTMPoseSize(1.0, 1.0, 1024, 27.66),
    "n": RTMPoseSize(0.33, 0.25, 256, None, depthwise=True),
}
