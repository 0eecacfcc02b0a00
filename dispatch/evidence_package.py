"""A ticket's evidence package: one signed zip a court or an appeals office can check.

Layout (format `gridwatch-evidence/1`):

- `pictures/NN-NAME.jpg`: every picture of the ticket in time order, numbered, with
  "k/N", the time (ISO 8601 with the node's UTC offset), the camera, the place and
  what it shows burned into a band under it (the picture itself is not drawn over);
- `clip.mp4`: the recorder's evidence clip, when the ticket has one;
- `plate.jpg`: the plate crop, when the ticket has one (its text is in the manifest);
- `originals/FOLDER/NAME`: every other evidence file byte for byte as it is stored (the
  detector's pictures before the burn-in, officers' photos, verification snapshots);
- `signing-key.pem`: the public key that signed the package;
- `manifest.json`: the ticket, camera, place, zone, detection times and dwell, the model
  (file name, SHA-256), the detector's node and clock state at detection, the exporting
  node and its clock state at export, and the SHA-256 and size of every file above;
- `manifest.sig`: the Ed25519 signature (64 raw bytes) of manifest.json's exact bytes.

Built in a thread (`build` blocks: it decodes and encodes pictures and hashes the clip).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from gridwatch.contracts.clock import clock_state
from gridwatch.contracts.evidence import EvidenceStore
from gridwatch.dispatch.evidence_key import ALGORITHM, SigningKey
from gridwatch.dispatch.tickets import Ticket
from gridwatch.dispatch.violations import DETECTION
from gridwatch.media.config import Camera

FORMAT = "gridwatch-evidence/1"
MANIFEST, SIGNATURE, PUBLIC_KEY = "manifest.json", "manifest.sig", "signing-key.pem"
PICTURE_TYPES = (".jpg", ".jpeg", ".png")
MAX_DETECTION_BYTES = 1024 * 1024
# What each of the detector's pictures shows, and the detection time it was taken at.
CAMERA_PICTURES = {
    "first.jpg": ("first seen in the zone", "first_seen"),
    "confirmed.jpg": ("still there when the dwell had passed", "confirmed"),
    "crop.jpg": ("the object at confirmation", "confirmed"),
    "plate.jpg": ("the plate", "confirmed"),
}
_VERIFY = re.compile(r"-verify-(\d{10,16})-\d+$")  # a verification's folder: its entry id (ms)
_PHOTO = re.compile(r"^photo-(\d{10,16})-")  # an officer's photo: its upload time (ms)
CHUNK = 1 << 20


def iso(ts: float, timespec: str = "milliseconds") -> str:
    """Unix seconds as ISO 8601 in this machine's time zone, with its UTC offset."""
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec=timespec)


def at(ts: float | None) -> dict | None:
    return None if ts is None else {"at": iso(ts), "unix": round(ts, 3)}


@dataclass
class Picture:
    rel: str  # its name in the evidence store
    path: Path
    what: str
    taken: float  # Unix s
    time_source: str
    place: str  # "camera" or "scene"
    out: str = ""  # its name in the package, once numbered


def _plate(ticket: Ticket, detection: dict) -> dict | None:
    """{text, confidence} from the ticket (a model or a dict), else the detector's message."""
    raw = getattr(ticket, "plate", None) or detection.get("plate")
    if raw is None:
        return None
    if hasattr(raw, "model_dump"):
        raw = raw.model_dump(mode="json")
    if not isinstance(raw, dict) or not raw.get("text"):
        return None
    return {"text": str(raw["text"]), "confidence": raw.get("confidence")}


def _read_detection(store: EvidenceStore, ticket: Ticket) -> dict:
    """The detector's message saved beside the pictures (dispatch.violations), or {}."""
    if ticket.source != "camera" or not ticket.key:
        return {}
    path = store.path(store.name(ticket.key, DETECTION))
    if path is None:
        return {}
    try:
        data = path.read_bytes()[: MAX_DETECTION_BYTES + 1]
        found = json.loads(data) if len(data) <= MAX_DETECTION_BYTES else None
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _number(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _picture_time(rel: str, path: Path, detection: dict) -> tuple[str, float, str, str]:
    """(what it shows, when it was taken, where that time comes from, camera|scene)."""
    p = PurePosixPath(rel)
    taken = detection.get("pictures_at")
    if (
        p.name in CAMERA_PICTURES
        and isinstance(taken, dict)
        and (ts := _number(taken.get(p.name))) is not None
    ):
        what, _ = CAMERA_PICTURES[p.name]
        return what, ts, "the frame's time (the camera's node clock)", "camera"
    if (
        p.name in CAMERA_PICTURES
        and (ts := _number(detection.get(CAMERA_PICTURES[p.name][1]))) is not None
    ):  # a violation from before pictures_at: the detection time the picture belongs to
        what, field = CAMERA_PICTURES[p.name]
        return what, ts, f"the detector's {field} (frame time, the camera's node clock)", "camera"
    if p.name == "snapshot.jpg" and (m := _VERIFY.search(p.parent.name)):
        return (
            "verification snapshot after resolve",
            int(m[1]) / 1000,
            "the detector's answer (Redis entry time)",
            "camera",
        )
    if m := _PHOTO.match(p.name):
        return (
            "photo taken at the scene",
            int(m[1]) / 1000,
            "upload time (the node's clock)",
            "scene",
        )
    place = "camera" if p.name in CAMERA_PICTURES or p.name == "snapshot.jpg" else "scene"
    return p.stem, path.stat().st_mtime, "file modification time (no recorded time)", place


def _burn(path: Path, lines: list[str]) -> bytes | None:
    """The picture with `lines` written in a black band under it (JPEG); None if it does
    not decode. Hershey fonts: characters outside ASCII are written as '?'."""
    img = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return None
    h, w = img.shape[:2]
    width = max(w, 640)
    lines = [ln.encode("ascii", "replace").decode() for ln in lines]
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, 1
    widest = max(cv2.getTextSize(ln, font, 1.0, thick)[0][0] for ln in lines)
    scale = max(0.35, min(0.8, (width - 20) / max(widest, 1)))
    line_h = int(34 * scale) + 6
    band = line_h * len(lines) + 10
    canvas = np.zeros((h + band, width, 3), np.uint8)
    x0 = (width - w) // 2
    canvas[:h, x0 : x0 + w] = img
    for i, ln in enumerate(lines):
        y = h + 8 + line_h * (i + 1) - 6
        cv2.putText(canvas, ln, (10, y), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return buf.tobytes() if ok else None


def _place_text(position: dict | None) -> str:
    if not position:
        return "position unknown"
    return f"lat {position['lat']:.6f} lon {position['lon']:.6f} (WGS 84)"


class _Zip:
    """The zip being written, with the SHA-256 and size of every entry."""

    def __init__(self, out: Path):
        self.zf = zipfile.ZipFile(out, "w", allowZip64=True)
        self.files: list[dict] = []

    def add_bytes(self, name: str, data: bytes, compress: bool = False) -> None:
        kind = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        self.zf.writestr(zipfile.ZipInfo(name, time.localtime()[:6]), data, compress_type=kind)
        self.files.append(
            {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        )

    def add_file(self, name: str, path: Path) -> None:
        """Copied in chunks and hashed as it is written: what is hashed is what is in the zip."""
        digest, size = hashlib.sha256(), 0
        info = zipfile.ZipInfo(name, time.localtime()[:6])
        info.compress_type = zipfile.ZIP_STORED  # pictures and video are compressed already
        with path.open("rb") as src, self.zf.open(info, "w", force_zip64=True) as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                dst.write(chunk)
        self.files.append({"name": name, "sha256": digest.hexdigest(), "size": size})

    def close(self) -> None:
        self.zf.close()


def build(
    out: Path,
    ticket: Ticket,
    opened: dict | None,
    camera: Camera | None,
    store: EvidenceStore,
    key: SigningKey,
    node: str,
    software: str = "gridwatch",
) -> dict:
    """Write the ticket's package to `out`; returns its manifest.

    `opened`: the ticket's `create` audit entry (who opened it, when); `camera`: the
    camera as the registry has it now (the detection-time facts of the detector's
    message win where it has them); `node`: the exporting node's id. Evidence files the
    store no longer has are named under `evidence.missing`. Raises OSError when `out`
    cannot be written."""
    detection = _read_detection(store, ticket)
    prov = detection.get("provenance") if isinstance(detection.get("provenance"), dict) else {}
    cam_then = prov.get("camera") if isinstance(prov.get("camera"), dict) else {}
    cam = {
        "id": ticket.camera,
        "name": cam_then.get("name", camera.name if camera else None),
        "position": cam_then.get("position") or (camera.position.model_dump() if camera and camera.position else None),
        "source": "the detector, at detection" if cam_then else "the camera registry, at export",
    }  # fmt: skip
    zone_name = detection.get("zone") or (ticket.detection.zone if ticket.detection else None)
    zone = prov.get("zone") if isinstance(prov.get("zone"), dict) else None
    if zone is not None:
        zone = {**zone, "source": "the detector, at detection"}
    elif camera is not None and (z := next((z for z in camera.zones if z.name == zone_name), None)):
        zone = {**z.model_dump(mode="json"), "source": "the camera registry, at export"}
    first_seen, confirmed = (
        _number(detection.get("first_seen")),
        _number(detection.get("confirmed")),
    )
    dwell = confirmed - first_seen if first_seen is not None and confirmed is not None else None
    permitted = _number(zone.get("dwell_s")) if zone else None
    plate = _plate(ticket, detection)

    pictures: list[Picture] = []
    clip: tuple[str, Path] | None = None
    plate_file: tuple[str, Path] | None = None
    others: list[tuple[str, Path]] = []
    missing: list[str] = []
    seen: set[str] = set()
    for listed_as in dict.fromkeys(ticket.evidence):
        path = store.path(listed_as)
        if path is None:
            missing.append(listed_as)
            continue
        # Its name inside the store, resolved: no `..` nor `/` at its start reaches the zip,
        # and two names for one file are one file.
        rel = path.relative_to(store.root).as_posix()
        if rel in seen:
            continue
        seen.add(rel)
        name = PurePosixPath(rel).name
        if name == "clip.mp4" and clip is None:
            clip = (rel, path)
        elif name.lower().endswith(PICTURE_TYPES):
            what, taken, source, place = _picture_time(rel, path, detection)
            pictures.append(Picture(rel, path, what, taken, source, place))
            if name == "plate.jpg" and plate_file is None:
                plate_file = (rel, path)
            else:
                others.append((rel, path))
        else:
            others.append((rel, path))
    pictures.sort(key=lambda p: p.taken)

    camera_text = f"camera {cam['id'] or '-'}" + (f" ({cam['name']})" if cam["name"] else "")
    zone_text = f"zone {zone['name']} ({zone['kind']})" if zone else ""
    z = _Zip(out)
    listed: list[dict] = []
    try:
        for i, pic in enumerate(pictures, 1):
            where = (
                f"{camera_text}  {_place_text(cam['position'])}"
                if pic.place == "camera"
                else f"at the scene  {_place_text(ticket.location.model_dump())}"
            )
            what = pic.what
            if pic.rel.endswith("confirmed.jpg") and dwell is not None:
                what += f": {dwell:.0f} s in the zone" + (
                    f" (permitted {permitted:.0f} s)" if permitted else ""
                )
            if pic.rel.endswith("plate.jpg") and plate:
                conf = plate.get("confidence")
                what += f" (read with confidence {conf:.2f})" if isinstance(conf, float) else ""
            lines = [f"{i}/{len(pictures)}  {iso(pic.taken, 'seconds')}  ticket {ticket.id}", where,
                     f"{what}  {zone_text}".strip()]  # fmt: skip
            burned = _burn(pic.path, lines)
            entry = {"number": i, "of": len(pictures), "shows": pic.what, "taken": at(pic.taken),
                     "time_source": pic.time_source, "original": None, "file": None}  # fmt: skip
            if burned is not None:
                pic.out = f"pictures/{i:02d}-{PurePosixPath(pic.rel).stem}.jpg"
                z.add_bytes(pic.out, burned)
                entry["file"] = pic.out
            else:
                entry["note"] = "does not decode as a picture: only the original is included"
            listed.append(entry)
        names: dict[str, str] = {}  # evidence name -> name in the package
        if clip:
            z.add_file("clip.mp4", clip[1])
            names[clip[0]] = "clip.mp4"
        if plate_file:
            z.add_file("plate.jpg", plate_file[1])
            names[plate_file[0]] = "plate.jpg"
        for rel, path in others:
            names[rel] = f"originals/{rel}"
            z.add_file(names[rel], path)
        for entry, pic in zip(listed, pictures, strict=True):
            entry["original"] = names.get(pic.rel)
        z.add_bytes(PUBLIC_KEY, key.public_pem.encode(), compress=True)
        export_at = time.time()
        count = sum(1 for e in listed if e["file"])
        camera_times = [p.taken for p, e in zip(pictures, listed, strict=True)
                        if p.place == "camera" and e["file"]]  # fmt: skip
        manifest = {
            "format": FORMAT,
            "ticket": {"id": ticket.id, "category": ticket.category, "state": ticket.state, "source": ticket.source,
                       "priority": ticket.priority, "key": ticket.key, "description": ticket.description,
                       "reported": at(ticket.created_at), "location": ticket.location.model_dump(),
                       "opened_by": {"who": opened.get("who"), "role": opened.get("role"), "at": at(_number(opened.get("at")))}
                       if opened else None},
            "camera": cam,
            "zone": zone,
            "detection": {
                "violation": detection.get("id"),
                "label": detection.get("label") or (ticket.detection.label if ticket.detection else None),
                "box": detection.get("box") or (list(ticket.detection.box) if ticket.detection else None),
                "anchor": detection.get("anchor"),
                "first_seen": at(first_seen),
                "confirmed": at(confirmed),
                "dwell_s": None if dwell is None else round(dwell, 3),
                "permitted_s": permitted,
                "source": f"{DETECTION}: the detector's message as dispatch received it" if detection else None,
            },
            "plate": {**plate, "picture": "plate.jpg" if plate_file else None} if plate else None,
            "model": prov.get("model"),
            "detector": {"node": prov.get("node"), "clock": prov.get("clock")} if prov else None,
            "export": {"node": node, "at": at(export_at), "software": software, "clock": clock_state()},
            "requirements": {
                "pictures": count,
                "at_least_three_pictures": count >= 3,
                "each_with_time_and_place": all(e["taken"] for e in listed) and bool(listed),
                # From the pictures' own times: two of them at least the permitted stop apart.
                "two_apart_more_than_permitted_stop": bool(permitted is not None and len(camera_times) >= 2
                                                           and max(camera_times) - min(camera_times) >= permitted),
                "plate_picture": plate_file is not None,
                "signed": True,
            },
            "pictures": listed,
            "clip": "clip.mp4" if clip else None,
            "evidence": {"listed": list(ticket.evidence), "missing": missing},
            "files": list(z.files),
            "signature": {"algorithm": ALGORITHM, "key_fingerprint": key.fingerprint, "public_key": PUBLIC_KEY,
                          "file": SIGNATURE, "signs": f"the exact bytes of {MANIFEST}"},
            "clock_source": "adjtimex(2) as the kernel reports it: synchronised unless STA_UNSYNC is set or "
                            "the call returns TIME_ERROR; maxerror_us and esterror_us in microseconds",
        }  # fmt: skip
        data = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
        z.add_bytes(MANIFEST, data, compress=True)
        signature = key.sign(data)
        z.zf.writestr(zipfile.ZipInfo(SIGNATURE, time.localtime()[:6]), signature)
    finally:
        z.close()
    return manifest
