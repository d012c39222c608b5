"""Access control, admission, path hiding and image integrity, in process."""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np
import pytest
from PIL import Image

from service.app.access import AccessControl, TokenBucket, parse_keys, presented_key
from service.app.admission import Admission, StreamSlots
from service.app.decode import decode_image
from service.app.errors import (
    InvalidImage,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
)
from service.app.format import public_meta
from service.triton.keeper import unhealthy_model


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


K1, K2, K3 = "k1-0123456789abcdef", "k2-0123456789abcdef", "k3-0123456789abcdef"


def test_keys_parse_from_commas_and_lines_and_never_echo_a_bad_entry():
    text = f"a:{K1}, b:{K2}\n# c:{K3}\nd : k#4-0123456789ab"
    assert parse_keys(text, "x") == {"a": K1.encode(), "b": K2.encode(), "d": b"k#4-0123456789ab"}
    with pytest.raises(ValueError) as err:
        parse_keys(f"a:{K1}\nsecretkeywithoutname", "keys.txt")
    assert "entry 2" in str(err.value) and "secretkeywithoutname" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a:short-key", "shorter than 16"),
        (f"a:{K1[:8]}#{K1[8:]}", None),  # '#' is part of a key, not a comment: accepted
        (f"a:{K1} # alice's", "without spaces"),  # an inline comment used to cut the key
        (f"a b:{K1}", "the name"),
        (f"a:{K1}\na:{K2}", "used twice"),
        (f"a:{K1},b:{K1}", "given twice"),
        (f"a:{K1}é", "printable ASCII"),
    ],
)
def test_malformed_key_configuration_is_refused_loudly(text: str, problem: str | None):
    if problem is None:
        assert len(parse_keys(text, "x")["a"]) == len(K1) + 1
        return
    with pytest.raises(ValueError) as err:
        parse_keys(text, "RTMSERVE_API_KEYS")
    assert problem in str(err.value) and K1 not in str(err.value)


def test_keys_are_checked_and_the_client_is_known_by_its_name():
    access = AccessControl({"alice": K1.encode(), "bob": K2.encode()})
    assert access.authenticate(K2).name == "bob"
    for bad in (None, "", K3, K1 + " "):
        with pytest.raises(Unauthenticated):
            access.authenticate(bad)
    anonymous = AccessControl({}).authenticate(None, "10.0.0.7")  # no keys, no checks
    assert anonymous.name == "anonymous" and anonymous.quota == "anonymous@10.0.0.7"
    assert presented_key(None, "Bearer k1") == "k1" and presented_key("k2", "Bearer k1") == "k2"
    assert presented_key(None, "Basic k1") is None


def test_a_token_bucket_refills_at_its_rate():
    clock = Clock()
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0, 0, 0]
    assert bucket.take() == pytest.approx(0.5)  # the next token is half a second away
    clock.t += 0.5
    assert bucket.take() == 0
    access = AccessControl({"a": K1.encode()}, rate=1.0, burst=1, clock=clock)
    access.authenticate(K1)
    with pytest.raises(RateLimited) as err:
        access.authenticate(K1)
    assert err.value.retry_after == 1 and "'a'" in err.value.message


def test_without_keys_each_address_has_its_own_bucket():
    """Not one shared ``anonymous`` bucket that one caller empties for everyone."""
    access = AccessControl({}, rate=1.0, burst=2, clock=Clock())
    for _ in range(2):
        access.authenticate(None, "10.0.0.1")
    with pytest.raises(RateLimited) as err:
        access.authenticate(None, "10.0.0.1")
    assert "this address" in err.value.message
    access.authenticate(None, "10.0.0.2")  # another caller is not limited by the first
    v6 = [access.identify(None, f"2001:db8::{i}").quota for i in (1, 2)]
    assert v6[0] == v6[1] == "anonymous@2001:db8::/64"  # one host, one /64
    assert access.identify(None, "::ffff:10.0.0.1").quota == "anonymous@10.0.0.1"


def test_a_stream_frame_waits_for_its_token():
    """``pace``: frames beyond the burst come at the key's rate, on the real clock."""

    async def main() -> float:
        access = AccessControl({"a": K1.encode()}, rate=20.0, burst=2)
        client = access.identify(K1)
        start = time.monotonic()
        for _ in range(6):
            await access.pace(client)
        return time.monotonic() - start

    assert asyncio.run(main()) >= (6 - 2) / 20.0 * 0.95


def test_admission_queues_a_few_and_sheds_the_rest():
    async def main():
        admission = Admission(max_in_flight=2, max_queued=1, queue_timeout_s=0.5)
        release = asyncio.Event()
        outcomes: list[str] = []

        async def request(i: int) -> None:
            try:
                async with admission.slot():
                    outcomes.append(f"in {i}")
                    await release.wait()
            except Overloaded as exc:
                assert exc.retry_after == 1
                outcomes.append(f"shed {i}")

        tasks = [asyncio.create_task(request(i)) for i in range(5)]
        for _ in range(10):  # let every request reach its decision
            await asyncio.sleep(0)
        assert (admission.in_flight, admission.waiting) == (2, 1)
        assert sorted(outcomes) == ["in 0", "in 1", "shed 3", "shed 4"]
        release.set()
        await asyncio.gather(*tasks)
        assert "in 2" in outcomes and (admission.in_flight, admission.waiting) == (0, 0)
        # a waiter that never gets a slot is shed when its time is up
        hold = asyncio.Event()
        holders = [asyncio.create_task(request_until(admission, hold)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match=r"within 0\.5 s"):
            async with admission.slot():
                pass
        hold.set()
        await asyncio.gather(*holders)

    async def request_until(admission: Admission, hold: asyncio.Event) -> None:
        async with admission.slot():
            await hold.wait()

    asyncio.run(main())


def test_stream_slots_cap_the_server_and_each_client():
    slots = StreamSlots(max_streams=3, max_per_client=2)
    with slots.reserve("a"), slots.reserve("a"):
        with pytest.raises(RateLimited):
            slots.reserve("a").__enter__()
        with slots.reserve("b"), pytest.raises(Overloaded):
            slots.reserve("c").__enter__()
    assert sum(slots.open.values()) == 0


def test_responses_name_files_not_their_folders():
    meta = {
        "origin": "mirror:/srv/models/rtmdet/end2end.onnx",
        "evaluations": [{"dataset": "/data/coco_val_subset"}],
        "source": "https://download.openmmlab.com/mmpose/rtmpose-cpu.zip",
        "card": "bundled with rtmserve (models/x/MODEL_CARD.md)",
        "file": "file:///opt/rtmserve/models/x/model.onnx",
    }
    assert public_meta(meta) == {
        "origin": "mirror:end2end.onnx",
        "evaluations": [{"dataset": "coco_val_subset"}],
        "source": "https://download.openmmlab.com/mmpose/rtmpose-cpu.zip",
        "card": "bundled with rtmserve (models/x/MODEL_CARD.md)",
        "file": "model.onnx",
    }


def encode(fmt: str, h: int = 64, w: int = 96) -> bytes:
    out = io.BytesIO()
    pixels = np.linspace(0, 255, h * w * 3).reshape(h, w, 3).astype(np.uint8)
    Image.fromarray(pixels).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP"])
def test_whole_images_decode_and_truncated_ones_are_refused(fmt: str):
    data = encode(fmt)
    image, _ = decode_image(data, 10_000)
    assert image.shape == (64, 96, 3)
    with pytest.raises(InvalidImage):
        decode_image(data[: len(data) * 2 // 3], 10_000)
    with pytest.raises(PayloadTooLarge):
        decode_image(data, 64 * 96 - 1)


def test_a_dead_stub_is_recognised_in_tritons_message():
    message = (
        "inference failed: rtmserve-pose-n v1: Stub process 'rtmserve-pose-n_0_0' is not healthy."
    )
    assert unhealthy_model(message) == "rtmserve-pose-n"
    assert unhealthy_model("Stub process 'pose_pipeline_0_3' is not healthy.") == "pose_pipeline"
    assert unhealthy_model("onnxruntime: bad input") is None


def test_jpegs_decode_to_opencvs_pixels_in_every_orientation(coco_images):
    """The gateway keeps Pillow's decode of a JPEG (it needs it as the integrity check):
    it must be exactly what OpenCV (the official SDK's reader) makes of the same bytes."""
    import cv2

    def opencv(data: bytes) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

    for path in coco_images:
        data = path.read_bytes()
        assert np.array_equal(decode_image(data, 10**8)[0], opencv(data)), path.name
    photo = Image.open(coco_images[0])
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        out = io.BytesIO()
        photo.save(out, "JPEG", quality=90, exif=exif)
        image = decode_image(out.getvalue(), 10**8)[0]
        assert np.array_equal(image, opencv(out.getvalue())), orientation
