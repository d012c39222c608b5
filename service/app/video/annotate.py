"""Annotated video: frames with their results drawn, encoded as H.264 MP4 with PyAV.

Used by ``POST /v1/pose/video?render=mp4`` and ``rtmserve render VIDEO``. Frames are encoded as
they come (one encoder, no frame list held), to a file or to memory.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from ..render import RenderQuery, draw
from ..schemas import FrameResult

CODEC, PIXEL_FORMAT = "libx264", "yuv420p"  # what every browser and player decodes


class Mp4Writer:
    """``write`` BGR frames of one size; ``close`` flushes the encoder and the container."""

    def __init__(self, sink: Path | io.BytesIO, fps: float) -> None:
        self._container = av.open(sink if isinstance(sink, io.BytesIO) else str(sink), "w",
                                  format="mp4")  # fmt: skip
        self._fps = Fraction(fps).limit_denominator(1001)
        self._stream: av.video.stream.VideoStream | None = None

    def write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if h % 2 or w % 2:  # yuv420p needs even sizes: repeat the last row/column (1x1 -> 2x2)
            image = cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
        if self._stream is None:
            self._stream = self._container.add_stream(CODEC, rate=self._fps)
            self._stream.height, self._stream.width = image.shape[:2]
            self._stream.pix_fmt = PIXEL_FORMAT
            self._stream.options = {"preset": "veryfast", "crf": "23"}
        s = self._stream
        if image.shape[:2] != (s.height, s.width):  # a stream whose frame size changes
            image = cv2.resize(image, (s.width, s.height), interpolation=cv2.INTER_AREA)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        for packet in s.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()


def annotate(
    image: np.ndarray | None, result: FrameResult, query: RenderQuery
) -> np.ndarray | None:
    """The frame with its tracked people drawn (None for a frame that did not decode)."""
    return None if image is None else draw(image, result.persons, query)
