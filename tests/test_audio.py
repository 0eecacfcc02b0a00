"""Sound, end to end: a camera's AAC or G.711 transcoded once to Opus, a WHIP
publisher's Opus forwarded as it is, sound-only sources; heard by aiortc listeners and
kept in the recordings and their clips."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import av
import numpy as np
from test_recordings import auth, wait_closed
from test_whep_rtsp import stream_metric, wait_metric

from support.procs import stop
from support.whep_client import view
from support.whip_client import publish

TONE_HZ = 440


async def listen(gw, http, stream: str, seconds: float):
    """A WHEP viewer with sound, once it has heard `seconds` of it; (viewer, token)."""
    token = gw.token("viewer")
    viewer = await view(http, gw.base, stream, token, audio=True)
    deadline = time.monotonic() + seconds + 15
    while viewer.heard()[0] < seconds:
        assert time.monotonic() < deadline, f"heard {viewer.heard()[0]:.1f} s\n{gw.logs()[-2000:]}"
        await asyncio.sleep(0.2)
    return viewer, token


def recorded_sound(path: Path) -> tuple[float, float, float, float]:
    """(seconds of pictures, seconds of sound, the sound's loudest frequency, how far the
    sound starts from the pictures in seconds) in an MP4."""
    with av.open(str(path)) as c:
        assert c.streams.audio, f"{path.name} has no sound"
        assert c.streams.audio[0].codec_context.name == "opus"
        frames = list(c.decode(video=0))
    with av.open(str(path)) as c:
        decoded = list(c.decode(audio=0))
        rate = c.streams.audio[0].codec_context.sample_rate
    samples = np.concatenate([f.to_ndarray()[0].astype(np.float64) for f in decoded])
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    peak = float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum[1:])) + 1])
    pictures = float(frames[-1].time - frames[0].time) if len(frames) > 1 else 0.0
    return pictures, len(samples) / rate, peak, float(decoded[0].time - frames[0].time)


async def test_a_cameras_aac_is_heard_and_recorded_as_opus(rtsp_factory, gridwatch_factory, http):
    rtsp = rtsp_factory({"/cam": "testsrc:320x240@25:400,gop=25,audio=aac"})
    gw = gridwatch_factory(
        {
            "cameras": [
                {"id": "gate", "source": rtsp.url("/cam"), "record": {"mode": "continuous"}}
            ],
            "recordings": {"segment_s": 3, "min_free_mb": 0, "check_s": 1},
        }
    )
    viewer, token = await listen(gw, http, "gate", 2.0)
    try:
        _, peak = viewer.heard()
        assert abs(peak - TONE_HZ) < 10, f"the listener hears {peak:.0f} Hz, not the camera's tone"
        assert await viewer.wait_frames(25, timeout=10), "no pictures beside the sound"
        m = gw.metrics()
        assert stream_metric(m, "audio", "gate") == 1
        # Transcoded once for the stream: not once per listener.
        assert (
            0
            < stream_metric(m, "audio_transcoded", "gate")
            <= stream_metric(m, "audio_packets", "gate")
        )
    finally:
        await viewer.close(http, gw.base, token)

    segs = await wait_closed(http, gw, token, 2, timeout=30)
    for seg in segs[:2]:
        path = gw.workdir / "data" / "recordings" / seg["path"]
        pictures, sound, peak, skew = recorded_sound(path)
        assert abs(peak - TONE_HZ) < 10
        assert sound >= 0.9 * pictures, f"{sound:.1f} s of sound in {pictures:.1f} s of pictures"
        # Sound and pictures of one camera keep their place (its RTSP clock is shared).
        assert abs(skew) < 0.15, f"the sound starts {skew:+.2f} s from the pictures"

    start, end = segs[0]["end"] - 1.5, segs[0]["end"] + 1.5  # across a segment boundary
    async with http.get(gw.base + "/api/recordings/clip", headers=auth(token),
                        params={"camera": "gate", "from": start, "to": end}) as r:  # fmt: skip
        assert r.status == 200, await r.text()
        clip = gw.workdir / "clip.mp4"
        clip.write_bytes(await r.read())
    pictures, sound, peak, skew = recorded_sound(clip)
    assert abs(peak - TONE_HZ) < 10 and sound >= 0.9 * pictures and abs(skew) < 0.15, (
        pictures,
        sound,
        skew,
    )


async def test_g711_from_a_camera_reaches_every_listener_transcoded_once(
    rtsp_factory, gridwatch_factory, http
):
    rtsp = rtsp_factory({"/cam": "testsrc:320x240@25:400,audio=pcma"})
    gw = gridwatch_factory({"cameras": [{"id": "door", "source": rtsp.url("/cam")}]})
    first, token = await listen(gw, http, "door", 1.0)
    second, _ = await listen(gw, http, "door", 2.0)
    try:
        for viewer in (first, second):
            assert abs(viewer.heard()[1] - TONE_HZ) < 10
        m = gw.metrics()
        assert stream_metric(m, "listeners", "door") == 2
        assert stream_metric(m, "audio_transcoded", "door") <= stream_metric(
            m, "audio_packets", "door"
        )
    finally:
        await first.close(http, gw.base, token)
        await second.close(http, gw.base, token)


async def test_a_whip_publishers_opus_is_forwarded_and_recorded(gridwatch_factory, http):
    gw = gridwatch_factory(
        {
            "recordings": {
                "segment_s": 2,
                "min_free_mb": 0,
                "check_s": 1,
                "streams": {"phone-*": {"mode": "continuous"}},
            }
        }
    )
    pc, _ = await publish(http, gw.base, "phone-5", gw.token("admin"), audio=True)
    try:
        viewer, token = await listen(gw, http, "phone-5", 2.0)
        try:
            assert abs(viewer.heard()[1] - TONE_HZ) < 10
            m = gw.metrics()
            # Forwarded as the phone sent it: not one packet transcoded.
            assert stream_metric(m, "audio_transcoded", "phone-5") == 0
            assert stream_metric(m, "audio_packets", "phone-5") > 0
        finally:
            await viewer.close(http, gw.base, token)
        segs = await wait_closed(http, gw, token, 2, timeout=30, camera="phone-5")
        path = gw.workdir / "data" / "recordings" / segs[1]["path"]
        pictures, sound, peak, skew = recorded_sound(path)
        assert abs(peak - TONE_HZ) < 10 and sound >= 0.8 * pictures, (pictures, sound)
        assert abs(skew) < 0.3, f"the sound starts {skew:+.2f} s from the pictures"
    finally:
        await pc.close()


async def test_sources_with_sound_only_are_heard(gridwatch_factory, http, tmp_path):
    radio = tmp_path / "radio.m4a"
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:duration=10",
         "-c:a", "aac", str(radio)],
        check=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    gw = gridwatch_factory({"cameras": [{"id": "radio-1", "source": f"file:{radio}"}]})
    viewer, token = await listen(gw, http, "radio-1", 2.0)
    try:
        assert abs(viewer.heard()[1] - TONE_HZ) < 10
        assert viewer.count == 0  # no pictures, and none expected
    finally:
        await viewer.close(http, gw.base, token)

    pc, _ = await publish(http, gw.base, "handset-2", gw.token("admin"), video=False, audio=True)
    try:
        viewer, token = await listen(gw, http, "handset-2", 2.0)
        assert abs(viewer.heard()[1] - TONE_HZ) < 10
        await viewer.close(http, gw.base, token)
    finally:
        await pc.close()


async def test_a_drones_aac_over_rtmp_is_heard(gridwatch_factory, http):
    gw = gridwatch_factory()
    drone = subprocess.Popen(
        ["ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
         "-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:sample_rate=44100", "-c:v", "libx264",
         "-preset", "ultrafast", "-tune", "zerolatency", "-g", "50", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-f", "flv",
         f"rtmp://127.0.0.1:{gw.rtmp_port}/live/drone-4?token={gw.token('admin')}"],
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await wait_metric(gw, "audio", "drone-4")
        viewer, token = await listen(gw, http, "drone-4", 2.0)
        assert abs(viewer.heard()[1] - TONE_HZ) < 10
        await viewer.close(http, gw.base, token)
    finally:
        stop(drone)
