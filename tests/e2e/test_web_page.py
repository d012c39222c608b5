"""The page at ``/`` in a real headless Chromium (Debian's, driven by selenium through
chromium-driver): offline (nothing requested from elsewhere), no console errors, a photo drawn
with as many skeletons as the API finds, and the camera mode streaming the arm-wrestling clip
(Chromium's fake capture device) over the WebSocket with stable track IDs.

Screenshots are kept in ``test-artifacts/`` (gitignored) for a human to look at.
"""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest

from rtmserve.launch import start_service, wait_until
from service.core.image import decode
from tests.support.paths import MODELS_MIRROR, REPO
from tests.support.streaming import clip_images

webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="Debian chromium + chromium-driver (make system-deps)"
)
ARTIFACTS = REPO / "test-artifacts"
PHOTO = 50


def y4m(path: Path, frames: list[np.ndarray], fps: int = 28) -> Path:
    """Chromium's fake camera plays a Y4M file (written with PyAV, no ffmpeg binary)."""
    with av.open(str(path), "w", format="yuv4mpegpipe") as container:
        s = container.add_stream("rawvideo", rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        for image in frames:
            container.mux(s.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(s.encode())
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    camera = y4m(tmp_path_factory.mktemp("camera") / "clip.y4m", clip_images(120))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-video-capture={camera}", "--window-size=1400,1000",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    ARTIFACTS.mkdir(exist_ok=True)
    yield driver
    driver.quit()


def state(driver) -> dict:
    return driver.execute_script("return window.rtmserve")


def errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def canvas_pixels(driver) -> np.ndarray:
    url = driver.execute_script("return document.getElementById('view').toDataURL('image/png')")
    data = base64.b64decode(url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def test_the_page_draws_a_photo_with_every_person(browser, service, coco_images):
    browser.get(service.http + "/")
    models_listed = "return document.getElementById('model').options.length > 1"
    wait_until(lambda: browser.execute_script(models_listed), 30, "the model list")
    photo = coco_images[PHOTO]
    browser.find_element("id", "file").send_keys(str(photo))
    wait_until(lambda: state(browser)["mode"] == "photo" and browser.find_element(
        "id", "status").text in ("done", "failed"), 120, "the photo's answer")  # fmt: skip
    assert browser.find_element("id", "status").text == "done", state(browser)["errors"]
    api = httpx.post(f"{service.http}/v1/pose", content=photo.read_bytes(), timeout=120).json()
    assert api["persons"]
    assert state(browser)["drawn"] == len(api["persons"])
    assert len(browser.find_elements("css selector", "#persons tr")) == len(api["persons"])
    drawn, bare = canvas_pixels(browser), decode(photo.read_bytes())
    assert drawn.shape == bare.shape
    changed = np.abs(drawn.astype(int) - bare).max(axis=2) > 40
    assert changed.mean() > 0.001
    for person in api["persons"]:  # the drawing is where the people are
        x1, y1, x2, y2 = (round(v) for v in person["bbox"])
        assert changed[max(y1 - 3, 0) : y2 + 4, max(x1 - 3, 0) : x2 + 4].any()
    browser.save_screenshot(str(ARTIFACTS / "page-photo.png"))
    # offline: every resource the page loaded came from the service itself
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")  # fmt: skip
    assert urls and all(u.startswith(service.http) for u in urls), urls
    assert errors(browser) == []


def test_the_camera_streams_over_the_websocket_with_stable_tracks(browser, service):
    browser.get(service.http + "/")
    browser.find_element("id", "camera").click()
    wait_until(lambda: state(browser)["frames"] >= 25 or state(browser)["errors"], 240,
               "25 frames answered over the WebSocket")  # fmt: skip
    s = state(browser)
    assert s["errors"] == [] and s["mode"] == "camera"
    browser.save_screenshot(str(ARTIFACTS / "page-camera.png"))
    browser.find_element("id", "camera").click()  # stop
    seen = [tuple(ids) for ids in s["trackIds"] if ids]
    assert len(seen) >= 10
    # the arm wrestlers keep their IDs: the last frame shares IDs with the first ones
    early = {i for ids in seen[:10] for i in ids}
    assert set(seen[-1]) & early, seen
    assert errors(browser) == []


PAGE_KEY = "page-8c1f5e2a9d7b3046"


@pytest.fixture(scope="module")
def keyed_service(tmp_path_factory):
    home = tmp_path_factory.mktemp("keyed-page-home")
    svc = start_service(home, MODELS_MIRROR, {"RTMSERVE_API_KEYS": f"page:{PAGE_KEY}"})
    yield svc
    assert svc.stop() == 0
    assert PAGE_KEY not in svc.log.read_text(errors="replace")


def test_with_keys_the_page_takes_its_key_from_the_fragment_and_never_puts_it_in_a_url(
    browser, keyed_service, coco_images
):
    """``/#api_key=KEY``: the fragment never reaches the server; the page drops it from the
    address bar and sends it in headers and the WebSocket's first message, never in a URL."""
    browser.get(f"{keyed_service.http}/#api_key={PAGE_KEY}")
    models_listed = "return document.getElementById('model').options.length > 1"
    wait_until(lambda: browser.execute_script(models_listed), 30, "the model list (with the key)")
    assert PAGE_KEY not in browser.current_url
    browser.find_element("id", "file").send_keys(str(coco_images[PHOTO]))
    wait_until(lambda: browser.find_element("id", "status").text in ("done", "failed"), 120,
               "the photo's answer")  # fmt: skip
    assert browser.find_element("id", "status").text == "done", state(browser)["errors"]
    browser.find_element("id", "camera").click()
    wait_until(lambda: state(browser)["frames"] >= 5 or state(browser)["errors"], 240,
               "5 frames answered over the WebSocket")  # fmt: skip
    assert state(browser)["errors"] == []
    browser.find_element("id", "camera").click()  # stop
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")  # fmt: skip
    assert all(PAGE_KEY not in u for u in urls), urls
    assert errors(browser) == []
