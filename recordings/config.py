"""The recordings config: segments, event windows, quotas, the disk alarm."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from gridwatch.contracts.config import Strict
from gridwatch.media.config import RecordConfig


class RecordingsConfig(Strict):
    segment_s: Annotated[float, Field(ge=2, le=3600)] = 60.0
    pre_s: Annotated[float, Field(ge=0, le=300)] = 10.0  # events: kept before a mark
    post_s: Annotated[float, Field(ge=0, le=3600)] = 20.0  # and after it
    max_gb: Annotated[float, Field(gt=0, le=1e9)] | None = None  # every camera together
    # Below this much free space recording stops (alarm: metric, log, wall warning).
    min_free_mb: Annotated[float, Field(ge=0, le=1e12)] = 1024.0
    evidence_keep_days: Annotated[float, Field(ge=0, le=36500)] = 365.0  # after the ticket ends
    check_s: Annotated[float, Field(ge=0.5, le=3600)] = 30.0  # retention and disk checks
    # Published streams (phones, drones) by id pattern, e.g. {"drone-*": {mode: continuous}}.
    streams: dict[Annotated[str, Field(pattern=r"^[a-z0-9*?_-]{1,63}$")], RecordConfig] = {}
    # Every node mounts the same server.data_dir (NFS and the like): any node reads,
    # repairs and deletes any segment and evidence file itself. False: each file lies on
    # the disk of the node that wrote it, and the others fetch it from that node.
    shared_storage: bool = False
