"""A request naming a path as its model gets a 4xx from the gateway, and the Triton pipeline,
which builds a file path from the model name a request carries, refuses such a name before
looking anything up (it is reachable without the gateway wherever Triton's port is)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from rtmserve.launch import ServiceProcess
from service.metadata import RecordCache
from service.triton.client import ModelRef, PipelineClient, PipelineRequest, TritonError

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("param", ["pose_model", "detector"])
@pytest.mark.parametrize("name", ["../x", "rtmpose-m\n", "../repository/rtmpose-m"], ids=repr)
def test_gateway_answers_422_naming_the_parameter(
    service: ServiceProcess, coco_images, param: str, name: str
) -> None:
    photo = coco_images[0].read_bytes()
    r = httpx.post(f"{service.http}/v1/pose", params={param: name}, content=photo, timeout=60)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_parameter" and param in error["message"]


def _ref(service: ServiceProcess, task: str, alias: str | None = None) -> ModelRef:
    records = RecordCache(service.repository)
    record = next(records.get(n) for n in records.names() if records.get(n).task == task)
    return ModelRef(alias or record.name, record.serving_version, json.dumps(record.spec))


def _infer(service: ServiceProcess, request: PipelineRequest):
    async def run():
        client = PipelineClient(f"127.0.0.1:{service.triton_grpc_port}", timeout_s=60)
        try:
            return await client.infer(request)
        finally:
            await client.close()

    return asyncio.run(run())


def test_pipeline_refuses_a_path_as_model_name(service: ServiceProcess, coco_images) -> None:
    """``../repository/<detector>`` leads back to the real file: a path lookup would serve it.
    The pipeline refuses the name instead, and still serves the plain one."""
    photo = coco_images[0].read_bytes()
    detector, pose = _ref(service, "detector"), _ref(service, "pose")
    assert service.repository.name == "repository"
    alias = f"../repository/{detector.name}"
    assert (service.repository / alias / str(detector.version) / "model.onnx").is_file()
    for name in (alias, f"{detector.name}\n"):
        bad = ModelRef(name, detector.version, detector.spec_json)
        with pytest.raises(TritonError, match="is not a model name"):
            _infer(service, PipelineRequest(photo, bad, pose))
    result = _infer(service, PipelineRequest(photo, detector, pose))
    assert len(result.boxes) >= 1
