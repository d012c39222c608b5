"""``rtmserve render IMAGE|VIDEO -o OUT``: the skeletons drawn over a photo or a video.

A photo goes to ``POST /v1/pose/render`` (the server draws it); a video streams over gRPC and
is drawn and encoded here as the results come (``service.app.video.annotate``), with a progress
bar on a terminal and log lines otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

STYLES = ("mmpose", "openpose")


def add_render_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="draw the skeletons over a photo or a video",
        description="Send a photo or a video to a running rtmserve and write it with every "
        "person's skeleton drawn (JPEG/PNG for a photo, by OUT's suffix; MP4 for a video).",
    )
    p.add_argument("source", type=Path, help="an image (jpg, png, webp, bmp) or a video file")
    p.add_argument("-o", "--output", type=Path, required=True, help="where to write the drawing")
    p.add_argument("--http", default="http://localhost:8080", help="HTTP base URL (photos)")
    p.add_argument("--server", default="localhost:50051", help="gRPC host:port (videos)")
    p.add_argument("--style", choices=STYLES, default="mmpose")
    p.add_argument("--kpt-thr", type=float, default=0.3, help="hide keypoints under this score")
    p.add_argument("--radius", type=int, default=3)
    p.add_argument("--thickness", type=int, default=2)
    p.add_argument("--no-boxes", action="store_true", help="skeletons only")
    p.add_argument("--black", action="store_true", help="draw on a black background")
    p.add_argument("--pose-model", help="pose model name (server default)")
    p.add_argument("--api-key", help="the server's API key, if it asks for one")
    p.set_defaults(func=run_render_command)


def _query(args: argparse.Namespace):
    from service.app.render import RenderQuery

    return RenderQuery(style=args.style, kpt_thr=args.kpt_thr, radius=args.radius,
                       thickness=args.thickness, boxes=not args.no_boxes,
                       black_background=args.black)  # fmt: skip


def run_render_command(args: argparse.Namespace) -> int:
    if not args.source.is_file():
        print(f"error: {args.source} is not a file", file=sys.stderr)
        return 2
    from rtmserve.client.grpc import IMAGE_SUFFIXES

    query = _query(args)
    if args.source.suffix.lower() in IMAGE_SUFFIXES:
        return _render_image(args, query)
    return _render_video(args, query)


def _render_image(args: argparse.Namespace, query) -> int:
    from rtmserve.client import NO_RETRY, Client, RtmserveError

    pose = {"pose_model": args.pose_model} if args.pose_model else {}
    with Client(args.http, api_key=args.api_key, retry=NO_RETRY) as client:
        try:
            drawing, result = client.render(args.source, png=args.output.suffix.lower() == ".png",
                                            **query.model_dump(), **pose)  # fmt: skip
        except RtmserveError as exc:
            print(f"error: HTTP {exc.status}: {exc.code}: {exc.message}", file=sys.stderr)
            return 1
    args.output.write_bytes(drawing)
    print(f"{args.output}: {len(result.persons)} persons drawn")
    return 0


def _render_video(args: argparse.Namespace, query) -> int:
    import av
    import grpc

    from rtmserve.client.grpc import SourceFrame, frame_result, raw_image, stream
    from service.app.video.annotate import Mp4Writer, annotate
    from service.grpc.gen import pose_pb2 as pb
    from service.progress import progress

    with av.open(str(args.source)) as container:
        video = container.streams.video[0]
        fps = float(video.average_rate or 30)
        total = video.frames or None
    images: list = []

    def frames():  # decoded once: the frame goes to the server, its pixels wait for the result
        with av.open(str(args.source)) as container:
            for frame in container.decode(video=0):
                bgr = frame.to_ndarray(format="bgr24")
                images.append(bgr)
                yield SourceFrame(raw_image(bgr), frame.time)

    config = pb.StreamConfig(**({"pose_model": args.pose_model} if args.pose_model else {}))
    metadata = (("x-api-key", args.api_key),) if args.api_key else ()
    writer = Mp4Writer(args.output, fps)
    try:
        with progress(total, "render", "frames") as bar:
            for message in stream(args.server, config, frames(), metadata):
                drawn = annotate(images.pop(0), frame_result(message), query)
                if drawn is not None:
                    writer.write(drawn)
                bar.update(1)
    except grpc.RpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)  # type: ignore[attr-defined]
        return 1
    finally:
        writer.close()
    print(f"{args.output}: written")
    return 0
