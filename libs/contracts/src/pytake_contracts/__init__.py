"""PyTake's event contracts: the envelope, every event, and the topic catalog."""

from . import topics
from .envelope import Contract, Event, UnknownEventError, decode_event, encode_event, utc_now
from .events import *  # noqa: F403
from .events import __all__ as _events_all  # type: ignore[attr-defined]

__all__ = ["Contract", "Event", "UnknownEventError", "decode_event", "encode_event", "topics", "utc_now", *_events_all]
