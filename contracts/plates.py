"""Licence plates as they cross packages: the format, and a plate read with its confidence.

The format is GA 36-2018 (《中华人民共和国机动车号牌》, the Ministry of Public Security's
standard for motor-vehicle plates): the province's one-character abbreviation, the
issuing authority's letter, then the serial — five letters or digits on an ordinary
plate (京A·12345), six on a new-energy plate (粤B·D12345). Letters never include I or O,
so that they are not taken for 1 and 0. Stored and looked up without the dot.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, no O
PLATE_PATTERN = f"^[{PROVINCES}][{LETTERS}][{LETTERS}0-9]{{5,6}}$"
PLATE = re.compile(PLATE_PATTERN)


def plate_key(text: str) -> str:
    """`gw:plate:{text}:tickets`: the tickets that carry this plate, by report time."""
    return f"gw:plate:{text}:tickets"


def as_plate(raw: str) -> str | None:
    """A plate as a person types it (`沪a·d7521`, `沪A D7521`) in the stored form, or None
    when it is not a plate of that format. No character is guessed."""
    text = re.sub(r"[\s·•.\-]", "", raw).upper()
    return text if PLATE.fullmatch(text) else None


class PlateSeen(BaseModel):
    """A plate read: its text (no dot) and the reader's confidence, 0..1."""

    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, Field(pattern=PLATE_PATTERN)]
    confidence: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
