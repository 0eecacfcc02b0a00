"""What a violation says about how it was detected, at the moment it was: the model
(file name and SHA-256), this worker's node, the clock's synchronisation state as the
kernel reports it, and the zone rule that was applied. The evidence package of the
ticket (dispatch.evidence_package) carries it as the detection-time facts.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

from gridwatch.contracts.clock import clock_state
from gridwatch.media.config import Camera


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and modification time too: weights replaced on disk are hashed anew.
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def model_facts(weights: str) -> dict:
    """`{file: base name, sha256: hex | None}` of the weights the worker loaded. Hashed
    once per process (the file is read again only when it changed); sha256 is None for
    weights that are not a file here (a model .yaml name ultralytics resolves itself).
    Blocking on the first call (reads the whole file): call it in a thread."""
    try:
        st = os.stat(weights)
        digest = _sha256(str(Path(weights).resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        digest = None
    return {"file": Path(weights).name, "sha256": digest}


def provenance(camera: Camera, zone: str, model: str | dict, node: str) -> dict:
    """The detection-time facts of a violation in `zone` of `camera`, by the model
    `model` (its `model_facts`, taken when it was loaded; or the weights' path, hashed now):

    `{model: {file, sha256}, node: the worker's node id, clock: contracts.clock.clock_state(),
    camera: {id, name, position: {lat, lon} | None}, zone: the zone as stored ({name, kind,
    polygon: [[x, y]], frame: [width, height] (the polygon is in pixels of a picture that
    size) or null (relative to the picture, 0 to 1), classes, dwell_s, hours}) | None}`.
    Blocking (see model_facts)."""
    rule = next((z for z in camera.zones if z.name == zone), None)
    return {
        "model": model if isinstance(model, dict) else model_facts(model),
        "node": node,
        "clock": clock_state(),
        "camera": {
            "id": camera.id,
            "name": camera.name,
            "position": camera.position.model_dump() if camera.position else None,
        },
        "zone": rule.model_dump(mode="json") if rule else None,
    }
