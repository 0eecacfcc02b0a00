"""FLV video tags to Annex-B (media/rtmp.FlvH264), fuzzed: any bytes give a packet, None
or FlvError naming the cause, and well-formed H.264 comes back exactly as it went in."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridwatch.media.audio import AudioError
from gridwatch.media.rtmp import FlvError, FlvH264, FlvSound

START = b"\x00\x00\x00\x01"
KEY, INTER = 1, 2

nal = st.binary(min_size=1, max_size=300)
length_size = st.sampled_from([1, 2, 3, 4])
cts = st.integers(-(2**23), 2**23 - 1)
timestamp = st.integers(0, 2**32 - 1)


def config_record(length_size: int, sps: list[bytes], pps: list[bytes]) -> bytes:
    """An AVCDecoderConfigurationRecord (ISO 14496-15 5.2.4.1), profile/level arbitrary."""
    out = bytes([1, 0x64, 0x00, 0x1F, 0xFC | (length_size - 1), 0xE0 | len(sps)])
    out += b"".join(len(p).to_bytes(2, "big") + p for p in sps)
    out += bytes([len(pps)]) + b"".join(len(p).to_bytes(2, "big") + p for p in pps)
    return out


def avcc(nals: list[bytes], length_size: int) -> bytes:
    return b"".join(len(n).to_bytes(length_size, "big") + n for n in nals)


def tag(frame_type: int, kind: int, body: bytes, cts: int = 0, codec: int = 7) -> bytes:
    """A legacy FLV video tag body: frame type/codec, AVCPacketType, composition time."""
    return bytes([frame_type << 4 | codec, kind]) + cts.to_bytes(3, "big", signed=True) + body


def configured(length_size: int = 4, sps: bytes = b"\x67SPS", pps: bytes = b"\x68PPS") -> FlvH264:
    flv = FlvH264()
    assert flv.packet(tag(KEY, 0, config_record(length_size, [sps], [pps])), 0) is None
    return flv


def outcome(flv: FlvH264, data: bytes, ts: int) -> None:
    """The one contract: a packet, None, or FlvError with a message; nothing else escapes."""
    try:
        packet = flv.packet(data, ts)
    except FlvError as e:
        assert str(e)
        return
    if packet is not None:
        assert packet.size > 0 and packet.dts == ts and packet.time_base == Fraction(1, 1000)


@settings(max_examples=2000)
@given(st.binary(max_size=64), timestamp)
def test_any_bytes_give_a_packet_none_or_flv_error(data, ts):
    outcome(FlvH264(), data, ts)
    outcome(configured(), data, ts)


@settings(max_examples=1000)
@given(
    st.sampled_from([0x17, 0x27, 0x90, 0x91, 0x93, 0x10, 0x57]),
    st.sampled_from([0, 1, 2, 3, 9]),
    st.binary(max_size=48),
)
def test_near_valid_tags_give_a_packet_none_or_flv_error(first, kind, rest):
    """Random tails behind the headers that matter: a sequence header, a frame, an
    enhanced avc1 tag; reaches deeper than bytes alone (the record and the NAL walk)."""
    for data in (bytes([first, kind]) + rest, bytes([first]) + b"avc1" + rest):
        outcome(FlvH264(), data, 0)
        flv = configured(length_size=3)
        outcome(flv, data, 0)
        outcome(flv, tag(KEY, 1, rest), 0)  # and the decoder state it may have changed


@st.composite
def damaged_records(draw) -> bytes:
    """A valid AVCDecoderConfigurationRecord, then cut short and/or with bytes overwritten:
    the shapes a broken encoder or a cut connection leaves (random bytes alone seldom get
    past the version byte)."""
    sps = draw(st.lists(st.binary(max_size=12), max_size=3))
    pps = draw(st.lists(st.binary(max_size=12), max_size=3))
    record = bytearray(config_record(draw(length_size), sps, pps))
    for _ in range(draw(st.integers(0, 3))):
        record[draw(st.integers(0, len(record) - 1))] = draw(st.integers(0, 255))
    return bytes(record[: draw(st.integers(0, len(record)))])


@settings(max_examples=1000)
@given(damaged_records(), st.binary(max_size=24), st.booleans())
def test_damaged_config_records_and_frames_give_flv_error_only(record, frame, enhanced):
    """A damaged sequence header, then a frame after it: FlvError or a result, never
    another exception (struct.error, IndexError) out of the record or the NAL walk."""
    flv = FlvH264()
    header = bytes([0x90]) + b"avc1" if enhanced else tag(KEY, 0, b"")
    outcome(flv, header + record, 0)
    outcome(flv, tag(KEY, 1, frame), 0)


@given(
    length_size,
    st.lists(nal, min_size=1, max_size=3),
    st.lists(nal, min_size=1, max_size=3),
    st.lists(
        st.tuples(st.booleans(), st.lists(nal, min_size=1, max_size=5)), min_size=1, max_size=6
    ),
    timestamp,
    cts,
)
def test_avcc_round_trips_to_the_same_annexb_with_parameter_sets_before_key_frames(
    size, sps, pps, frames, ts, offset
):
    limit = 2 ** (8 * size) - 1
    frames = [(key, [n[:limit] for n in nals]) for key, nals in frames]
    flv = FlvH264()
    assert flv.packet(tag(KEY, 0, config_record(size, sps, pps)), ts) is None
    params = b"".join(START + p for p in sps + pps)
    for key, nals in frames:
        packet = flv.packet(tag(KEY if key else INTER, 1, avcc(nals, size), offset), ts)
        assert packet is not None
        expected = (params if key else b"") + b"".join(START + n for n in nals)
        assert bytes(packet) == expected
        assert packet.is_keyframe == key
        assert (packet.pts, packet.dts) == (ts + offset, ts)


@given(timestamp, cts)
def test_composition_time_is_a_signed_24_bit_offset_from_the_timestamp(ts, offset):
    packet = configured().packet(tag(INTER, 1, avcc([b"\x41frame"], 4), offset), ts)
    assert packet is not None and packet.pts == ts + offset and packet.dts == ts


def test_enhanced_rtmp_avc1_is_taken_like_legacy_h264():
    flv = FlvH264()
    record = config_record(4, [b"\x67S"], [b"\x68P"])
    assert flv.packet(bytes([0x80 | KEY << 4 | 0]) + b"avc1" + record, 0) is None  # SequenceStart
    frame = avcc([b"\x65idr"], 4)
    coded = flv.packet(
        bytes([0x80 | KEY << 4 | 1]) + b"avc1" + (-40).to_bytes(3, "big", signed=True) + frame, 100
    )
    assert bytes(coded) == START + b"\x67S" + START + b"\x68P" + START + b"\x65idr"
    assert (coded.pts, coded.dts) == (60, 100)
    coded_x = flv.packet(bytes([0x80 | INTER << 4 | 3]) + b"avc1" + avcc([b"\x41p"], 4), 140)
    assert bytes(coded_x) == START + b"\x41p" and coded_x.pts == 140


def test_zero_length_nals_are_skipped_and_an_empty_frame_is_no_packet():
    flv = configured(length_size=2)
    packet = flv.packet(tag(INTER, 1, b"\x00\x00" + avcc([b"\x41a"], 2) + b"\x00\x00"), 5)
    assert bytes(packet) == START + b"\x41a"
    assert flv.packet(tag(INTER, 1, b""), 6) is None
    assert flv.packet(tag(INTER, 1, b"\x00\x00"), 7) is None


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (bytes([0x22, 0, 0, 0, 0]), "Sorenson H.263 (codec id 2)"),
        (bytes([0x14, 0, 0, 0, 0]), "On2 VP6 (codec id 4)"),
        (bytes([0x15, 0, 0, 0, 0]), "On2 VP6 with alpha (codec id 5)"),
        (bytes([0x13, 0, 0, 0, 0]), "Screen video (codec id 3)"),
        (bytes([0x16, 0, 0, 0, 0]), "Screen video v2 (codec id 6)"),
        (bytes([0x1C, 0, 0, 0, 0]), "HEVC (codec id 12)"),
        (bytes([0x1E, 0, 0, 0, 0]), "unknown (codec id 14)"),
        (bytes([0x90]) + b"hvc1" + b"\x01\x02", "enhanced RTMP video codec HEVC (hvc1)"),
        (bytes([0x90]) + b"av01", "enhanced RTMP video codec AV1 (av01)"),
        (bytes([0x91]) + b"vp09", "enhanced RTMP video codec VP9 (vp09)"),
        (bytes([0x90]) + b"\xff\x00ab", "enhanced RTMP video codec FourCC 'ff006162'"),
        (bytes([0x96, 0x00]) + b"avc1", "enhanced RTMP multitrack video"),
        (bytes([0x90]) + b"av", "shorter than its FourCC"),
        (b"", "empty video tag"),
        (bytes([0x17, 1]), "H.264 video tag of 2 bytes"),
        (bytes([0x07, 1, 0, 0, 0]), "reserved FLV video frame type 0"),
        (tag(KEY, 7, b""), "unknown AVC packet type 7"),
        (tag(KEY, 1, avcc([b"\x65"], 4)), "before the AVC sequence header"),
        (tag(KEY, 0, b"\x01\x64\x00"), "AVC sequence header of 3 bytes"),
        (tag(KEY, 0, b"\x02\x64\x00\x1f\xff\xe1"), "AVC sequence header version 2"),
        (tag(KEY, 0, b"\x01\x64\x00\x1f\xff\xe1"), "ends inside SPS 1 of 1"),
        (tag(KEY, 0, b"\x01\x64\x00\x1f\xff\xe2\x00\x02\x67\x01"), "ends inside SPS 2 of 2"),
        (tag(KEY, 0, b"\x01\x64\x00\x1f\xff\xe1\x00\x09\x67"), "SPS 1 of 1 runs past its end"),
        (tag(KEY, 0, b"\x01\x64\x00\x1f\xff\xe1\x00\x01\x67"), "ends before its PPS count"),
        (tag(KEY, 0, b"\x01\x64\x00\x1f\xff\xe0\x03\x00\x01\x68"), "ends inside PPS 2 of 3"),
    ],
)
def test_refusals_name_their_cause(data, cause):
    with pytest.raises(FlvError, match=cause.replace("(", r"\(").replace(")", r"\)")):
        FlvH264().packet(data, 0)


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        (b"\x00\x00\x00\x09\x65", "a NAL unit of 9 bytes runs past the end"),
        (avcc([b"\x65a"], 4) + b"\x00\x00", "2 stray bytes after the last NAL unit"),
    ],
)
def test_malformed_frames_name_their_cause(body, cause):
    with pytest.raises(FlvError, match=cause):
        configured().packet(tag(KEY, 1, body), 0)


@given(st.lists(st.binary(max_size=64), min_size=1, max_size=6))
@settings(max_examples=300)
def test_any_audio_tags_give_sound_none_or_a_named_error(tags):
    """FLV audio (FlvSound): whatever a publisher sends, a packet of sound, None, or an
    FlvError / AudioError that says why; never another exception."""
    sound = FlvSound()
    for i, body in enumerate(tags):
        try:
            packet = sound.packet(body, i * 20)
            if packet is not None:
                sound.transcode(packet)
        except (FlvError, AudioError) as e:
            assert str(e)


@pytest.mark.parametrize(
    ("first_byte", "name"), [(0x0F, "linear PCM"), (0x5F, "Nellymoser"), (0xBF, "Speex")]
)
def test_audio_formats_we_do_not_take_are_named(first_byte, name):
    with pytest.raises(FlvError, match=name):
        FlvSound().packet(bytes([first_byte, 1, 2, 3]), 0)
