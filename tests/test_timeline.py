"""The stream's timeline, packet by packet: every discontinuity a source can make is
taken with even frame spacing, and B-frames keep their composition offsets."""

from __future__ import annotations

import itertools
from fractions import Fraction

import av
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridwatch.media.h264 import IDR, PPS, SPS, H264Encoder, ParameterSets, nal_type, nal_units
from gridwatch.media.producers import DecodeTimes
from gridwatch.media.stream import CLOCK_RATE, Timeline

RTP = Fraction(1, CLOCK_RATE)
FRAME = 3000  # 30 fps


def feed(tl: Timeline, dts_values: list[int], time_base: Fraction = RTP) -> list[int]:
    return [tl.map(d, d, time_base)[1] for d in dts_values]


def steps(values: list[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise(values)]


def run(start: int, n: int) -> list[int]:
    return [start + i * FRAME for i in range(n)]


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(run(900_000, 40) + run(900_000 - 2 * FRAME, 40), id="small step back"),
        pytest.param(run(900_000, 40) + run(90_000, 40), id="large step back"),
        pytest.param(run(900_000, 40) + run(900_000 + 3600 * CLOCK_RATE, 40), id="jump forward"),
        pytest.param(run(2**32 - 20 * FRAME, 40) + run(20 * FRAME, 40), id="32-bit wrap"),
    ],
)
def test_every_discontinuity_keeps_frames_one_interval_apart(source):
    out = feed(Timeline(), source)
    assert set(steps(out)) == {FRAME}, steps(out)


def test_a_clock_that_stands_still_still_gives_frames_one_interval_apart():
    """One repeat may be a second piece of the same picture (a tick on); a clock that
    keeps standing is a camera that lies, and each of its packets is a frame."""
    out = feed(Timeline(), run(0, 40) + [900_000] * 40)
    assert steps(out)[40] == 1 and set(steps(out)[:40] + steps(out)[41:]) == {FRAME}


def test_a_restart_goes_on_from_the_running_clock():
    tl = Timeline()
    before = feed(tl, run(5_000_000, 30))
    tl.restart()
    after = feed(tl, run(0, 30))
    assert after[0] - before[-1] >= FRAME and set(steps(after)) == {FRAME}


def test_pieces_of_one_picture_stay_together_and_in_order():
    """Two packets of one picture (same time) are one tick apart; the next picture is on
    the beat."""
    tl = Timeline()
    out = feed(tl, [0, FRAME, FRAME, 2 * FRAME, 3 * FRAME])
    assert steps(out) == [FRAME, 1, FRAME, FRAME]


def test_b_frames_keep_their_composition_offsets_in_flv_milliseconds():
    tl = Timeline()
    # I P B B P B B: decode every 40 ms, presentation reordered (FLV: ms, cts).
    dts = [0, 40, 80, 120, 160, 200, 240]
    pts = [80, 200, 120, 160, 320, 240, 280]
    out = [tl.map(p, d, Fraction(1, 1000)) for p, d in zip(pts, dts, strict=True)]
    assert [o[1] - out[0][1] for o in out] == [d * 90 for d in dts]
    assert [o[0] - o[1] for o in out] == [(p - d) * 90 for p, d in zip(pts, dts, strict=True)]


def test_held_rtsp_packets_get_evenly_spaced_decode_times():
    """FFmpeg's RTSP demuxer gives a B-frame stream's first packets no decode time."""
    times = DecodeTimes(FRAME)
    got = []
    for pts, dts in [(None, None), (9000, None), (3000, None), (6000, 3000), (18000, 6000)]:
        packet = av.Packet(b"\0")
        packet.pts, packet.dts = pts, dts
        got += times(packet)
    assert [p.dts for p in got] == [-6000, -3000, 0, 3000, 6000]
    assert all(p.pts >= p.dts for p in got)


def test_parameter_sets_go_back_before_a_bare_idr():
    enc = H264Encoder(160, 96, 10)
    frames = [av.VideoFrame(160, 96, "yuv420p") for _ in range(12)]
    packets = [p for f in frames for p in enc.encode(f)]
    keys = [p for p in packets if p.is_keyframe]
    assert len(keys) >= 2
    params = ParameterSets()
    first = params.complete(keys[0])
    assert first is keys[0]  # it has its own: nothing to add
    units = nal_units(bytes(keys[1]))
    bare = av.Packet(b"".join(u for u in units if nal_type(u) not in (SPS, PPS)))
    bare.pts, bare.dts, bare.time_base = keys[1].pts, keys[1].dts, keys[1].time_base
    bare.is_keyframe = True
    fixed = params.complete(bare)
    kinds = [nal_type(u) for u in nal_units(bytes(fixed))]
    assert kinds[:2] == [SPS, PPS] and IDR in kinds
    # A decoder that never saw the first key frame decodes the fixed one on its own.
    decoder = av.CodecContext.create("h264", "r")
    assert [*decoder.decode(fixed), *decoder.decode(None)]
    with pytest.raises(av.error.InvalidDataError):  # and the bare one it could not
        av.CodecContext.create("h264", "r").decode(bare)


@given(
    st.lists(
        st.binary(max_size=40)
        | st.sampled_from([b"\0\0\1", b"\0\0\0\1", b"\x65", b"\x67", b"\x68"]),
        max_size=30,
    ),
    st.booleans(),
)
@settings(max_examples=500)
def test_parameter_sets_take_any_bytes(pieces, keyframe):
    """Whatever a publisher puts in a packet (empty NAL units, start codes back to back),
    ParameterSets gives a packet back, never an exception."""
    params = ParameterSets()
    for data in (b"".join(pieces), b"\0\0\1\x67\x42\0\0\1\x68\xce" + b"".join(pieces)):
        packet = av.Packet(data)
        packet.is_keyframe = keyframe
        assert params.complete(packet) is not None
