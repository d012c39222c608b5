"""The page at ``/``: try the service in a browser (a photo, or the webcam over
``/v1/pose/ws``). One HTML file, no build step, nothing fetched from outside (works offline).
Photos are drawn by the server (``/v1/pose/render``); live frames are drawn by the page from
``GET /v1/render/style``: the renderer's own links and colours, so both look the same."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from service.core.keypoints import keypoint_sets
from service.core.render import BOX_COLOR

router = APIRouter()
PAGE = Path(__file__).with_name("static") / "index.html"


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


@router.get("/v1/render/style", summary="What the renderer draws (mmpose style), per keypoint set")
async def style() -> dict:
    return {
        "box_color": list(BOX_COLOR),
        "sets": {
            name: {
                "keypoints": list(s.keypoints),
                "links": [list(link) for link in s.skeleton],
                "link_colors": [list(c) for c in s.link_colors],  # RGB
                "keypoint_colors": [list(c) for c in s.keypoint_colors],
            }
            for name, s in keypoint_sets().items()
        },
    }
