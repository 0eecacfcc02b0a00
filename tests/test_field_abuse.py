"""Role limits, rate limits and malformed input on /ws, WHIP and WHEP: each refused with
a reason, and the server and every other socket carry on."""

from __future__ import annotations

import aiohttp
import pytest

from support.call_client import connect
from support.whep_client import view
from support.whip_client import publish


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, str]:
    msg = await ws.receive(timeout=5)
    while msg.type == aiohttp.WSMsgType.TEXT:
        msg = await ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    return ws.close_code, str(msg.extra or "")


@pytest.mark.parametrize(
    ("payload", "code", "reason"),
    [
        ({"type": "call.invite", "to": 5}, 1008, "to: Input should be a valid string"),
        ({"type": "call.accept", "call": "../../x"}, 1008, "call: String should match"),
        ({"type": "sdp", "call": "a" * 32, "sdp": {"type": "pranswer", "sdp": "v=0"}}, 1008,
         "sdp.type"),
        ({"type": "ice", "call": "a" * 32, "candidate": {"candidate": "x" * 2000}}, 1008,
         "candidate.candidate"),
        ("{not json", 1007, "malformed JSON"),
        (b"\x00binary", 1003, "text JSON messages only"),
        ("x" * (70 * 1024), 1009, ""),  # over the 64 KiB message limit
    ],
)  # fmt: skip
async def test_malformed_messages_close_only_that_socket(gridwatch_factory, http, payload, code,
                                                         reason):  # fmt: skip
    gw = gridwatch_factory()
    token = gw.token("dispatcher")
    bystander = await connect(http, gw.base, gw.token("officer"), "officer", "phone")
    ws = await http.ws_connect(gw.base + "/ws", headers=auth(token))
    if isinstance(payload, dict):
        await ws.send_json(payload)
    elif isinstance(payload, bytes):
        await ws.send_bytes(payload)
    else:
        await ws.send_str(payload)
    got_code, got_reason = await closed_with(ws)
    assert got_code == code
    assert reason in got_reason
    await bystander.send(type="ping")
    await bystander.expect("pong")
    async with http.get(gw.base + "/healthz") as r:
        assert r.status == 200
    await bystander.close()
    if reason:
        assert "socket" in gw.logs()


async def test_invite_flood_is_refused_then_the_socket_closed(gridwatch_factory, http):
    gw = gridwatch_factory({"calls": {"invites_per_10s": 3}})
    officer = await connect(http, gw.base, gw.token("officer"), "officer", "phone")
    flooder = await connect(http, gw.base, gw.token("dispatcher"), "dispatcher", "desk")
    await flooder.send(type="call.invite", to="officer")
    call = (await flooder.expect("call.ringing"))["call"]
    await officer.expect("call.ring", call=call)
    for _ in range(3):  # refused (he is in a call already) twice, then over the limit
        await flooder.send(type="call.invite", to="officer")
    assert (await flooder.expect("error", error="in_call"))["request"] == "call.invite"
    await flooder.expect("error", error="rate_limited")
    assert len([m for m in officer.inbox if m["type"] == "call.ring"]) == 0
    for _ in range(6):  # past 3x the limit: closed
        await flooder.send(type="call.invite", to="officer")
    code, reason = await flooder.closed()
    assert code == 1008 and "rate limit" in reason
    assert "socket flooding, closed" in gw.logs()
    await officer.send(type="ping")
    await officer.expect("pong")
    await officer.close()


async def test_sdp_flood_is_rate_limited(gridwatch_factory, http):
    gw = gridwatch_factory({"calls": {"messages_per_10s": 20}})
    ws = await connect(http, gw.base, gw.token("officer"), "officer", "phone")
    for _ in range(25):
        await ws.send(type="sdp", call="a" * 32, sdp={"type": "offer", "sdp": "v=0"})
    assert (await ws.expect("error", error="rate_limited"))["message"].startswith("too many")
    for _ in range(40):
        await ws.send(type="ice", call="a" * 32, candidate=None)
    code, reason = await ws.closed()
    assert code == 1008 and "rate limit" in reason


async def test_hello_hands_out_the_configured_ice_servers_and_sdp_needs_a_call(
    gridwatch_factory, http
):
    turn = {"urls": ["turn:turn.centre.example:3478"], "username": "gw", "credential": "s3cret"}
    gw = gridwatch_factory({"webrtc": {"ice_servers": [turn], "host_addresses": ["127.0.0.1"]}})
    ws = await http.ws_connect(gw.base + "/ws?device=phone-1", headers=auth(gw.token("officer")))
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "hello" and hello["device"] == "phone-1"
    assert hello["ice_servers"] == [turn]
    # Relaying needs a call the sender is in: an unknown one is refused, not forwarded.
    await ws.send_json({"type": "sdp", "call": "b" * 32, "sdp": {"type": "offer", "sdp": "v=0"}})
    while (m := await ws.receive_json(timeout=5))["type"] != "error":
        pass
    assert m["error"] == "no_call"
    await ws.close()
    assert "s3cret" not in gw.logs()


async def test_bad_device_id_is_a_400(gridwatch_factory, http):
    gw = gridwatch_factory()
    async with http.get(gw.base + "/ws?device=../../etc", headers=auth(gw.token("officer"))) as r:
        assert r.status == 400
        body = await r.json()
        assert body["error"] == "bad_query" and body["message"].startswith("device:")


async def test_officers_watch_and_publish_only_what_their_role_allows(gridwatch_factory, http,
                                                                    users):  # fmt: skip
    users = [dict(u) for u in users]
    for u in users:
        if u["username"] == "officer2":
            u["watch"] = ["gate-*"]
        if u["username"] == "tracker":
            u["publish"] = ["drone-*"]
    gw = gridwatch_factory({
        "users": users,
        "cameras": [{"id": "gate-east", "source": "lavfi:testsrc2=size=320x240:rate=10"},
                    {"id": "yard", "source": "lavfi:testsrc2=size=320x240:rate=10"}],
    })  # fmt: skip
    officer, officer2 = gw.token("officer"), gw.token("officer2")

    async def whep_status(stream: str, token: str) -> int:
        try:
            v = await view(http, gw.base, stream, token)
        except RuntimeError as e:
            return int(str(e).split()[1].rstrip(":"))
        await v.close(http, gw.base, token)
        return 201

    assert await whep_status("gate-east", officer) == 403  # not his to watch
    assert await whep_status("gate-east", officer2) == 201  # allowed by his watch patterns
    assert await whep_status("yard", officer2) == 403

    async def whip_status(stream: str, token: str) -> int:
        try:
            pc, _ = await publish(http, gw.base, stream, token)
        except RuntimeError as e:
            return int(str(e).split()[1].rstrip(":"))
        await pc.close()
        return 201

    assert await whip_status("phone-officer", officer) == 201  # his own phone
    assert await whip_status("phone-officer2", officer) == 403  # someone else's
    assert await whip_status("drone-1", officer) == 403
    assert await whip_status("drone-1", gw.token("tracker")) == 201  # a device, by pattern
    assert await whip_status("cam-1", gw.token("tracker")) == 403
    assert await whip_status("drone-2", gw.token("viewer")) == 403  # viewers publish nothing
    assert await whip_status("gate-east", gw.token("admin")) == 409  # cameras are pulled
    assert await whip_status("Bad..Id", gw.token("admin")) == 400

    # A viewer cannot ask for an officer's camera, nor an officer for another's.
    for who in ("viewer", "officer2"):
        ws = await connect(http, gw.base, gw.token(who), who, f"{who}-dev")
        await ws.send(type="publish.request", to="officer")
        assert (await ws.expect("error"))["error"] == "forbidden"
        await ws.close()


async def test_whip_refuses_bad_requests_with_json(gridwatch_factory, http):
    gw = gridwatch_factory()
    token = gw.token("admin")
    cases = [
        ({}, "v=0\r\n", 401),
        ({**auth(token), "Content-Type": "text/plain"}, "v=0\r\n", 415),
        ({**auth(token), "Content-Type": "application/sdp"}, "hello", 400),
        ({**auth(token), "Content-Type": "application/sdp"}, "v=0\r\no=- 0 0 IN IP4 x\r\n", 400),
        ({**auth(token), "Content-Type": "application/sdp"}, "v=0\r\n" + "a" * 70_000, 413),
    ]
    for headers, body, status in cases:
        async with http.post(gw.base + "/whip/drone-1", data=body, headers=headers) as r:
            assert r.status == status, await r.text()
            assert (await r.json())["message"]
    async with http.delete(gw.base + "/whip/drone-1/nope", headers=auth(token)) as r:
        assert r.status == 404
    async with http.get(gw.base + "/healthz") as r:
        assert r.status == 200
