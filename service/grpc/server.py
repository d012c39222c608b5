"""The grpc.aio server: PoseService, health and reflection, on ``settings.grpc_port``.

It runs in the same asyncio loop as uvicorn and shares its ``Services`` (see
``service/server.py``).
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.app.context import Services
from service.metrics.interceptor import MetricsInterceptor

from .auth import AccessInterceptor
from .gen import pose_pb2_grpc as pb_grpc
from .health import ReadinessHealth
from .servicer import SERVICE_NAME, PoseServicer
from .status import ERROR_CODE_KEY

# Room for a frame at the image byte limit plus the message around it.
ENVELOPE_BYTES = 64 * 1024


class GrpcServer:
    def __init__(self, services: Services, port: int | None = None) -> None:
        """``port`` overrides the setting (0: any free port, see ``self.port``)."""
        settings = services.settings
        limit = settings.max_upload_bytes + ENVELOPE_BYTES
        self.server = grpc.aio.server(
            # the key is checked before a message is read; refusals are counted too
            interceptors=[
                MetricsInterceptor(ERROR_CODE_KEY),
                AccessInterceptor(services, SERVICE_NAME),
            ],
            maximum_concurrent_rpcs=settings.max_grpc_rpcs,  # beyond: RESOURCE_EXHAUSTED
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.so_reuseport", 0),  # a port in use fails loudly instead of sharing
            ],
        )
        pb_grpc.add_PoseServiceServicer_to_server(PoseServicer(services), self.server)
        self.health = ReadinessHealth(services)
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        address = f"{settings.host}:{settings.grpc_port if port is None else port}"
        if settings.tls_cert and settings.tls_key:  # the same certificate as HTTPS
            pair = (settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())
            self.port = self.server.add_secure_port(address, grpc.ssl_server_credentials([pair]))
        else:
            self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"cannot listen for gRPC on {address}")
        self.address = f"{settings.host}:{self.port}"

    async def start(self) -> None:
        await self.server.start()
        await self.health.start()

    async def stop(self, grace_s: float) -> None:
        """Health says NOT_SERVING, then calls get ``grace_s`` to finish before cancellation."""
        await self.health.stop()
        await self.server.stop(grace_s)
