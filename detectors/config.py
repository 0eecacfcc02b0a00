"""The detector workers' config: the model, its classes, the rules' timings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from gridwatch.contracts.config import Strict

DEMO_MODEL = Path(__file__).resolve().parents[1] / "detectors" / "models" / "gridwatch-demo.pt"

COCO_GROUPS = {
    "vehicle": "vehicle", "stall": "stall",  # the demo model's own classes
    "car": "vehicle", "truck": "vehicle", "bus": "vehicle", "motorcycle": "vehicle",
    "person": "person",
    "umbrella": "stall", "chair": "stall", "dining table": "stall", "bench": "stall",
    "suitcase": "stall", "potted plant": "stall",
}  # fmt: skip


class DetectorsConfig(Strict):
    # A local file (or a model .yaml, for tests): weights are never downloaded. The
    # default is the demo model this project trains and ships (vehicle, person, stall).
    weights: str = str(DEMO_MODEL)
    imgsz: Annotated[int, Field(ge=64, le=2048)] = 640
    conf: Annotated[float, Field(gt=0, lt=1)] = 0.25
    device: str | None = None  # None: the GPU when there is one, else the CPU
    # The model's class names -> what the rules see; a custom model with a stall class maps it here.
    classes: dict[str, Literal["vehicle", "person", "stall"]] = COCO_GROUPS
    lease_s: Annotated[float, Field(ge=1, le=300)] = 10.0
    grace_s: Annotated[float, Field(gt=0, le=3600)] = 10.0  # an object unseen this long is gone
    cooldown_s: Annotated[float, Field(ge=0, le=30 * 86400)] = 300.0
    # The model looks this often, though the gate saw no change, while it follows an object
    # or lately saw a change (Frigate re-checks stationary objects about every 10 s too):
    # parked vehicles stay seen, the dwell runs on. An empty zone: six times less often.
    recheck_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    # Auto-verify of a resolved camera ticket: the spot must be clear this long in a row,
    # within this long of the resolution, or the ticket goes back to the officer.
    verify_clear_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    verify_window_s: Annotated[float, Field(gt=0, le=86400)] = 120.0
    # A dispatcher's dismissal keeps the spot quiet this long.
    dismiss_s: Annotated[float, Field(gt=0, le=366 * 86400)] = 86400.0
    # Read the plates of vehicles in no-parking zones (GA 36-2018, detectors/plates.py).
    plates: bool = True
