"""The wall page in headless Chromium: sign in, live tiles over WHEP."""

from __future__ import annotations

import pytest

from support.browser import MEDIA_MS
from support.procs import PASSWORDS, free_port
from support.wall import sign_in


@pytest.mark.browser
async def test_wall_signs_in_and_plays_every_camera(gridwatch_factory, browser, tmp_path):
    gw = gridwatch_factory(
        {
            "cameras": [
                {
                    "id": "north",
                    "name": "North gate",
                    "source": "lavfi:testsrc2=size=640x360:rate=15",
                },
                {"id": "south", "name": "South gate", "source": "clock:640x368@15"},
                {
                    "id": "dead",
                    "name": "Dead camera",
                    "source": f"rtsp://127.0.0.1:{free_port()}/x",
                },
            ],
            "media": {"read_timeout_s": 1, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5},
        }
    )
    page = await browser.new_page()
    await page.goto(gw.base + "/")
    await page.fill("input[name=username]", "viewer")
    await page.fill("input[name=password]", "wrong")
    await page.click("button[type=submit]")
    await page.wait_for_selector("#login-error:has-text('wrong username or password')")

    await page.fill("input[name=username]", "viewer")
    await page.fill("input[name=password]", PASSWORDS["viewer"])
    await page.click("button[type=submit]")
    await page.wait_for_selector(".tile[data-camera=north][data-state=playing]", timeout=MEDIA_MS)
    await page.wait_for_selector(".tile[data-camera=south][data-state=playing]", timeout=MEDIA_MS)
    live = ".tile[data-camera=north] video, .tile[data-camera=south] video"
    sizes = await page.eval_on_selector_all(
        live, "vs => vs.map(v => [v.videoWidth, v.videoHeight, v.currentTime])"
    )
    assert [s[:2] for s in sizes] == [[640, 360], [640, 368]]
    await page.wait_for_timeout(1000)
    later = await page.eval_on_selector_all(live, "vs => vs.map(v => v.currentTime)")
    assert all(b > a[2] for a, b in zip(sizes, later, strict=True)), "video is not advancing"
    # A camera that gives no picture says so, and why.
    await page.wait_for_selector(".tile[data-camera=dead][data-state=offline]", timeout=10000)
    why = await page.get_attribute(".tile[data-camera=dead] .state", "title")
    assert why and "127.0.0.1" in why
    assert "North gate" in await page.inner_text("#videowall")
    assert await page.is_hidden("#login")
    await page.screenshot(path=str(tmp_path / "wall.png"))
    m = gw.metrics()
    assert m['gridwatch_stream_viewers{stream="north"}'] == 1.0


# The loudest frequency and the peak level of a tile's sound over 2 s, by Web Audio.
HEAR = """async (id) => {
  const v = document.querySelector(`.tile[data-camera=${id}] video`);
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 4096;
  ctx.createMediaStreamSource(v.srcObject).connect(analyser);
  const wave = new Float32Array(analyser.fftSize), spectrum = new Float32Array(analyser.frequencyBinCount);
  let peak = 0, hz = 0;
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 100));
    analyser.getFloatTimeDomainData(wave);
    const level = wave.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    if (level > peak) {
      peak = level;
      analyser.getFloatFrequencyData(spectrum);
      let k = 1;
      for (let j = 1; j < spectrum.length; j++) if (spectrum[j] > spectrum[k]) k = j;
      hz = k * ctx.sampleRate / analyser.fftSize;
    }
  }
  await ctx.close();
  return [peak, hz];
}"""


@pytest.mark.browser
async def test_a_dispatcher_listens_to_one_tile_at_a_time(rtsp_factory, gridwatch_factory, browser, tmp_path):
    """Tiles come muted; a click on a tile's speaker plays that camera's sound (its Opus
    track carries the camera's tone), and listening to another mutes the first."""
    rtsp = rtsp_factory({"/cam": "testsrc:320x240@15:300,audio=aac"})
    gw = gridwatch_factory(
        {
            "cameras": [
                {"id": "gate", "name": "Gate (with sound)", "source": rtsp.url("/cam")},
                {"id": "yard", "name": "Yard", "source": "lavfi:testsrc2=size=320x240:rate=15"},
            ]
        }
    )
    page = await browser.new_page()
    await sign_in(page, gw.base, "dispatcher", PASSWORDS["dispatcher"])
    for cam in ("gate", "yard"):
        await page.wait_for_selector(f".tile[data-camera={cam}][data-state=playing]", timeout=MEDIA_MS)
    muted = "id => document.querySelector(`.tile[data-camera=${id}] video`).muted"
    assert await page.evaluate(muted, "gate") and await page.evaluate(muted, "yard")

    await page.click(".tile[data-camera=gate] button.listen")
    assert not await page.evaluate(muted, "gate")
    # The sound really plays: the tile's stream, through Web Audio, is the camera's tone.
    peak, hz = await page.evaluate(HEAR, "gate")
    assert peak > 0.01 and abs(hz - 440) < 30, (peak, hz)
    await page.screenshot(path=str(tmp_path / "wall-listening.png"))
    await browser.screenshots("wall-listening")

    await page.click(".tile[data-camera=yard] button.listen")
    assert await page.evaluate(muted, "gate") and not await page.evaluate(muted, "yard")
    await page.click(".tile[data-camera=yard] button.listen")
    assert await page.evaluate(muted, "yard")
