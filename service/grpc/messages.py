"""Between protobuf messages and the API's pydantic models, both ways.

The pydantic models (``service.app.schemas``) are the single definition of a response's
content; the proto messages mirror their field names, so conversion goes field by field through
``json_format`` and both APIs answer the same content by construction. Clients use this too.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf import json_format
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def to_message(model: BaseModel, message_type):
    """pydantic -> protobuf, field by field (unset ``None`` fields stay unset)."""
    return json_format.ParseDict(model.model_dump(exclude_none=True), message_type())


def message_dict(message) -> dict:
    """Every field by its proto name; unset optional fields and messages are None (JSON null)."""
    out: dict = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        sub = field.message_type
        if sub is not None and sub.GetOptions().map_entry:
            out[field.name] = dict(value)
        elif field.is_repeated:
            out[field.name] = [message_dict(v) for v in value] if sub else list(value)
        elif field.has_presence and not message.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = message_dict(value) if sub else value
    return out


def to_model(message, model_type: type[M]) -> M:
    """protobuf -> pydantic (so a gRPC client's JSON matches the HTTP API's)."""
    return model_type.model_validate(message_dict(message))


def set_fields(message) -> dict:
    """Fields the sender set (proto3 ``optional`` presence; empty strings mean unset)."""
    return {f.name: v for f, v in message.ListFields() if not (isinstance(v, str) and not v)}
