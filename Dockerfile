# syntax=docker/dockerfile:1
# rtmserve gateway image: `rtmserve serve` (HTTP :8080, gRPC :50051). Without --triton-url it
# also runs the embedded CPU tritonserver from the nvidia-pytriton wheel (Linux x86_64 only):
# Triton's metrics on :8002. docker-compose.yml uses this image for the gateway, for the one-shot
# `rtmserve prepare` step and for the CPU profile.
ARG PYTHON_VERSION=3.11

# --- builder: a virtual environment with rtmserve and its serving dependencies ---------------
FROM python:${PYTHON_VERSION}-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
# The source tree (see .dockerignore), installed editable as `make serve` does: the templates in
# model_repository/ and the bundled models are found beside the package, and the embedded Triton
# puts the source root on the Python-backend stub's PYTHONPATH.
COPY . /opt/rtmserve
ARG EXTRAS=serve
RUN /opt/venv/bin/pip install pip==26.3 \
 && /opt/venv/bin/pip install -c /opt/rtmserve/constraints.txt -e "/opt/rtmserve[${EXTRAS}]"

# --- final: slim runtime, non-root --------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim
ARG UID=10001
RUN useradd --system --uid ${UID} --user-group --home-dir /var/lib/rtmserve --create-home rtmserve
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/rtmserve /opt/rtmserve
# The Python-backend stub runs model.py with the `python` found on PATH: the venv's.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RTMSERVE_HOME=/var/lib/rtmserve \
    RTMSERVE_HOST=0.0.0.0
USER rtmserve
WORKDIR /var/lib/rtmserve
EXPOSE 8080 50051 8002
HEALTHCHECK --interval=10s --timeout=5s --start-period=300s --retries=3 \
  CMD python -m service.healthcheck "http://localhost:${RTMSERVE_HTTP_PORT:-8080}/readyz"
ENTRYPOINT ["rtmserve"]
CMD ["serve"]
