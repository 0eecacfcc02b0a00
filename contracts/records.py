"""Reading what is stored in Redis. One bad record — written by an older version, cut
short, edited by hand, or a number no reader takes — is logged with its key and
skipped; it never fails a list, a statistic or a page for every user."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

log = logging.getLogger("gridwatch.records")

T = TypeVar("T")
Reader = type[BaseModel] | Callable[..., Any] | None  # a model, a dataclass, or None: plain JSON


def load(reader: Reader, blob: bytes | str | None, what: str, key: str) -> Any | None:
    """The record as `reader` builds it (None: the JSON itself); None when missing or bad."""
    if blob is None:
        return None
    try:
        if isinstance(reader, type) and issubclass(reader, BaseModel):
            return reader.model_validate_json(blob)
        data = json.loads(blob)
        return data if reader is None else reader(**data)
    except (ValidationError, ValueError, TypeError, KeyError) as e:
        log.error("stored record is invalid, skipped", extra={"what": what, "key": key, "error": str(e)[:300]})
        return None


def load_all(reader: Reader, items: Iterable[tuple[str, bytes | str | None]], what: str) -> list[Any]:
    """Every good record of (key, blob) pairs, in order; missing and bad ones left out."""
    return [r for key, blob in items if (r := load(reader, blob, what, key)) is not None]
