"""The page at ``/``: try the service in a browser (a photo, or the webcam over
``/v1/pose/ws``). One HTML file, no build step, nothing fetched from outside (works offline).
Photos are drawn by the server (``/v1/pose/render``); live frames are drawn by the page from
``GET /v1/render/style``: the renderer's own links and colours, so both look the same."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from service.core.keypoints import COCO_KEYPOINTS, COCO_SKELETON
from service.core.render import BOX_COLOR, MMPOSE_KEYPOINT_COLORS, MMPOSE_LINK_COLORS

router = APIRouter()
PAGE = Path(__file__).with_name("static") / "index.html"


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


@router.get("/v1/render/style", summary="The skeleton the renderer draws (mmpose style)")
async def style() -> dict:
    return {
        "keypoints": list(COCO_KEYPOINTS),
        "links": [list(link) for link in COCO_SKELETON],
        "link_colors": [list(c) for c in MMPOSE_LINK_COLORS],  # RGB
        "keypoint_colors": [list(c) for c in MMPOSE_KEYPOINT_COLORS],
        "box_color": list(BOX_COLOR),
    }
