"""Hypothesis over the image and container sniffers and what follows them in process (header
inspection and decoding, ``probe`` and every decoded frame): anything but a 4xx or a frame
within the limits is a bug. Bounded and derandomized for CI; bench/fuzz.py runs longer."""

from __future__ import annotations

from collections import Counter

from hypothesis import given

from tests.support.fuzz import (
    check_image,
    check_video,
    found_crashes,
    fuzz_settings,
    image_inputs,
    video_inputs,
)

IMAGE_EXAMPLES, VIDEO_EXAMPLES = 300, 100  # a few seconds each on one core


def test_fuzzed_images_are_decoded_as_declared_or_refused_with_a_4xx():
    seen: Counter[str] = Counter()

    @fuzz_settings(IMAGE_EXAMPLES)
    @given(image_inputs())
    def run(data: bytes) -> None:
        seen[check_image(data)] += 1

    run()
    # the strategies reach both sides: refusals and images that decode
    assert seen["refused"] > 0 and seen["accepted"] > 0, seen


def test_fuzzed_videos_open_no_socket_and_are_decoded_within_limits_or_refused():
    seen: Counter[str] = Counter()
    for what, data in found_crashes().items():  # found by this fuzzer: regressions first
        assert check_video(data) in ("refused", "accepted"), what

    @fuzz_settings(VIDEO_EXAMPLES)
    @given(video_inputs())
    def run(data: bytes) -> None:
        seen[check_video(data)] += 1

    run()
    assert seen["refused"] > 0 and seen["accepted"] > 0, seen
