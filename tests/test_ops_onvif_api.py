"""The cameras screen's server side against a real ONVIF device (ipycam on loopback) and a
real `gridwatch serve`: discovery scans, a test picture before saving, write-only
passwords, PTZ status and presets, and what the API refuses."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

import cv2
import numpy as np
import pytest

from gridwatch.media.config import Camera
from gridwatch.media.onvif import OnvifFailure, own_address
from gridwatch.media.sources import parse_source
from gridwatch.signaling.api_onvif import MAX_PROBES
from gridwatch.signaling.cameras import keep_stored_passwords
from gridwatch.signaling.http_errors import JsonError
from support.onvif_device import PASSWORD, USER, IpyCam
from support.procs import GridwatchServer, free_port, make_video, stop

WRONG = "Wrong-Secret-55"
READ_TIMEOUT_S = 2.0  # the probe's deadline is twice this


@pytest.fixture(scope="module")
def cam(tmp_path_factory) -> IpyCam:
    workdir = tmp_path_factory.mktemp("ipycam")
    video = make_video(workdir / "scene.mp4", "640x360", 15, 10)
    device = IpyCam(workdir, video)
    try:
        asyncio.run(device.ready())
        yield device
    finally:
        stop(device.proc)


@pytest.fixture(scope="module")
def gw(tmp_path_factory, users, cam) -> GridwatchServer:
    server = GridwatchServer(tmp_path_factory.mktemp("ops-onvif"), {
        "users": users,
        "media": {
            "read_timeout_s": READ_TIMEOUT_S,
            "deny_hosts": [],  # the device is on loopback
            "api_sources": ["onvif", "rtsp"],  # not rtsps: a scheme the probe must refuse
            "discover_interface": "127.0.0.1",  # ipycam answers on loopback only
        },
    }).start()  # fmt: skip
    server.tokens = {u: server.token(u) for u in ("admin", "dispatcher", "viewer", "officer")}
    yield server
    server.stop()
    assert server.tracebacks() == []


def auth(gw: GridwatchServer, user: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.tokens[user]}"}


def onvif_url(cam: IpyCam, password: str = PASSWORD, port: int | None = None) -> str:
    return f"onvif://{USER}:{password}@127.0.0.1:{port or cam.onvif_port}"


def decoded(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    return img


async def add_camera(http, gw, cid: str, source: str) -> None:
    async with http.post(gw.base + "/api/cameras", json={"id": cid, "source": source}, headers=auth(gw)) as r:
        assert r.status in (201, 409), await r.text()  # 409: an earlier test added it


async def ptz(http, gw, cid: str) -> dict:
    async with http.get(gw.base + f"/api/cameras/{cid}/ptz", headers=auth(gw, "dispatcher")) as r:
        text = await r.text()
        assert r.status == 200, text
        assert PASSWORD not in text
        return await r.json()


# Discovery ---------------------------------------------------------------------------


async def test_a_discovery_scan_finds_the_device_and_concurrent_scans_share_one(cam, gw, http):
    before = len(gw.records("discovery scan"))

    async def scan(timeout: float) -> list[dict]:
        async with http.post(gw.base + "/api/cameras/discover", json={"timeout_s": timeout}, headers=auth(gw)) as r:
            assert r.status == 200, await r.text()
            return (await r.json())["devices"]

    first, second = await asyncio.gather(scan(1.5), scan(1.5))
    # Other devices may answer on this machine too (other tests' ipycams): find ours.
    ours = [d for d in first if f"http://127.0.0.1:{cam.onvif_port}/onvif/device_service" in d["xaddrs"]]
    assert len(ours) == 1, first
    device = ours[0]
    assert device["source"] == f"onvif://127.0.0.1:{cam.onvif_port}"
    assert device["address"] == "127.0.0.1"
    assert device["name"] == "GridwatchTestCam"
    assert any(s.startswith("onvif://www.onvif.org/") for s in device["scopes"])
    assert second == first
    scans = gw.records("discovery scan")[before:]
    assert len(scans) == 1, scans  # the second request joined the first one's scan
    assert scans[0]["devices"] == len(first)


# A test picture before saving --------------------------------------------------------


async def probe(http, gw, body: dict, user: str = "admin"):
    async with http.post(gw.base + "/api/cameras/probe", json=body, headers=auth(gw, user)) as r:
        return r.status, r.content_type, await r.read()


async def test_probe_gives_the_device_picture_and_names_a_refused_password(cam, gw, http):
    status, kind, data = await probe(http, gw, {"source": onvif_url(cam)})
    assert (status, kind) == (200, "image/jpeg"), data[:300]
    assert decoded(data).shape[:2] == (360, 640)

    status, _, data = await probe(http, gw, {"source": onvif_url(cam, WRONG)})
    assert status == 502, data
    error = json.loads(data)
    assert error["error"] == "auth_refused", error
    assert "refused the user name or password" in error["message"]
    assert WRONG.encode() not in data and PASSWORD.encode() not in data
    assert WRONG not in gw.logs() and PASSWORD not in gw.logs()


async def test_probe_takes_a_hidden_password_only_back_to_its_own_device(cam, gw, http):
    await add_camera(http, gw, "gate", onvif_url(cam))
    hidden = onvif_url(cam, "***")
    status, kind, data = await probe(http, gw, {"source": hidden, "id": "gate"})
    assert (status, kind) == (200, "image/jpeg"), data[:300]
    # Another port, another host, another user: the stored password must not go there.
    for elsewhere in (onvif_url(cam, "***", port=free_port()), f"onvif://{USER}:***@localhost:{cam.onvif_port}",
                      f"onvif://root:***@127.0.0.1:{cam.onvif_port}", hidden.replace("onvif://", "rtsp://")):  # fmt: skip
        status, _, data = await probe(http, gw, {"source": elsewhere, "id": "gate"})
        assert status == 400 and b"hidden_password" in data and b"source" in data, (elsewhere, data)
    status, _, data = await probe(http, gw, {"source": hidden})  # no camera to take it from
    assert status == 400 and b"hidden_password" in data, data
    assert PASSWORD not in gw.logs()


async def test_probe_of_an_rtsp_source(gw, http, rtsp_factory):
    rtsp = rtsp_factory({"/cam": "testsrc:320x240@10"})
    status, kind, data = await probe(http, gw, {"source": rtsp.url("/cam")})
    assert (status, kind) == (200, "image/jpeg"), data[:300]
    assert decoded(data).shape[:2] == (240, 320)


async def test_probe_of_a_dead_or_silent_rtsp_source_fails_within_its_deadline(gw, http):
    started = time.monotonic()
    status, _, data = await probe(http, gw, {"source": f"rtsp://u:Dead-Pw-1@127.0.0.1:{free_port()}/x"})
    assert status == 502 and b'"unreachable"' in data and b"could not be reached" in data, data
    assert time.monotonic() - started < READ_TIMEOUT_S, "a refused connection is known at once"

    # A server that takes the connection and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        status, _, data = await probe(http, gw, {"source": f"rtsp://u:Dead-Pw-1@127.0.0.1:{port}/x"})
        took = time.monotonic() - started
    assert status == 504 and b'"no_picture"' in data and b"no answer within" in data, data
    assert took < READ_TIMEOUT_S * 2 + 3, took
    assert b"Dead-Pw-1" not in data and "Dead-Pw-1" not in gw.logs()


async def test_probe_of_a_dead_onvif_device_says_where_and_why_in_plain_words(gw, http):
    port = free_port()
    status, _, data = await probe(http, gw, {"source": f"onvif://u:Dead-Pw-1@127.0.0.1:{port}"})
    message = json.loads(data)["message"]
    assert status == 502 and f"cannot connect to 127.0.0.1:{port}: Connection refused" in message, message
    assert "ssl:" not in message and "Dead-Pw-1" not in message


async def test_probe_keeps_to_the_source_rules_and_refuses_bad_input(cam, gw, http):
    cases = [
        ({"source": "rtsps://127.0.0.1:1/x"}, 400, "forbidden_source"),  # not in media.api_sources
        ({"source": "file:/etc/passwd"}, 400, "bad_request"),
        ({"source": "lavfi:testsrc2"}, 400, "bad_request"),
        ({"source": "not a url"}, 400, "bad_request"),
        ({"source": "rtsp://[::1"}, 400, "bad_request"),
        ({}, 400, "bad_request"),
        ({"source": 5}, 400, "bad_request"),
        ({"source": onvif_url(cam), "extra": 1}, 400, "bad_request"),
        ({"source": onvif_url(cam), "id": "../x"}, 400, "bad_request"),
        ({"source": onvif_url(cam), "id": "no-such-camera"}, 404, "not_found"),
    ]
    for body, want, code in cases:
        status, _, data = await probe(http, gw, body)
        assert status == want and f'"{code}"'.encode() in data, (body, status, data)
    for user in ("dispatcher", "viewer", "officer"):
        status, _, _ = await probe(http, gw, {"source": onvif_url(cam)}, user)
        assert status == 403, user


# Write-only passwords -----------------------------------------------------------------


async def test_put_with_a_hidden_password_keeps_the_stored_one(cam, gw, http):
    await add_camera(http, gw, "kept", onvif_url(cam))
    body = {"id": "kept", "name": "Kept gate", "source": onvif_url(cam, "***")}
    async with http.put(gw.base + "/api/cameras/kept", json=body, headers=auth(gw)) as r:
        assert r.status == 200, await r.text()
    # The stored password still reaches the device: PTZ works, and the API still hides it.
    assert (await ptz(http, gw, "kept"))["presets"]
    async with http.get(gw.base + "/api/cameras/kept", headers=auth(gw)) as r:
        shown = await r.json()
    assert shown["name"] == "Kept gate" and shown["source"] == onvif_url(cam, "***")
    body["source"] = onvif_url(cam, "***", port=free_port())  # another device
    async with http.put(gw.base + "/api/cameras/kept", json=body, headers=auth(gw)) as r:
        error = await r.json()
        assert r.status == 400 and error["error"] == "hidden_password", error
        assert error["message"].startswith("source:")
    assert PASSWORD not in gw.logs()


def test_hidden_passwords_come_back_for_the_same_device_only():
    stored = Camera(id="c", source="rtsp://u:p%40ss@10.0.0.5:554/main", detect_source="rtsp://u:sub@10.0.0.5:554/sub")
    new = Camera(id="c", source="rtsp://u:***@10.0.0.5:554/main2", detect_source="rtsp://u:***@10.0.0.5:554/sub")
    kept = keep_stored_passwords(new, stored)
    # The first stored URL of the same scheme, user, host and port gives the password.
    assert kept.source == "rtsp://u:p%40ss@10.0.0.5:554/main2"
    assert kept.detect_source == "rtsp://u:p%40ss@10.0.0.5:554/sub"
    assert keep_stored_passwords(stored, stored) == stored  # nothing hidden: nothing changes
    for source in ("rtsp://u:***@10.0.0.6:554/main", "rtsp://u:***@10.0.0.5:8554/main",
                   "rtsp://v:***@10.0.0.5:554/main", "rtsps://u:***@10.0.0.5:554/main"):  # fmt: skip
        with pytest.raises(JsonError) as e:
            keep_stored_passwords(Camera(id="c", source=source), stored)
        assert e.value.body["error"] == "hidden_password" and e.value.body["message"].startswith("source:")
    with pytest.raises(JsonError) as e:
        keep_stored_passwords(Camera(id="c", source="rtsp://h/x", detect_source=new.detect_source), None)
    assert e.value.body["message"].startswith("detect_source:")


# PTZ ------------------------------------------------------------------------------------


async def ptz_action(http, gw, cid: str, body: dict) -> None:
    async with http.post(gw.base + f"/api/cameras/{cid}/ptz", json=body, headers=auth(gw, "dispatcher")) as r:
        assert r.status == 200, await r.text()


async def wait_ptz(http, gw, cid: str, ok, timeout: float = 5.0) -> dict:
    async with asyncio.timeout(timeout):
        while not ok(state := await ptz(http, gw, cid)):
            await asyncio.sleep(0.1)
    return state


async def test_ptz_status_moves_and_presets(cam, gw, http):
    await add_camera(http, gw, "pan", onvif_url(cam))
    await ptz_action(http, gw, "pan", {"action": "goto_preset", "preset": "home"})
    start = await wait_ptz(http, gw, "pan", lambda s: s["position"] and abs(s["position"]["pan"]) < 0.01)
    assert start["moving"] is False and start["position"]["zoom"] == pytest.approx(0, abs=0.01)
    assert {"token": "home", "name": "Home"} in start["presets"]

    async with http.post(gw.base + "/api/cameras/pan/ptz/presets", json={"name": "Start view"},
                         headers=auth(gw, "dispatcher")) as r:  # fmt: skip
        assert r.status == 201, await r.text()
        preset = await r.json()
    assert preset["name"] == "Start view" and preset["token"]
    assert preset in (await ptz(http, gw, "pan"))["presets"]
    # A name the camera lists already, in any case or with spaces around it, is refused:
    # nobody could tell the two apart.
    for same in ("start VIEW", " Start view ", "home"):
        async with http.post(gw.base + "/api/cameras/pan/ptz/presets", json={"name": same},
                             headers=auth(gw, "dispatcher")) as r:  # fmt: skip
            refusal = await r.json()
        assert r.status == 409 and refusal["error"] == "preset_exists", (same, refusal)
        assert refusal["message"].startswith("name: the camera has a preset named"), refusal
    named = [p["name"].casefold() for p in (await ptz(http, gw, "pan"))["presets"]]
    assert named.count("start view") == 1 and named.count("home") == 1

    await ptz_action(http, gw, "pan", {"action": "move", "pan": 0.5, "tilt": 0.3})
    moving = await wait_ptz(http, gw, "pan", lambda s: s["moving"])
    assert moving["position"]["pan"] >= 0
    await wait_ptz(http, gw, "pan", lambda s: s["position"]["pan"] > 0.2)
    await ptz_action(http, gw, "pan", {"action": "stop"})
    moved = await wait_ptz(http, gw, "pan", lambda s: s["moving"] is False)
    assert moved["position"]["pan"] > 0.2 and moved["position"]["tilt"] > 0.1, moved
    device = cam.ptz()  # the device's own word for where it points
    assert moved["position"]["pan"] == pytest.approx(device["pan"], abs=0.01)

    await ptz_action(http, gw, "pan", {"action": "goto_preset", "preset": preset["token"]})
    back = await wait_ptz(http, gw, "pan", lambda s: abs(s["position"]["pan"] - start["position"]["pan"]) < 0.01)
    assert back["position"]["tilt"] == pytest.approx(start["position"]["tilt"], abs=0.01)

    url = gw.base + f"/api/cameras/pan/ptz/presets/{preset['token']}"
    async with http.delete(url, headers=auth(gw, "dispatcher")) as r:
        assert r.status == 200, await r.text()
    assert preset not in (await ptz(http, gw, "pan"))["presets"]
    async with http.delete(url, headers=auth(gw, "dispatcher")) as r:
        assert r.status == 404 and (await r.json())["error"] == "no_preset"


async def test_ptz_refusals(cam, gw, http):
    await add_camera(http, gw, "plain", "rtsp://127.0.0.1:9/x")
    await add_camera(http, gw, "liar", onvif_url(cam, WRONG))
    base = gw.base + "/api/cameras"
    admin, desk = auth(gw), auth(gw, "dispatcher")
    cases = [
        # Not onvif://: no PTZ, whatever is asked.
        ("GET", "/plain/ptz", None, desk, 409, "no_ptz"),
        ("POST", "/plain/ptz/presets", {"name": "x"}, desk, 409, "no_ptz"),
        ("DELETE", "/plain/ptz/presets/home", None, desk, 409, "no_ptz"),
        # The device refuses the camera's password.
        ("GET", "/liar/ptz", None, desk, 502, "device_error"),
        # Unknown cameras.
        ("GET", "/nope/ptz", None, desk, 404, "not_found"),
        ("POST", "/nope/ptz/presets", {"name": "x"}, desk, 404, "not_found"),
        ("DELETE", "/nope/ptz/presets/home", None, admin, 404, "not_found"),
        # Malformed bodies and tokens.
        ("POST", "/pan/ptz/presets", {}, desk, 400, "bad_request"),
        ("POST", "/pan/ptz/presets", {"name": ""}, desk, 400, "bad_request"),
        ("POST", "/pan/ptz/presets", {"name": "   "}, desk, 400, "bad_request"),
        ("POST", "/pan/ptz/presets", {"name": "x" * 65}, desk, 400, "bad_request"),
        ("POST", "/pan/ptz/presets", {"name": "a\nb"}, desk, 400, "bad_request"),
        ("POST", "/pan/ptz/presets", {"name": "x", "token": "y"}, desk, 400, "bad_request"),
        ("POST", "/pan/ptz/presets", [1], desk, 400, "bad_request"),
        ("DELETE", "/pan/ptz/presets/" + "t" * 65, None, desk, 400, "bad_request"),
        # Roles: PTZ is the desk's, scans and probes the admin's.
        ("GET", "/pan/ptz", None, auth(gw, "viewer"), 403, "forbidden"),
        ("GET", "/pan/ptz", None, auth(gw, "officer"), 403, "forbidden"),
        ("POST", "/pan/ptz/presets", {"name": "x"}, auth(gw, "officer"), 403, "forbidden"),
        ("DELETE", "/pan/ptz/presets/home", None, auth(gw, "viewer"), 403, "forbidden"),
        ("POST", "/discover", {}, desk, 403, "forbidden"),
        ("POST", "/discover", {"timeout_s": 11}, admin, 400, "bad_request"),
        ("POST", "/discover", {"timeout_s": 0.1}, admin, 400, "bad_request"),
        ("POST", "/discover", {"timeout_s": "3"}, admin, 400, "bad_request"),
        ("POST", "/discover", {"interface": "10.0.0.1"}, admin, 400, "bad_request"),
    ]
    await add_camera(http, gw, "pan", onvif_url(cam))
    for method, path, body, headers, want, code in cases:
        async with http.request(method, base + path, json=body, headers=headers) as r:
            text = await r.text()
            assert r.status == want and (await r.json())["error"] == code, (method, path, body, r.status, text)
            assert WRONG not in text and PASSWORD not in text
    async with http.post(base + "/discover", data=b"{not json", headers={**admin, "Content-Type": "application/json"}) as r:
        assert r.status == 400
    assert WRONG not in gw.logs()


async def test_a_device_may_hand_out_addresses_on_its_own_host_only():
    device = parse_source("onvif://u:p@127.0.0.1:8080")
    await own_address("rtsp://127.0.0.1:554/main", device, ("rtsp", "rtsps"), "its stream")
    await own_address("rtsp://127.0.0.1/main", parse_source("onvif://u:p@localhost:8080"), ("rtsp",), "its stream")
    for uri, why in [("rtsp://192.0.2.7:554/main", "on another host (192.0.2.7)"),
                     ("rtsp://localhost/main", "on another host (localhost)"),
                     ("file:/etc/hostname", "as file: only rtsp, rtsps"),
                     ("http://127.0.0.1/snap.jpg", "as http: only rtsp, rtsps")]:  # fmt: skip
        with pytest.raises(OnvifFailure, match=re.escape(why)):
            await own_address(uri, device, ("rtsp", "rtsps"), "its stream")


async def test_a_node_runs_few_camera_tests_at_once_and_says_so(gw, http):
    with socket.socket() as silent:  # takes connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"rtsp://u:p@127.0.0.1:{silent.getsockname()[1]}/x"
        # One more than the node runs at once, all sent together: each holds its place
        # for twice read_timeout_s, so one of them is turned away at once.
        answers = await asyncio.gather(*(probe(http, gw, {"source": url}) for _ in range(MAX_PROBES + 1)))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [429] + [504] * MAX_PROBES, answers
    busy = next(data for status, _, data in answers if status == 429)
    assert json.loads(busy)["error"] == "busy", busy
