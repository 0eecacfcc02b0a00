"""Property and fuzz tests: URLs, redaction, config and timestamps never misbehave."""

from __future__ import annotations

from fractions import Fraction
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from gridwatch.media.sources import SourceError, parse_source, redact, with_credentials
from gridwatch.media.stream import CLOCK_RATE, Timeline
from gridwatch.signaling.config import ConfigError, parse_config

password = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=3, max_size=40)
username = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd")), min_size=1, max_size=12)


@given(username, password)
def test_camera_passwords_never_survive_redaction(user, pw):
    url = f"rtsp://{quote(user, safe='')}:{quote(pw, safe='')}@192.0.2.10:554/stream1"
    src = parse_source(url)
    assert src.password == pw and src.username == user
    shown = redact(url)
    assert shown == f"rtsp://{quote(user, safe='')}:***@192.0.2.10:554/stream1"
    assert parse_source(shown).password == "***"
    # An error message that quotes the URL is scrubbed the same way.
    assert redact(f"Connection to {url} failed: 401") == f"Connection to {shown} failed: 401"


@given(username, password)
def test_credentials_round_trip_into_bare_uris(user, pw):
    url = with_credentials("rtsp://127.0.0.1:8554/video_main", user, pw)
    src = parse_source(url)
    assert (src.username, src.password, src.host, src.port) == (user, pw, "127.0.0.1", 8554)


@given(st.text(max_size=300))
@settings(max_examples=400)
def test_any_text_either_parses_or_raises_source_error(text):
    try:
        src = parse_source(text)
    except SourceError:
        return
    assert src.kind in {"rtsp", "rtmp", "onvif", "file", "lavfi", "clock"}


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=20,
    )
)
@settings(max_examples=300)
def test_any_yaml_value_gives_a_config_or_field_named_errors(data):
    doc = {"server": data} if not isinstance(data, dict) else data
    try:
        parse_config(doc)
    except ConfigError as e:
        assert e.errors and all(": " in line for line in e.errors)


@given(st.lists(st.tuples(st.integers(-(2**33), 2**33), st.booleans()), min_size=1, max_size=200))
def test_timeline_never_goes_backwards(steps):
    tl = Timeline()
    last = None
    for pts, restart in steps:
        if restart:
            tl.restart()
        t = tl.map(pts, Fraction(1, CLOCK_RATE))
        if last is not None:
            assert t > last
        last = t
