"""Evidence packages (issue 17): a real camera ticket's signed zip — numbered pictures with
time and place burned in, the recorder's clip, the plate, the detector's provenance —
checked by `gridwatch verify-evidence`, which names every file altered, removed or added;
the route's access rules, the keys of several nodes, and hostile zips."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import shutil
import stat
import subprocess
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gridwatch.detectors.provenance import _sha256, provenance
from gridwatch.dispatch.evidence_key import fingerprint
from gridwatch.dispatch.evidence_verify import Limits, verify
from gridwatch.media.config import Camera
from gridwatch.recordings.index import segments_key
from support.procs import DEMO_WEIGHTS, GRIDWATCH

POSITION = {"lat": 31.2601, "lon": 120.9203}
ZONE = {
    "name": "np-1",
    "kind": "no_parking",
    "polygon": [[0, 30], [64, 30], [64, 48], [0, 48]],
    "frame": [64, 48],  # pixels of the 64x48 pictures below
    "dwell_s": 120,
}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")  # with its UTC offset


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def picture(colour: int, size: tuple[int, int] = (48, 64)) -> bytes:
    img = np.full((*size, 3), colour, np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def camera_config(source: str, **extra) -> dict:
    return {
        "id": "gate",
        "name": "Gate East",
        "source": source,
        "position": POSITION,
        "zones": [ZONE],
        **extra,
    }


def violation(
    vid: str, camera: dict, confirmed: float, weights: str = DEMO_WEIGHTS
) -> dict[str, bytes | str]:
    """What the detector worker puts on gw:violations: the event with its provenance
    (made by the worker's own function) and the pictures."""
    event = {"id": vid, "camera": "gate", "zone": "np-1", "kind": "no_parking", "label": "vehicle",
             "box": [10, 20, 30, 40], "anchor": [10, 20, 30, 40], "first_seen": confirmed - 130,
             "confirmed": confirmed, "location": POSITION, "plate": {"text": "沪AD7521", "confidence": 0.93},
             "provenance": provenance(Camera(**camera), "np-1", weights, "detector-host-1")}  # fmt: skip
    return {"violation": json.dumps(event), "first.jpg": picture(40), "confirmed.jpg": picture(120),
            "crop.jpg": picture(200), "plate.jpg": picture(90, (14, 44))}  # fmt: skip


async def wait_ticket(http, gw, token: str, key: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        async with http.get(gw.base + "/api/tickets", headers=auth(token)) as r:
            found = [t for t in (await r.json())["tickets"] if t["key"] == key]
        if found:
            return found[0]
        assert time.monotonic() < deadline, gw.logs()[-3000:]
        await asyncio.sleep(0.2)


async def download(http, gw, token: str, ticket: str, to: Path) -> Path:
    async with http.get(f"{gw.base}/api/tickets/{ticket}/evidence.zip", headers=auth(token)) as r:
        assert r.status == 200, await r.text()
        assert r.content_type == "application/zip"
        assert f'filename="{ticket}-evidence.zip"' in r.headers["Content-Disposition"]
        await asyncio.to_thread(to.write_bytes, await r.read())
    return to


def check(path: Path, *key: str) -> subprocess.CompletedProcess:
    args = [GRIDWATCH, "verify-evidence", str(path), *(("--key", key[0]) if key else ())]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def failures(out: str) -> list[str]:
    return re.findall(r"^\s+FAIL\s+(\S+):", out, re.M)


def rewrite(
    src: Path, dst: Path, change: dict[str, bytes | None], add: dict[str, bytes] | None = None
) -> Path:
    """A copy of the zip with entries replaced (None: removed) and added, CRCs all correct:
    what someone who edits a package with an ordinary zip tool makes."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change.get(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info, data)
        for name, data in (add or {}).items():
            zout.writestr(name, data)
    return dst


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.fixture
def camera(rtsp_factory):
    return rtsp_factory({"/cam": "testsrc:320x240@25:400,gop=25"})


async def test_a_camera_tickets_package_verifies_and_every_alteration_is_named(
    camera, redis_server, gridwatch_factory, http, tmp_path
):
    cam = camera_config(camera.url("/cam"), record={"mode": "continuous"})
    gw = gridwatch_factory({
        "redis": {"url": redis_server.url},
        "dispatch": {"categories": {"illegal_parking": {"mode": "suggest"}}},
        "recordings": {"segment_s": 3, "pre_s": 2, "post_s": 2, "min_free_mb": 0, "check_s": 1},
        "cameras": [cam],
    })  # fmt: skip
    token = gw.token("dispatcher")
    r = redis.Redis.from_url(redis_server.url)
    deadline = time.monotonic() + 20  # the camera has been recording a while
    while not r.zcard(segments_key("gate")):
        assert time.monotonic() < deadline, gw.logs()[-3000:]
        await asyncio.sleep(0.2)
    weights = tmp_path / "model.pt"  # a copy: the demo model may be retrained meanwhile
    await asyncio.to_thread(shutil.copyfile, DEMO_WEIGHTS, weights)
    r.xadd("gw:violations", violation("gate:np-1:park1", cam, time.time() - 1, str(weights)))
    ticket = await wait_ticket(http, gw, token, "gate:np-1:park1")
    deadline = time.monotonic() + 40  # the recorder cuts the clip once its post-roll is written
    while not any(e.endswith("/clip.mp4") for e in ticket["evidence"]):
        assert time.monotonic() < deadline, gw.logs()[-3000:]
        await asyncio.sleep(0.5)
        async with http.get(f"{gw.base}/api/tickets/{ticket['id']}", headers=auth(token)) as resp:
            ticket = await resp.json()
    package = await download(http, gw, token, ticket["id"], tmp_path / "package.zip")

    # What it holds.
    with zipfile.ZipFile(package) as z:
        names = z.namelist()
        manifest = json.loads(z.read("manifest.json"))
        contents = {n: z.read(n) for n in names}
    assert {"manifest.json", "manifest.sig", "signing-key.pem", "clip.mp4"} <= set(names)
    served = {}
    for rel in ticket["evidence"]:
        async with http.get(
            f"{gw.base}/api/tickets/{ticket['id']}/evidence/{rel}", headers=auth(token)
        ) as resp:
            served[rel] = await resp.read()
    assert contents["clip.mp4"] == served[next(e for e in served if e.endswith("clip.mp4"))]
    assert (
        manifest["ticket"]["id"] == ticket["id"]
        and manifest["ticket"]["category"] == "illegal_parking"
    )
    assert manifest["ticket"]["opened_by"]["who"] == "detector"
    assert manifest["camera"] == {"id": "gate", "name": "Gate East", "position": POSITION,
                                  "source": "the detector, at detection"}  # fmt: skip
    zone = manifest["zone"]
    # The zone as stored, with the picture size its pixels are of: a reader can draw it.
    assert (zone["name"], zone["kind"], zone["polygon"], zone["frame"], zone["dwell_s"]) == (
        "np-1",
        "no_parking",
        ZONE["polygon"],
        ZONE["frame"],
        120,
    )
    det = manifest["detection"]
    assert ISO.match(det["first_seen"]["at"]) and ISO.match(det["confirmed"]["at"])
    assert det["dwell_s"] == pytest.approx(130, abs=0.01) and det["permitted_s"] == 120
    assert manifest["model"] == {
        "file": weights.name,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    assert manifest["detector"]["node"] == "detector-host-1"
    for clock in (manifest["detector"]["clock"], manifest["export"]["clock"]):
        assert clock["source"] == "adjtimex(2)" and isinstance(clock["synchronised"], bool)
        assert isinstance(clock["maxerror_us"], int) and isinstance(clock["esterror_us"], int)
    assert manifest["export"]["node"] and ISO.match(manifest["export"]["at"]["at"])
    assert manifest["plate"]["text"] == "沪AD7521" and manifest["plate"]["confidence"] == 0.93
    plate_listed = any(e.endswith("/plate.jpg") for e in ticket["evidence"])
    assert (manifest["plate"]["picture"] == "plate.jpg") == plate_listed == ("plate.jpg" in names)
    # The pictures: in time order, numbered k/N, each burned with its time and place.
    pics = manifest["pictures"]
    assert len(pics) >= 3 and [p["number"] for p in pics] == list(range(1, len(pics) + 1))
    assert [p["taken"]["unix"] for p in pics] == sorted(p["taken"]["unix"] for p in pics)
    assert (
        pics[0]["shows"] == "first seen in the zone" and pics[0]["file"] == "pictures/01-first.jpg"
    )
    assert pics[-1]["taken"]["unix"] - pics[0]["taken"]["unix"] > zone["dwell_s"]
    assert manifest["requirements"] | {"plate_picture": True} == {
        "pictures": len(pics), "at_least_three_pictures": True, "each_with_time_and_place": True,
        "two_apart_more_than_permitted_stop": True, "plate_picture": True, "signed": True}  # fmt: skip
    for p in pics:
        burned = cv2.imdecode(np.frombuffer(contents[p["file"]], np.uint8), cv2.IMREAD_COLOR)
        original = cv2.imdecode(np.frombuffer(contents[p["original"]], np.uint8), cv2.IMREAD_COLOR)
        assert burned.shape[0] > original.shape[0] + 40  # the band under the picture
        assert burned[original.shape[0] + 5 :].max() > 200  # with white text on it
    for rel, data in served.items():  # every evidence file, byte for byte, once
        name = (
            rel.rsplit("/", 1)[-1]
            if rel.endswith(("/clip.mp4", "/plate.jpg"))
            else f"originals/{rel}"
        )
        assert contents[name] == data, rel
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == set(names) - {"manifest.json", "manifest.sig"}
    for name, f in listed.items():
        assert f["sha256"] == hashlib.sha256(contents[name]).hexdigest() and f["size"] == len(
            contents[name]
        )

    # Intact: 3 with the key inside (integrity only, said plainly), 0 with the node's key.
    ok = check(package)
    assert (
        ok.returncode == 3 and "INTACT, ORIGIN UNPROVEN" in ok.stdout and not failures(ok.stdout)
    ), ok.stdout + ok.stderr
    async with http.get(gw.base + "/api/evidence/key", headers=auth(token)) as resp:
        published = await resp.json()
    assert manifest["signature"]["key_fingerprint"] == published["fingerprint"] in ok.stdout
    assert "not who signed it" in ok.stdout
    key_file = tmp_path / "node.pem"
    key_file.write_text(published["public_key"])
    ok = check(package, str(key_file))
    assert ok.returncode == 0 and "Checked against the key given" in ok.stdout, ok.stdout

    # One changed byte in a picture: that picture, and nothing else.
    first = pics[0]["file"]
    bad = check(rewrite(package, tmp_path / "picture.zip", {first: flip(contents[first], 600)}))
    assert bad.returncode == 1 and failures(bad.stdout) == [first], bad.stdout
    assert "altered" in bad.stdout
    # The same, flipped in the zip's own bytes (its CRC no longer matches): named too.
    raw = package.read_bytes()
    middle = len(contents[first]) // 2
    at = raw.index(contents[first][middle : middle + 40])
    (tmp_path / "raw.zip").write_bytes(flip(raw, at + 10))
    bad = check(tmp_path / "raw.zip")
    assert bad.returncode == 1 and failures(bad.stdout) == [first], bad.stdout
    # One changed byte in the manifest: the signature fails.
    text = contents["manifest.json"].replace(b'"dwell_s": 130.0', b'"dwell_s": 131.0')
    assert text != contents["manifest.json"]
    bad = check(rewrite(package, tmp_path / "manifest.zip", {"manifest.json": text}))
    assert bad.returncode == 1 and failures(bad.stdout) == ["manifest.json"], bad.stdout
    assert "signature does not verify" in bad.stdout
    # A removed file, and an added one, are named.
    bad = check(rewrite(package, tmp_path / "removed.zip", {"clip.mp4": None}))
    assert (
        bad.returncode == 1 and failures(bad.stdout) == ["clip.mp4"] and "missing" in bad.stdout
    ), bad.stdout
    bad = check(
        rewrite(package, tmp_path / "added.zip", {}, {"pictures/00-extra.jpg": picture(10)})
    )
    assert bad.returncode == 1 and failures(bad.stdout) == ["pictures/00-extra.jpg"], bad.stdout
    assert "not in the manifest" in bad.stdout
    # Re-signed with another key: the package's own key checks out, the node's does not.
    other = Ed25519PrivateKey.generate()
    other_pem = other.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    relisted_key = [{**f, "sha256": hashlib.sha256(other_pem).hexdigest(), "size": len(other_pem)}
                    if f["name"] == "signing-key.pem" else f for f in manifest["files"]]  # fmt: skip
    forged_manifest = json.dumps({**manifest, "files": relisted_key, "signature": {
        **manifest["signature"], "key_fingerprint": fingerprint(other.public_key())}}).encode()  # fmt: skip
    forged = rewrite(package, tmp_path / "forged.zip", {
        "manifest.json": forged_manifest, "manifest.sig": other.sign(forged_manifest),
        "signing-key.pem": other_pem})  # fmt: skip
    bad = check(forged, str(key_file))
    assert bad.returncode == 1 and "manifest.json" in failures(bad.stdout), bad.stdout
    # Without --key the forgery is consistent: intact, but never the plain "all is well".
    assert check(forged).returncode == 3
    # A picture altered with its hash changed in the manifest to match: the manifest fails,
    # and the picture is not passed as matching a manifest nobody signed.
    altered = bytearray(contents[first])
    altered[len(altered) // 2] ^= 0x01
    relisted = json.dumps({**manifest, "files": [
        {**f, "sha256": hashlib.sha256(bytes(altered)).hexdigest()} if f["name"] == first else f
        for f in manifest["files"]]}).encode()  # fmt: skip
    both = rewrite(
        package, tmp_path / "both.zip", {first: bytes(altered), "manifest.json": relisted}
    )
    bad = check(both, str(key_file))
    assert bad.returncode == 1 and failures(bad.stdout) == ["manifest.json"], bad.stdout
    assert (
        f"{first}: " in bad.stdout
        and "unproven" in bad.stdout.split(f"{first}: ")[1].splitlines()[0]
    )
    # Not a zip, or a key that is not one: 2.
    assert check(tmp_path / "node.pem").returncode == 2
    assert check(package, str(package)).returncode == 2
    r.close()


async def test_the_package_follows_the_evidence_access_rules_and_every_node_publishes_its_key(
    redis_server, gridwatch_factory, http, tmp_path, users
):
    cam = camera_config("lavfi:testsrc")
    config = {"redis": {"url": redis_server.url}, "cameras": [cam],
              "dispatch": {"categories": {"illegal_parking": {"mode": "suggest"}}}}  # fmt: skip
    gw = gridwatch_factory(config)
    # A second node with a key of its own at a configured path.
    own = tmp_path / "node2-key.pem"
    own.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    own.chmod(0o600)
    gw2 = gridwatch_factory({**config, "server": {"evidence_key": str(own)}}, name="gw2")
    r = redis.Redis.from_url(redis_server.url)
    r.xadd("gw:violations", violation("gate:np-1:park2", cam, time.time()))
    disp = gw.token("dispatcher")
    ticket = await wait_ticket(http, gw, disp, "gate:np-1:park2")
    url = f"/api/tickets/{ticket['id']}/evidence.zip"

    # The key: made once under data_dir, 0600; only its public half is served, never logged.
    key_path = gw.workdir / "data" / "keys" / "evidence-ed25519.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    private = serialization.load_pem_private_key(key_path.read_bytes(), None)
    async with http.get(gw.base + "/api/evidence/key", headers=auth(disp)) as resp:
        mine = await resp.json()
    assert mine["fingerprint"] == fingerprint(private.public_key()) and "PRIVATE" not in json.dumps(
        mine
    )
    own_fp = fingerprint(serialization.load_pem_private_key(own.read_bytes(), None).public_key())
    assert {k["fingerprint"] for k in mine["keys"]} == {mine["fingerprint"], own_fp}
    async with http.get(
        gw.base + "/api/evidence/key", params={"fingerprint": own_fp}, headers=auth(disp)
    ) as resp:
        theirs = await resp.json()
    async with http.get(gw.base + "/api/evidence/key", params={"fingerprint": "SHA256:" + "0" * 64},
                        headers=auth(disp)) as resp:  # fmt: skip
        assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    # A package exported on node 2 checks out with node 2's key as node 1 hands it out.
    package = await download(
        http, gw2, gw2.token("dispatcher"), ticket["id"], tmp_path / "node2.zip"
    )
    (tmp_path / "node2.pub").write_text(theirs["public_key"])
    ok = check(package, str(tmp_path / "node2.pub"))
    assert ok.returncode == 0 and own_fp in ok.stdout, ok.stdout
    with zipfile.ZipFile(package) as z:
        assert json.loads(z.read("manifest.json"))["signature"]["key_fingerprint"] == own_fp
        assert all(b"PRIVATE KEY" not in z.read(n) for n in z.namelist())

    # Who may export: the evidence's rules, and clear JSON otherwise.
    async with http.get(gw.base + url) as resp:
        assert resp.status == 401 and (await resp.json())["error"]
    for user, status in (("viewer", 200), ("admin", 200), ("officer", 403), ("tracker", 403)):
        async with http.get(gw.base + url, headers=auth(gw.token(user))) as resp:
            assert resp.status == status, (user, resp.status)
            if status != 200:
                assert (
                    resp.content_type == "application/json"
                    and (await resp.json())["error"] == "forbidden"
                )
    for missing in ("T-999999", "nope", "T-000001%2F..%2F..%2Fx"):
        async with http.get(
            f"{gw.base}/api/tickets/{missing}/evidence.zip", headers=auth(disp)
        ) as resp:
            assert resp.status == 404, (missing, resp.status)
            assert (await resp.json())["error"] == "not_found"
    # Nothing of the private key in either node's log.
    secret = key_path.read_text().splitlines()[1]
    assert secret not in gw.logs() and own.read_text().splitlines()[1] not in gw2.logs()
    assert not list((gw.workdir / "data" / "exports").iterdir())  # no package left behind
    r.close()


def test_check_config_names_a_bad_evidence_key(tmp_path):
    cfg = tmp_path / "gw.yaml"
    key = tmp_path / "key.pem"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    cfg.write_text(yaml.safe_dump({"server": {"evidence_key": str(key)}}))

    def check_config() -> subprocess.CompletedProcess:
        return subprocess.run(
            [GRIDWATCH, "check-config", str(cfg)], capture_output=True, text=True, timeout=60
        )

    key.chmod(0o644)
    out = check_config()
    assert (
        out.returncode == 1 and "server.evidence_key:" in out.stdout and "chmod 600" in out.stdout
    )
    secret = key.read_text().splitlines()[1]
    key.chmod(0o600)
    assert check_config().returncode == 0
    key.write_text("not a key\n")
    out = check_config()
    assert out.returncode == 1 and "server.evidence_key:" in out.stdout and secret not in out.stdout
    cfg.write_text(yaml.safe_dump({"server": {"evidence_key": str(tmp_path)}}))
    out = check_config()
    assert out.returncode == 1 and "server.evidence_key" in out.stdout


def test_hostile_zips_are_named_and_never_unpacked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a careless unpacker would write
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("../../escaped.txt", b"x")
        z.writestr("/etc/evil", b"x")
        z.writestr("bomb.bin", b"\0" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
        z.writestr("manifest.json", b"{}")
    (tmp_path / "hostile.zip").write_bytes(bomb.getvalue())
    report = verify(tmp_path / "hostile.zip", limits=Limits())
    named = {f.name: f.message for f in report.problems}
    assert "unsafe" in named["../../escaped.txt"] and "unsafe" in named["/etc/evil"]
    assert "zip bomb" in named["bomb.bin"] and not report.ok
    assert not (tmp_path.parent / "escaped.txt").exists() and not (tmp_path / "bomb.bin").exists()
    out = check(tmp_path / "hostile.zip")
    assert out.returncode == 1 and {"../../escaped.txt", "/etc/evil", "bomb.bin"} <= set(
        failures(out.stdout)
    )
    # Too many entries: refused before any is read.
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as z:
        for i in range(50):
            z.writestr(f"f{i}", b"")
    assert [f.name for f in verify(tmp_path / "many.zip", limits=Limits(entries=10)).problems] == [
        "package"
    ]


async def test_the_worker_puts_the_detection_time_facts_on_each_violation(redis_server, tmp_path):
    import redis.asyncio as aioredis

    from gridwatch.detectors.config import DetectorsConfig
    from gridwatch.detectors.rules import Violation
    from gridwatch.detectors.worker import CameraWatch, Frame

    weights = tmp_path / "model.pt"
    await asyncio.to_thread(shutil.copyfile, DEMO_WEIGHTS, weights)
    digest = hashlib.sha256(await asyncio.to_thread(weights.read_bytes)).hexdigest()
    cam = Camera(**camera_config("lavfi:testsrc"))
    client = aioredis.from_url(redis_server.url)
    watch = CameraWatch(client, cam, lambda: None, DetectorsConfig(weights=str(weights)))
    rules, _, _ = watch.draw((64, 48))  # the pictures' size
    now = time.time()
    hashed = _sha256.cache_info()
    for n in range(2):
        v = Violation(id=f"v-{n}", camera="gate", zone="np-1", kind="no_parking", label="vehicle",
                      box=(10, 20, 30, 40), anchor=(10, 20, 30, 40), first_seen=now - 130, confirmed=now,
                      track_ids=(1,), incident=f"i-{n}")  # fmt: skip
        await watch.publish(v, Frame(picture(120)), (picture(40), now - 130), rules)
    entries = await client.xrange("gw:violations")
    events = [json.loads(fields[b"violation"]) for _, fields in entries]
    assert len(events) == 2
    after = _sha256.cache_info()  # the weights were read once for both
    assert after.misses == hashed.misses + 1 and after.hits >= hashed.hits + 1
    for event in events:
        prov = event["provenance"]
        assert prov["model"] == {"file": "model.pt", "sha256": digest}
        assert prov["node"] and prov["clock"]["source"] == "adjtimex(2)"
        assert isinstance(prov["clock"]["synchronised"], bool) and prov["clock"]["read_at"] >= now
        assert prov["zone"] == {**ZONE, "classes": None, "dwell_s": 120.0, "hours": None}
        assert prov["camera"] == {"id": "gate", "name": "Gate East", "position": POSITION}
        # Each picture with the time of the frame it came from.
        assert event["pictures_at"] == {
            "first.jpg": now - 130,
            "confirmed.jpg": now,
            "crop.jpg": now,
        }
    await client.aclose()
