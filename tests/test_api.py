"""Auth, roles, bad input and secrets against a real `gridwatch serve`."""

from __future__ import annotations

import asyncio
import json

import pytest

from support.procs import PASSWORDS, GridwatchServer, free_port

SECRET = "Ultra$ecret-Pw9"


@pytest.fixture(scope="module")
def gw(tmp_path_factory, users):
    dead_port = free_port()  # nothing listens: the camera fails and logs why
    server = GridwatchServer(
        tmp_path_factory.mktemp("api"),
        {
            "users": users,
            "server": {"max_body_bytes": 64 * 1024},
            # Cameras added through the API here are test patterns and loopback RTSP.
            "media": {"read_timeout_s": 1, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5,
                      "api_sources": ["rtsp", "rtsps", "onvif", "lavfi"], "deny_hosts": []},
            "cameras": [
                {"id": "locked", "source": f"rtsp://admin:{SECRET}@127.0.0.1:{dead_port}/stream1"},
                {"id": "demo", "source": "lavfi:testsrc2=size=320x240:rate=10"},
            ],
        },
    ).start()
    yield server
    server.stop()


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def expect_json_error(response, status: int) -> dict:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) >= {"error", "message"} and body["message"]
    return body


async def test_no_token_is_401(gw, http):
    for method, path in [
        ("GET", "/api/cameras"),
        ("POST", "/whep/demo"),
        ("GET", "/api/cameras/demo"),
    ]:
        async with http.request(method, gw.base + path) as r:
            await expect_json_error(r, 401)
    async with http.get(gw.base + "/api/cameras", headers=auth("forged.token.value")) as r:
        await expect_json_error(r, 401)
    async with http.get(gw.base + "/healthz") as r:
        assert r.status == 200


async def test_login(gw, http):
    async with http.post(
        gw.base + "/api/login", json={"username": "viewer", "password": "wrong"}
    ) as r:
        await expect_json_error(r, 401)
    async with http.post(
        gw.base + "/api/login", data=b"{not json", headers={"Content-Type": "application/json"}
    ) as r:
        await expect_json_error(r, 400)
    async with http.post(
        gw.base + "/api/login", json={"username": "viewer", "password": PASSWORDS["viewer"]}
    ) as r:
        body = await r.json()
        assert r.status == 200 and body["role"] == "viewer" and body["token"]


async def test_logout_revokes_the_token(gw, http):
    token = gw.token("viewer")
    async with http.get(gw.base + "/api/cameras", headers=auth(token)) as r:
        assert r.status == 200
    async with http.post(gw.base + "/api/logout", headers=auth(token)) as r:
        assert r.status == 200
    async with http.get(gw.base + "/api/cameras", headers=auth(token)) as r:
        await expect_json_error(r, 401)


async def test_viewer_cannot_change_cameras(gw, http):
    token = gw.token("viewer")
    camera = {"id": "new-cam", "source": "lavfi:testsrc"}
    async with http.post(gw.base + "/api/cameras", json=camera, headers=auth(token)) as r:
        await expect_json_error(r, 403)
    async with http.put(
        gw.base + "/api/cameras/demo", json=camera | {"id": "demo"}, headers=auth(token)
    ) as r:
        await expect_json_error(r, 403)
    async with http.delete(gw.base + "/api/cameras/demo", headers=auth(token)) as r:
        await expect_json_error(r, 403)
    async with http.post(
        gw.base + "/api/cameras/demo/ptz", json={"action": "stop"}, headers=auth(token)
    ) as r:
        await expect_json_error(r, 403)
    async with http.get(gw.base + "/api/cameras/demo", headers=auth(token)) as r:
        assert r.status == 200


async def test_admin_camera_crud_and_validation(gw, http):
    token = gw.token("admin")
    h = auth(token)
    camera = {
        "id": "cam-x",
        "source": "rtsp://ops:topsecret77@127.0.0.1:554/live",
        "position": {"lat": 31.2, "lon": 120.9},
    }
    async with http.post(gw.base + "/api/cameras", json=camera, headers=h) as r:
        assert r.status == 201, await r.text()
        body = await r.json()
        assert body["source"] == "rtsp://ops:***@127.0.0.1:554/live"
    async with http.post(gw.base + "/api/cameras", json=camera, headers=h) as r:
        await expect_json_error(r, 409)
    bad = [
        ({"id": "cam-y", "source": "http://example/x"}, "source"),
        ({"id": "cam-y", "source": "rtsp://"}, "source"),
        ({"id": "Bad Id!", "source": "lavfi:testsrc"}, "id"),
        (
            {"id": "cam-y", "source": "lavfi:testsrc", "position": {"lat": 123, "lon": 0}},
            "position.lat",
        ),
        (
            {
                "id": "cam-y",
                "source": "lavfi:testsrc",
                "zones": [{"name": "z", "kind": "no_parking", "polygon": [[0, 0], [1, 1]]}],
            },
            "zones.0.polygon",
        ),
        ({"id": "cam-y", "source": "lavfi:testsrc", "colour": "red"}, "colour"),
    ]
    for payload, field in bad:
        async with http.post(gw.base + "/api/cameras", json=payload, headers=h) as r:
            body = await expect_json_error(r, 400)
            assert field in body["message"], body
    async with http.put(
        gw.base + "/api/cameras/cam-x", json=camera | {"source": "lavfi:testsrc"}, headers=h
    ) as r:
        assert r.status == 200 and (await r.json())["source"] == "lavfi:testsrc"
    async with http.delete(gw.base + "/api/cameras/cam-x", headers=h) as r:
        assert r.status == 200
    async with http.get(gw.base + "/api/cameras/cam-x", headers=h) as r:
        await expect_json_error(r, 404)


async def test_bad_whep_requests(gw, http):
    h = auth(gw.token("viewer"))
    sdp = {"Content-Type": "application/sdp"}
    async with http.post(gw.base + "/whep/nope", data="v=0\r\n", headers=h | sdp) as r:
        await expect_json_error(r, 404)
    for body in [
        "v=0\r\no=garbage\r\nm=video",
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n",
        "hello",
        "\xff\xfe",
    ]:
        async with http.post(
            gw.base + "/whep/demo", data=body.encode("utf-8", "surrogatepass"), headers=h | sdp
        ) as r:
            await expect_json_error(r, 400)
    async with http.post(
        gw.base + "/whep/demo", data="v=0", headers=h | {"Content-Type": "text/plain"}
    ) as r:
        await expect_json_error(r, 415)
    async with http.post(
        gw.base + "/whep/demo", data=b"v=0" + b"a" * 200_000, headers=h | sdp
    ) as r:
        await expect_json_error(r, 413)
    async with http.delete(gw.base + "/whep/demo/not-a-session", headers=h) as r:
        await expect_json_error(r, 404)
    async with http.get(gw.base + "/healthz") as r:
        assert r.status == 200


async def test_oversized_and_malformed_json(gw, http):
    h = auth(gw.token("admin"))
    big = json.dumps({"id": "big", "source": "lavfi:testsrc", "name": "x" * 100_000})
    async with http.post(
        gw.base + "/api/cameras", data=big, headers=h | {"Content-Type": "application/json"}
    ) as r:
        await expect_json_error(r, 413)
    for body in [b"[1,2]", b'{"id": ', b"\x00\x01"]:
        async with http.post(
            gw.base + "/api/cameras", data=body, headers=h | {"Content-Type": "application/json"}
        ) as r:
            await expect_json_error(r, 400)
    async with http.post(
        gw.base + "/api/cameras/demo/ptz", json={"action": "spin"}, headers=h
    ) as r:
        await expect_json_error(r, 400)
    async with http.post(
        gw.base + "/api/cameras/demo/ptz", json={"action": "move", "pan": 7}, headers=h
    ) as r:
        await expect_json_error(r, 400)
    async with http.post(
        gw.base + "/api/cameras/demo/ptz", json={"action": "stop"}, headers=h
    ) as r:
        await expect_json_error(r, 409)  # not an ONVIF camera


async def test_camera_password_never_leaks(gw, http):
    h = auth(gw.token("admin"))
    # Make the camera with the password try (and fail) to connect, so that errors get logged.
    async with http.get(gw.base + "/api/cameras/locked/snapshot.jpg", headers=h) as r:
        await expect_json_error(r, 503)
    seen = []
    for path in ["/api/cameras", "/api/cameras/locked", "/metrics"]:
        async with http.get(gw.base + path, headers=h) as r:
            seen.append(await r.text())
    state = json.loads(seen[1])["state"]
    assert state["last_error"], "the failure should be visible in the API"
    assert state["online"] is False
    await asyncio.sleep(0.5)
    logs = gw.logs()
    assert "stream source failed" in logs
    assert "rtsp://admin:***@127.0.0.1" in logs
    for text in [*seen, logs]:
        assert SECRET not in text


async def test_repeated_failed_logins_are_throttled(gw, http):
    bad = {"username": "dispatcher", "password": "guess"}
    for _ in range(5):
        async with http.post(gw.base + "/api/login", json=bad) as r:
            await expect_json_error(r, 401)
    good = {"username": "dispatcher", "password": PASSWORDS["dispatcher"]}
    async with http.post(gw.base + "/api/login", json=good) as r:
        body = await expect_json_error(r, 429)
        assert body["retry_after_s"] > 0
    # Other users are not locked out by someone guessing at one account.
    async with http.post(
        gw.base + "/api/login", json={"username": "admin", "password": PASSWORDS["admin"]}
    ) as r:
        assert r.status == 200


async def test_config_cameras_seed_the_registry_and_screen_edits_survive_a_restart(tmp_path, users, http):
    """A config camera is written at start only when its file entry is new or changed:
    a name and zones set on the operations screens, and a deletion, outlive a restart."""
    zone = {"name": "kerb", "kind": "no_parking", "polygon": [[0.1, 0.5], [0.9, 0.5], [0.9, 0.9]]}
    cameras = [{"id": "yard", "source": "lavfi:testsrc2=size=320x240:rate=5"},
               {"id": "gone", "source": "lavfi:testsrc2=size=320x240:rate=5"}]  # fmt: skip
    server = GridwatchServer(tmp_path, {"users": users, "cameras": cameras}).start()
    try:
        h = auth(server.token("admin"))
        async with http.put(server.base + "/api/cameras/yard", headers=h,
                            json={**cameras[0], "name": "Yard gate", "zones": [zone]}) as r:  # fmt: skip
            assert r.status == 200, await r.text()
        async with http.delete(server.base + "/api/cameras/gone", headers=h) as r:
            assert r.status == 200, await r.text()
        server.stop()
        server.start()
        h = auth(server.token("admin"))
        async with http.get(server.base + "/api/cameras", headers=h) as r:
            stored = {c["id"]: c for c in (await r.json())["cameras"]}
        assert set(stored) == {"yard"}, stored
        assert stored["yard"]["name"] == "Yard gate" and [z["name"] for z in stored["yard"]["zones"]] == ["kerb"]
        # The file's entry changed: the file wins for that camera.
        server.stop()
        server.config["cameras"][0] = {**cameras[0], "name": "Yard (file)"}
        server.start()
        async with http.get(server.base + "/api/cameras/yard", headers=auth(server.token("admin"))) as r:
            yard = await r.json()
        assert yard["name"] == "Yard (file)" and yard["zones"] == [], yard
    finally:
        server.stop()
