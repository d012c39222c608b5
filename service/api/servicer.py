"""``rtmserve.v1.PoseService``: the same flows as the HTTP routes, over gRPC (grpc.aio)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

import grpc

from service.gateway.errors import ApiError
from service.gateway.estimate import estimate_pose
from service.gateway.models import ModelIndex
from service.settings import Settings
from service.triton.client import PipelineClient
from service.video.session import FrameInput, StreamModels, StreamSession, run_stream

from .convert import (
    InvalidParameter,
    decode_image_message,
    frame_input,
    frame_result_message,
    pose_query,
    pose_response_message,
    stream_options,
)
from .errors import abort
from .gen import pose_pb2 as pb
from .gen import pose_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PoseService"].full_name


class PoseServicer(pb_grpc.PoseServiceServicer):
    def __init__(self, settings: Settings, client: PipelineClient, index: ModelIndex) -> None:
        self.settings, self.client, self.index = settings, client, index

    async def Estimate(
        self, request: pb.EstimateRequest, context: grpc.aio.ServicerContext
    ) -> pb.PoseResponse:
        max_pixels = self.settings.max_image_pixels
        try:
            query = pose_query(request)
            response = await estimate_pose(
                self.settings,
                self.client,
                self.index,
                query,
                lambda: asyncio.to_thread(decode_image_message, request.image, max_pixels),
            )
        except ApiError as exc:
            await abort(context, exc)
        return pose_response_message(response)

    async def Stream(
        self,
        request_iterator: AsyncIterator[pb.StreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.FrameResult]:
        requests = aiter(request_iterator)
        try:
            first = await anext(requests, None)
            if first is None:
                return
            is_config = first.WhichOneof("kind") == "config"
            options = stream_options(first.config if is_config else pb.StreamConfig())
            models = StreamModels.resolve(self.index, options)
            session = StreamSession(self.client, models, options, self.settings)
            frames = self._frames(None if is_config else first, requests)
            async with aclosing(run_stream(session, frames, api="grpc")) as results:
                async for result in results:
                    yield frame_result_message(result)
        except ApiError as exc:
            await abort(context, exc)

    async def _frames(
        self, first: pb.StreamRequest | None, requests: AsyncIterator[pb.StreamRequest]
    ) -> AsyncIterator[FrameInput]:
        """Decoded off the event loop; a corrupt frame becomes a FrameInput with its error."""
        max_pixels = self.settings.max_image_pixels
        if first is not None:
            yield await asyncio.to_thread(frame_input, _frame(first), max_pixels)
        async for request in requests:
            yield await asyncio.to_thread(frame_input, _frame(request), max_pixels)


def _frame(request: pb.StreamRequest) -> pb.Frame:
    kind = request.WhichOneof("kind")
    if kind == "frame":
        return request.frame
    if kind == "config":
        raise InvalidParameter("a StreamConfig is only accepted as the first message")
    raise InvalidParameter("a StreamRequest must carry a config or a frame")
