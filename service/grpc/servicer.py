"""``rtmserve.v1.PoseService``: the same flows as the HTTP routes, over gRPC (grpc.aio).

The API key travels as ``x-api-key`` or ``authorization: Bearer KEY`` metadata; a stream whose
client goes silent for ``idle_timeout_s`` ends with DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

import grpc

from service.app.access import Client, presented_key
from service.app.context import Services
from service.app.errors import ApiError
from service.app.estimate import estimate_pose
from service.app.schemas import FrameResult
from service.app.timeouts import within_idle
from service.app.video.session import FrameInput, StreamModels, StreamSession, run_stream
from service.metrics.families import CLIENT_REQUESTS

from .convert import frame_input, image_input, pose_options, stream_options
from .gen import pose_pb2 as pb
from .gen import pose_pb2_grpc as pb_grpc
from .messages import to_message
from .status import abort

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PoseService"].full_name


class PoseServicer(pb_grpc.PoseServiceServicer):
    def __init__(self, services: Services) -> None:
        self.services = services

    def _client(self, context: grpc.aio.ServicerContext) -> Client:
        metadata = dict(context.invocation_metadata() or ())
        key = presented_key(metadata.get("x-api-key"), metadata.get("authorization"))
        client = self.services.access.authenticate(key, peer_address(context.peer()))
        CLIENT_REQUESTS.labels("grpc", client.name).inc()
        return client

    async def Estimate(
        self, request: pb.EstimateRequest, context: grpc.aio.ServicerContext
    ) -> pb.PoseResponse:
        max_pixels = self.services.settings.max_image_pixels
        try:
            self._client(context)
            response = await estimate_pose(
                self.services,
                pose_options(request),
                lambda: asyncio.to_thread(image_input, request.image, max_pixels),
            )
        except ApiError as exc:
            await abort(context, exc)
        return to_message(response, pb.PoseResponse)

    async def Stream(
        self,
        request_iterator: AsyncIterator[pb.StreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.FrameResult]:
        idle = self.services.settings.idle_timeout_s
        requests = within_idle(aiter(request_iterator), idle, "the stream")
        try:
            client = self._client(context)
            first = await anext(requests, None)
            if first is None:
                return
            is_config = first.WhichOneof("kind") == "config"
            options = stream_options(first.config if is_config else pb.StreamConfig())
            models = StreamModels.resolve(self.services.index, options)
            with self.services.streams.reserve(client.quota):
                session = StreamSession(self.services, models, options, client=client, live=True)
                frames = self._frames(None if is_config else first, requests)
                async with aclosing(run_stream(session, frames, api="grpc")) as results:
                    async for result in results:
                        yield _frame_message(result)
        except ApiError as exc:
            await abort(context, exc)

    async def _frames(
        self, first: pb.StreamRequest | None, requests: AsyncIterator[pb.StreamRequest]
    ) -> AsyncIterator[FrameInput]:
        """Decoded off the event loop; a corrupt frame becomes a FrameInput with its error."""
        max_pixels = self.services.settings.max_image_pixels
        if first is not None:
            yield await asyncio.to_thread(frame_input, first, max_pixels)
        async for request in requests:
            yield await asyncio.to_thread(frame_input, request, max_pixels)


def peer_address(peer: str | None) -> str:
    """``ipv4:1.2.3.4:5678`` or ``ipv6:[::1]:5678`` -> the address without the port."""
    kind, _, rest = (peer or "").partition(":")
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return rest.rpartition(":")[0] if kind == "ipv4" else rest


def _frame_message(result: FrameResult) -> pb.FrameResult:
    return to_message(result, pb.FrameResult)
