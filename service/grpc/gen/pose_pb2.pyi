from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PixelFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXEL_FORMAT_UNSPECIFIED: _ClassVar[PixelFormat]
    PIXEL_FORMAT_BGR: _ClassVar[PixelFormat]
    PIXEL_FORMAT_RGB: _ClassVar[PixelFormat]
PIXEL_FORMAT_UNSPECIFIED: PixelFormat
PIXEL_FORMAT_BGR: PixelFormat
PIXEL_FORMAT_RGB: PixelFormat

class RawImage(_message.Message):
    __slots__ = ("pixels", "width", "height", "format")
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    pixels: bytes
    width: int
    height: int
    format: PixelFormat
    def __init__(self, pixels: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., format: _Optional[_Union[PixelFormat, str]] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("encoded", "raw")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    raw: RawImage
    def __init__(self, encoded: _Optional[bytes] = ..., raw: _Optional[_Union[RawImage, _Mapping]] = ...) -> None: ...

class EstimateRequest(_message.Message):
    __slots__ = ("image", "score_threshold", "max_persons", "pose_model", "detector", "keypoints")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_PERSONS_FIELD_NUMBER: _ClassVar[int]
    POSE_MODEL_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    image: Image
    score_threshold: float
    max_persons: int
    pose_model: str
    detector: str
    keypoints: bool
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., score_threshold: _Optional[float] = ..., max_persons: _Optional[int] = ..., pose_model: _Optional[str] = ..., detector: _Optional[str] = ..., keypoints: _Optional[bool] = ...) -> None: ...

class ImageInfo(_message.Message):
    __slots__ = ("width", "height", "format")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    format: str
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., format: _Optional[str] = ...) -> None: ...

class Keypoint(_message.Message):
    __slots__ = ("name", "x", "y", "score")
    NAME_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    name: str
    x: float
    y: float
    score: float
    def __init__(self, name: _Optional[str] = ..., x: _Optional[float] = ..., y: _Optional[float] = ..., score: _Optional[float] = ...) -> None: ...

class Person(_message.Message):
    __slots__ = ("bbox", "score", "keypoints")
    BBOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    bbox: _containers.RepeatedScalarFieldContainer[float]
    score: float
    keypoints: _containers.RepeatedCompositeFieldContainer[Keypoint]
    def __init__(self, bbox: _Optional[_Iterable[float]] = ..., score: _Optional[float] = ..., keypoints: _Optional[_Iterable[_Union[Keypoint, _Mapping]]] = ...) -> None: ...

class ModelUsed(_message.Message):
    __slots__ = ("name", "version", "trained", "warning", "role")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TRAINED_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    trained: bool
    warning: str
    role: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., trained: _Optional[bool] = ..., warning: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class ModelsUsed(_message.Message):
    __slots__ = ("detector", "pose")
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    POSE_FIELD_NUMBER: _ClassVar[int]
    detector: ModelUsed
    pose: ModelUsed
    def __init__(self, detector: _Optional[_Union[ModelUsed, _Mapping]] = ..., pose: _Optional[_Union[ModelUsed, _Mapping]] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("decode_ms", "inference_ms", "total_ms", "stages_ms")
    class StagesMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    STAGES_MS_FIELD_NUMBER: _ClassVar[int]
    decode_ms: float
    inference_ms: float
    total_ms: float
    stages_ms: _containers.ScalarMap[str, float]
    def __init__(self, decode_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., stages_ms: _Optional[_Mapping[str, float]] = ...) -> None: ...

class PoseResponse(_message.Message):
    __slots__ = ("image", "persons", "models", "timings", "warnings")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PERSONS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    image: ImageInfo
    persons: _containers.RepeatedCompositeFieldContainer[Person]
    models: ModelsUsed
    timings: Timings
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, image: _Optional[_Union[ImageInfo, _Mapping]] = ..., persons: _Optional[_Iterable[_Union[Person, _Mapping]]] = ..., models: _Optional[_Union[ModelsUsed, _Mapping]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamConfig(_message.Message):
    __slots__ = ("det_interval", "score_threshold", "max_persons", "pose_model", "detector", "smoothing", "smoothing_beta", "smoothing_min_cutoff", "smoothing_d_cutoff", "det_nms_thr", "pose_kpt_thr", "pose_min_keypoints", "pose_bbox_scale", "pose_nms_thr", "track_iou_thr", "track_max_missing", "fps")
    DET_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_PERSONS_FIELD_NUMBER: _ClassVar[int]
    POSE_MODEL_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    SMOOTHING_FIELD_NUMBER: _ClassVar[int]
    SMOOTHING_BETA_FIELD_NUMBER: _ClassVar[int]
    SMOOTHING_MIN_CUTOFF_FIELD_NUMBER: _ClassVar[int]
    SMOOTHING_D_CUTOFF_FIELD_NUMBER: _ClassVar[int]
    DET_NMS_THR_FIELD_NUMBER: _ClassVar[int]
    POSE_KPT_THR_FIELD_NUMBER: _ClassVar[int]
    POSE_MIN_KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    POSE_BBOX_SCALE_FIELD_NUMBER: _ClassVar[int]
    POSE_NMS_THR_FIELD_NUMBER: _ClassVar[int]
    TRACK_IOU_THR_FIELD_NUMBER: _ClassVar[int]
    TRACK_MAX_MISSING_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    det_interval: int
    score_threshold: float
    max_persons: int
    pose_model: str
    detector: str
    smoothing: bool
    smoothing_beta: float
    smoothing_min_cutoff: float
    smoothing_d_cutoff: float
    det_nms_thr: float
    pose_kpt_thr: float
    pose_min_keypoints: int
    pose_bbox_scale: float
    pose_nms_thr: float
    track_iou_thr: float
    track_max_missing: int
    fps: float
    def __init__(self, det_interval: _Optional[int] = ..., score_threshold: _Optional[float] = ..., max_persons: _Optional[int] = ..., pose_model: _Optional[str] = ..., detector: _Optional[str] = ..., smoothing: _Optional[bool] = ..., smoothing_beta: _Optional[float] = ..., smoothing_min_cutoff: _Optional[float] = ..., smoothing_d_cutoff: _Optional[float] = ..., det_nms_thr: _Optional[float] = ..., pose_kpt_thr: _Optional[float] = ..., pose_min_keypoints: _Optional[int] = ..., pose_bbox_scale: _Optional[float] = ..., pose_nms_thr: _Optional[float] = ..., track_iou_thr: _Optional[float] = ..., track_max_missing: _Optional[int] = ..., fps: _Optional[float] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("image", "timestamp")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    image: Image
    timestamp: float
    def __init__(self, image: _Optional[_Union[Image, _Mapping]] = ..., timestamp: _Optional[float] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("config", "frame")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    config: StreamConfig
    frame: Frame
    def __init__(self, config: _Optional[_Union[StreamConfig, _Mapping]] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ...) -> None: ...

class TrackedPerson(_message.Message):
    __slots__ = ("track_id", "bbox", "score", "keypoints", "detected")
    TRACK_ID_FIELD_NUMBER: _ClassVar[int]
    BBOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    DETECTED_FIELD_NUMBER: _ClassVar[int]
    track_id: int
    bbox: _containers.RepeatedScalarFieldContainer[float]
    score: float
    keypoints: _containers.RepeatedCompositeFieldContainer[Keypoint]
    detected: bool
    def __init__(self, track_id: _Optional[int] = ..., bbox: _Optional[_Iterable[float]] = ..., score: _Optional[float] = ..., keypoints: _Optional[_Iterable[_Union[Keypoint, _Mapping]]] = ..., detected: _Optional[bool] = ...) -> None: ...

class FrameError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class FrameResult(_message.Message):
    __slots__ = ("frame_index", "timestamp", "detected", "image", "persons", "models", "timings", "warnings", "error")
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    DETECTED_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PERSONS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    frame_index: int
    timestamp: float
    detected: bool
    image: ImageInfo
    persons: _containers.RepeatedCompositeFieldContainer[TrackedPerson]
    models: ModelsUsed
    timings: Timings
    warnings: _containers.RepeatedScalarFieldContainer[str]
    error: FrameError
    def __init__(self, frame_index: _Optional[int] = ..., timestamp: _Optional[float] = ..., detected: _Optional[bool] = ..., image: _Optional[_Union[ImageInfo, _Mapping]] = ..., persons: _Optional[_Iterable[_Union[TrackedPerson, _Mapping]]] = ..., models: _Optional[_Union[ModelsUsed, _Mapping]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., error: _Optional[_Union[FrameError, _Mapping]] = ...) -> None: ...
