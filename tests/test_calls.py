"""Dispatcher <-> officer calls over /ws with real aiortc peers: ring on every device of
the callee, first accept wins, SDP and ICE relayed, media both ways; decline, busy,
timeout; the same across two nodes sharing one redis-server."""

from __future__ import annotations

import asyncio

import pytest

from support.call_client import Device, connect

CANDIDATE = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host",
             "sdpMid": "0", "sdpMLineIndex": 0}  # fmt: skip


async def call_with_media(dispatcher: Device, phone: Device, pocket: Device) -> None:
    """Invite, ring on both officer devices, accept on `phone`, media both ways, hang up."""
    await dispatcher.send(type="call.invite", to="officer")
    ringing = await dispatcher.expect("call.ringing")
    call = ringing["call"]
    for d in (phone, pocket):
        ring = await d.expect("call.ring", call=call)
        assert ring["from"] == "dispatcher" and ring["from_role"] == "dispatcher"
        assert ring["ice_servers"] == []
    await phone.send(type="call.accept", call=call)
    accepted = await dispatcher.expect("call.accept", call=call)
    assert accepted["device"] == phone.device
    # The other device stops ringing, and its late accept loses.
    await pocket.expect("call.hangup", call=call, reason="answered_elsewhere")
    await pocket.send(type="call.accept", call=call)
    assert (await pocket.expect("error", call=call))["error"] == "already_answered"
    presence = await dispatcher.expect("presence", user="officer", status="in_call", timeout=5)
    assert sorted(presence["devices"]) == sorted([phone.device, pocket.device])

    await asyncio.gather(dispatcher.offer(call), phone.answer(call))
    # Trickle ICE is relayed to the device in the call, and to no other.
    await dispatcher.send(type="ice", call=call, candidate=CANDIDATE)
    ice = await phone.expect("ice", call=call)
    assert ice["candidate"]["candidate"] == CANDIDATE["candidate"] and ice["from"] == "dispatcher"
    assert await dispatcher.wait_frames(15, timeout=15), "no video from the officer"
    assert await phone.wait_frames(15, timeout=15), "no video from the dispatcher"
    assert pocket.frames == 0 and not pocket.has("ice") and not pocket.has("sdp")

    await dispatcher.send(type="call.hangup", call=call)
    hangup = await phone.expect("call.hangup", call=call)
    assert hangup["reason"] == "hangup" and hangup["by"] == "dispatcher"
    await dispatcher.expect("presence", user="officer", status="available", timeout=5)


async def devices(http, gw_desk, gw_phone, gw_pocket=None):
    return (
        await connect(http, gw_desk.base, gw_desk.token("dispatcher"), "dispatcher", "desk-1"),
        await connect(http, gw_phone.base, gw_phone.token("officer"), "officer", "phone"),
        await connect(http, (gw_pocket or gw_phone).base, (gw_pocket or gw_phone).token("officer"),
                      "officer", "pocket"),
    )  # fmt: skip


async def test_call_rings_every_device_first_accept_wins_media_both_ways(gridwatch_factory, http):
    gw = gridwatch_factory()
    dispatcher, phone, pocket = await devices(http, gw, gw)
    try:
        await call_with_media(dispatcher, phone, pocket)
        # The officer may call the dispatcher back, and the dispatcher decline.
        await phone.send(type="call.invite", to="dispatcher")
        call = (await phone.expect("call.ringing"))["call"]
        await dispatcher.expect("call.ring", call=call)
        await dispatcher.send(type="call.decline", call=call)
        declined = await phone.expect("call.decline", call=call)
        assert declined["by"] == "dispatcher"
    finally:
        for d in (dispatcher, phone, pocket):
            await d.close()


async def test_call_across_two_nodes_sharing_redis(redis_server, gridwatch_factory, http):
    shared = {"redis": {"url": redis_server.url}, "server": {"secret": "two-nodes-one-secret"}}
    a, b = gridwatch_factory(shared, name="a"), gridwatch_factory(shared, name="b")
    # The dispatcher on node a; the officer's phone on node b, his second device on a.
    dispatcher, phone, pocket = await devices(http, a, b, a)
    try:
        await call_with_media(dispatcher, phone, pocket)
    finally:
        for d in (dispatcher, phone, pocket):
            await d.close()
    assert "call accepted" in b.logs() and "call ringing" in a.logs()


async def test_decline_busy_and_timeout(gridwatch_factory, http):
    gw = gridwatch_factory({"calls": {"ring_s": 1.5}})
    dispatcher, phone, pocket = await devices(http, gw, gw)
    admin = await connect(http, gw.base, gw.token("admin"), "admin", "desk-2")
    try:
        # Decline on one device: the caller hears it, the other device stops ringing.
        await dispatcher.send(type="call.invite", to="officer")
        call = (await dispatcher.expect("call.ringing"))["call"]
        await phone.expect("call.ring", call=call)
        await pocket.send(type="call.decline", call=call)
        assert (await dispatcher.expect("call.decline", call=call))["by"] == "officer"
        await phone.expect("call.hangup", call=call, reason="declined")

        # Busy: a second desk calls an officer who is in a call.
        await dispatcher.send(type="call.invite", to="officer")
        call = (await dispatcher.expect("call.ringing"))["call"]
        await phone.send(type="call.accept", call=call)
        await dispatcher.expect("call.accept", call=call)
        await admin.send(type="call.invite", to="officer")
        assert (await admin.expect("call.busy"))["to"] == "officer"
        assert not phone.has("call.ring", **{"from": "admin"})
        await phone.send(type="call.hangup", call=call)
        await dispatcher.expect("call.hangup", call=call, reason="hangup")

        # Timeout: nobody answers within ring_s; the caller and every device are told.
        await admin.send(type="call.invite", to="officer")
        call = (await admin.expect("call.ringing"))["call"]
        await admin.expect("call.timeout", call=call, timeout=4)
        for d in (phone, pocket):
            await d.expect("call.timeout", call=call, timeout=1)
        # And the officer is free again.
        await admin.send(type="call.invite", to="officer")
        assert (await admin.expect("call.ringing"))["to"] == "officer"
        async with http.get(gw.base + "/api/presence",
                            headers={"Authorization": f"Bearer {gw.token('viewer')}"}) as r:
            users = {u["user"]: u for u in (await r.json())["users"]}  # fmt: skip
        assert users["officer"]["devices"] == ["phone", "pocket"]
        assert users["officer"]["status"] == "in_call"  # ringing counts as busy
        assert users["dispatcher"]["status"] == "available"
        m = gw.metrics()
        assert m["gridwatch_ws_sockets"] == 4
        assert m['gridwatch_calls_total{event="declined"}'] == 1
        assert m['gridwatch_calls_total{event="busy"}'] == 1
        assert m['gridwatch_calls_total{event="timeouts"}'] == 1
        assert m['gridwatch_calls_total{event="accepted"}'] == 1
    finally:
        for d in (dispatcher, phone, pocket, admin):
            await d.close()


async def test_hand_a_call_over_to_another_dispatcher(gridwatch_factory, http):
    gw = gridwatch_factory()
    dispatcher, phone, pocket = await devices(http, gw, gw)
    admin = await connect(http, gw.base, gw.token("admin"), "admin", "desk-2")
    try:
        await dispatcher.send(type="call.invite", to="officer")
        call = (await dispatcher.expect("call.ringing"))["call"]
        await phone.send(type="call.accept", call=call)
        await dispatcher.expect("call.accept", call=call)
        await dispatcher.send(type="call.transfer", call=call, to="admin")
        notice = await phone.expect("call.transfer", call=call)
        new = notice["new_call"]
        ring = await admin.expect("call.ring", call=new)
        assert ring["from"] == "officer" and ring["transferred_by"] == "dispatcher"
        await admin.send(type="call.accept", call=new)
        # The officer's phone renegotiates with the new desk; the old desk is let go.
        await phone.expect("call.accept", call=new)
        ended = await dispatcher.expect("call.hangup", call=call)
        assert ended["reason"] == "transferred" and ended["new_call"] == new
        await asyncio.gather(phone.offer(new), admin.answer(new))
        assert await admin.wait_frames(10, timeout=15)
        assert await phone.wait_frames(10, timeout=15)
    finally:
        for d in (dispatcher, phone, pocket, admin):
            await d.close()


@pytest.mark.parametrize("who", ["viewer", "tracker"])
async def test_viewers_and_devices_cannot_call(gridwatch_factory, http, who):
    gw = gridwatch_factory()
    officer = await connect(http, gw.base, gw.token("officer"), "officer", "phone")
    caller = await connect(http, gw.base, gw.token(who), who, "desk")
    try:
        await caller.send(type="call.invite", to="officer")
        assert (await caller.expect("error"))["error"] == "forbidden"
        await asyncio.sleep(0.3)
        assert not officer.has("call.ring")
    finally:
        await officer.close()
        await caller.close()


async def test_dropped_phone_keeps_its_call_if_back_in_time(gridwatch_factory, http):
    gw = gridwatch_factory({"calls": {"reconnect_s": 2}})
    dispatcher, phone, pocket = await devices(http, gw, gw)
    try:
        await dispatcher.send(type="call.invite", to="officer")
        call = (await dispatcher.expect("call.ringing"))["call"]
        await phone.send(type="call.accept", call=call)
        await dispatcher.expect("call.accept", call=call)
        # The phone changes networks: its socket drops and comes back as the same device.
        await phone.close()
        phone = await connect(http, gw.base, gw.token("officer"), "officer", "phone")
        await asyncio.sleep(2.5)  # past reconnect_s: the call would have been dropped
        assert not dispatcher.has("call.hangup", call=call)
        # The caller restarts ICE with a new offer; it reaches the phone's new socket.
        await dispatcher.send(type="sdp", call=call, sdp={"type": "offer", "sdp": "v=0 restart"})
        assert (await phone.expect("sdp", call=call))["sdp"]["sdp"] == "v=0 restart"

        # Gone for good this time: the other side is told once reconnect_s has passed.
        await phone.close()
        hangup = await dispatcher.expect("call.hangup", call=call, timeout=5)
        assert hangup["reason"] == "connection_lost" and hangup["by"] == "officer"
        await dispatcher.expect("presence", user="dispatcher", status="available", timeout=5)
    finally:
        for d in (dispatcher, phone, pocket):
            await d.close()
