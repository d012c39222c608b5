"""rtmserve: serve RTMDet + RTMPose through NVIDIA Triton over HTTP and gRPC."""

__version__ = "0.1.0"
