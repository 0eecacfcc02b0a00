"""Source URLs: parsing, validation and redaction of the credentials they carry.

Where a network URL's user info ends is decided in one place, `split_authority`, which
both `parse_source` (what the producer opens) and `redact` (what the API and the log
show) use, so that the two can never disagree about which characters are the password.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "onvif")
# Characters that are never part of a URL as written: whitespace, control characters
# and the delimiters RFC 3986 leaves out (" < > \). parse_source refuses them and redact
# ends a URL at the first one, so a URL the reader takes is always redacted whole.
# (' is a legal URL character, so it does not end one: 'rtsp://...' in a repr is still
# redacted, the closing quote reads as part of the path.)
_NOT_URL = r'\s"<>\\\x00-\x1f\x7f-\x9f'
_NOT_URL_CHAR = re.compile(f"[{_NOT_URL}]")
_URL_IN_TEXT = re.compile(rf"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<rest>[^{_NOT_URL}]*)", re.I)
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,15}", re.I | re.A)
_AUTHORITY_END = re.compile(r"[/?#]")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", re.I | re.A)
_PORT = re.compile(r":([0-9]{0,5})")
_MAX_HOST_PORT = 2 + 253 + 6  # [IPv6] or a DNS name, then :65535
# Query parameters that carry a secret (cameras that take credentials in the URL's query).
SECRET_PARAMS = ("password", "passwd", "pwd", "pass", "token", "secret", "key", "auth", "signature")
_SECRET_QUERY = re.compile(rf"(?P<name>[?&;](?:{'|'.join(SECRET_PARAMS)})=)[^&;#\s]*", re.I)


class SourceError(ValueError):
    pass


@dataclass(frozen=True)
class Source:
    kind: str  # rtsp | rtmp | onvif | file | lavfi | clock
    url: str  # what the producer opens (credentials included, percent-encoded)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def redacted(self) -> str:
        return redact(self.url)


@dataclass(frozen=True)
class Authority:
    """The authority of a URL, as written (nothing decoded), and where it ends.

    user and password are None when absent (password also when the user info has no
    `:`); host_port is the text after the user info, `end` the index in the text after
    `scheme://` where the path, query or fragment begins. `ambiguous`: the user info as
    FFmpeg's av_url_split reads it ends at another `@` than the one chosen (see
    `split_authority`)."""

    user: str | None
    password: str | None
    host_port: str
    end: int
    ambiguous: bool = False


def host_port(text: str) -> tuple[str, int | None] | None:
    """`host[:port]` (a DNS name, an IPv4 address or a bracketed IPv6 address, then an
    optional port 0-65535, which may be empty) as (host, port); None when it is not one.
    The host is returned as written, without brackets."""
    if text.startswith("["):
        close = text.find("]")
        host, tail = text[1:close], text[close + 1 :]
        if close < 0 or not _is_ipv6(host):
            return None
    else:
        host, colon, port = text.partition(":")
        tail = colon + port
        if not _is_dns_name(host):
            return None
    if not tail:
        return host, None
    m = _PORT.fullmatch(tail)
    if not m or (m[1] and int(m[1]) > 65535):
        return None
    return host, int(m[1]) if m[1] else None


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _is_dns_name(text: str) -> bool:
    # Underscores are not DNS but appear in container and LAN host names; IPv4 addresses
    # are dotted labels of digits.
    name = text[:-1] if text.endswith(".") else text
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def _authority_end(rest: str, start: int) -> int:
    m = _AUTHORITY_END.search(rest, start)
    return m.start() if m else len(rest)


def _host_follows(rest: str, at: int) -> bool:
    """Whether a valid host[:port] follows the `@` at `at` (up to the next `/?#`)."""
    m = _AUTHORITY_END.search(rest, at + 1, at + 2 + _MAX_HOST_PORT)
    end = m.start() if m else len(rest)
    if end - at - 1 > _MAX_HOST_PORT:
        return False
    return host_port(rest[at + 1 : end]) is not None


def split_authority(rest: str) -> Authority:
    """The authority of a URL whose text after `scheme://` is `rest`.

    The rule, FFmpeg's av_url_split first: the authority ends at the first of `/?#`, and
    inside it the LAST `@` ends the user info; the first `:` in the user info ends the
    user name. A password with a raw `/`, `?` or `#` cuts that authority short, so when
    it has no `@` (or no valid host[:port] after its last one), the user info instead
    runs to the last `@` in `rest` that is followed by a valid host[:port] and is preceded
    by a `:` (a password: a path such as /live@main without one is left alone).

    When the FFmpeg reading finds a valid host but a later `@` also qualifies (a raw
    `@host/` inside the password, or an `@` in the path), the later `@` is chosen, which
    hides the most, and the result is `ambiguous`: parse_source refuses such a URL.
    Without any `@` the whole authority is host[:port] (which may be invalid: the caller
    checks it with `host_port`)."""
    stop = _authority_end(rest, 0)
    ffmpeg_at = rest.rfind("@", 0, stop)
    colon = rest.find(":")
    later = -1
    at = rest.rfind("@")
    while at > stop:  # the last qualifying `@` beyond the FFmpeg authority
        if 0 <= colon < at and _host_follows(rest, at):
            later = at
            break
        at = rest.rfind("@", 0, at)
    ffmpeg_valid = ffmpeg_at >= 0 and _host_follows(rest, ffmpeg_at)
    if later >= 0:
        chosen, ambiguous = later, ffmpeg_valid
    elif ffmpeg_at >= 0:
        chosen, ambiguous = ffmpeg_at, False
    else:
        return Authority(None, None, rest[:stop], stop)
    end = _authority_end(rest, chosen + 1)
    user, colon_sep, password = rest[:chosen].partition(":")
    return Authority(user, password if colon_sep else None, rest[chosen + 1 : end], end, ambiguous)


def redact(text: str) -> str:
    """`text` (a log line, an error message, a JSON body: anything) with the password of
    every `scheme://user:password@host` URL in it replaced by `***`, and the value of
    every secret query parameter (?password=, &token=, ...) too.

    A URL starts at `scheme://` and ends at whitespace, a control character or one of
    `" < > \\` (the characters parse_source refuses); where its user info ends is decided
    by `split_authority`, as parse_source decides it. The user name and host stay."""
    out: list[str] = []
    pos = 0
    while m := _URL_IN_TEXT.search(text, pos):
        start = m.start("rest")
        authority = split_authority(m["rest"])
        out.append(text[pos:start])
        if authority.password is None:
            pos = start  # the rest is scanned again: another URL may be in its path
            continue
        out.append(f"{authority.user}:***@{authority.host_port}")
        pos = start + authority.end
    out.append(text[pos:])
    return _SECRET_QUERY.sub(lambda m: f"{m['name']}***", "".join(out))


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """Put user:password into a URL that has none (ONVIF hands out bare RTSP URIs)."""
    if not username:
        return url
    parts = urlsplit(url)
    if parts.username:
        return url
    userinfo = quote(username, safe="")
    if password:
        userinfo += ":" + quote(password, safe="")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{userinfo}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# Test patterns and plain picture filters only: FFmpeg's movie, amovie, sendcmd,
# drawtext (fontfile, textfile) and the like open files and URLs.
LAVFI_FILTERS = frozenset({
    "testsrc", "testsrc2", "smptebars", "smptehdbars", "rgbtestsrc", "yuvtestsrc", "pal75bars",
    "pal100bars", "mandelbrot", "life", "cellauto", "color", "allrgb", "allyuv", "gradients",
    "sierpinski", "zoneplate", "nullsrc", "scale", "format", "fps", "hue", "noise", "drawbox",
    "setpts", "hflip", "vflip", "transpose", "boxblur", "negate",
})  # fmt: skip
_LAVFI_STEP = re.compile(r"([a-z0-9_]+)(?:=([A-Za-z0-9_.:=+/#-]*))?")


def check_lavfi(graph: str) -> None:
    """A lavfi: graph is a chain of allowed filters with plain options; SourceError names
    the first filter that is not (no quoting, no escapes, no second chain)."""
    for step in graph.split(","):
        m = _LAVFI_STEP.fullmatch(step)
        if not m:
            raise SourceError(f"lavfi: {step[:40]!r} is not a plain filter with options")
        if m[1] not in LAVFI_FILTERS:
            raise SourceError(
                f"lavfi: filter {m[1]!r} is not allowed (test patterns and picture filters only)"
            )


def parse_source(url: str) -> Source:
    """The Source a camera's `source` string names; SourceError says what is wrong,
    never quoting the user info (the password may be anywhere in it).

    Network URLs (rtsp, rtsps, rtmp, onvif) are split by `split_authority`, as `redact`
    splits them; `%XX` in the user name and password is decoded (as FFmpeg decodes RTSP
    credentials), and Source.url carries them percent-encoded again, so that FFmpeg reads
    exactly the username and password found here even when they hold a raw `@ : / ? #`."""
    if not isinstance(url, str) or not url.strip():
        raise SourceError("empty source URL")
    if len(url) > 2048:
        raise SourceError("source URL longer than 2048 characters")
    # Printable only, besides: a URL in a repr() or a traceback is then written as is,
    # never with \\u escapes that would end it early for redact.
    if _NOT_URL_CHAR.search(url) or not url.isprintable():
        raise SourceError(
            'source URL contains whitespace, control characters or one of " < > \\ '
            "(write them percent-encoded)"
        )
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep or not _SCHEME.fullmatch(scheme):
        raise SourceError("source URL has no scheme (rtsp://, onvif://, file:, lavfi:, clock:)")
    if scheme == "file":
        path = rest[2:] if rest.startswith("//") else rest
        if not path.startswith("/"):
            raise SourceError("file: source needs an absolute path")
        return Source("file", path)
    if scheme == "lavfi":
        if not rest:
            raise SourceError("lavfi: source needs a filter graph, e.g. lavfi:testsrc2")
        check_lavfi(rest)
        return Source("lavfi", rest)
    if scheme == "clock":
        m = re.fullmatch(r"(?:(\d{2,4})x(\d{2,4}))?(?:@(\d{1,2}))?", rest)
        if not m:
            raise SourceError("clock: source is clock:[WxH][@FPS], e.g. clock:1280x720@30")
        w, h, fps = int(m[1] or 640), int(m[2] or 360), int(m[3] or 30)
        if w % 16 or h % 16 or w < 128 or h < 128 or not 1 <= fps <= 60:
            raise SourceError("clock: size must be multiples of 16, at least 128, fps 1-60")
        return Source("clock", url, params={"width": str(w), "height": str(h), "fps": str(fps)})
    if scheme not in NETWORK_SCHEMES:
        raise SourceError(f"unsupported source scheme {scheme!r}")
    return _network_source(scheme, url)


def _network_source(scheme: str, url: str) -> Source:
    """An rtsp, rtsps, rtmp or onvif URL as a Source (see parse_source)."""
    written = url[: len(scheme)]
    rest = url[len(scheme) + 1 :]
    if not rest.startswith("//"):
        raise SourceError(f"{scheme} URL must start with {scheme}://")
    authority = split_authority(rest[2:])
    if authority.ambiguous:
        raise SourceError(
            f"{scheme} URL: where the user info ends is ambiguous (an @ followed by a host "
            "comes before a / ? or #, and another later); write @ / ? # in the password "
            "or the path percent-encoded (%40 %2F %3F %23)"
        )
    if not authority.host_port:
        raise SourceError(f"{scheme} URL has no host")
    found = host_port(authority.host_port)
    if found is None:
        raise SourceError(
            f"{scheme} URL: the host or port is not valid (host[:port] after the user info)"
        )
    host, port = found
    tail = rest[2 + authority.end :]  # path, query, fragment
    kind = "rtsp" if scheme in ("rtsp", "rtsps") else scheme
    user, pw, opened = authority.user, authority.password, url
    if user is not None:
        user, pw = _credentials(kind, user, pw)
        opened = f"{written}://{_userinfo(kind, user, pw)}@{authority.host_port}{tail}"
    params = {k: v[-1] for k, v in parse_qs(tail.partition("#")[0].partition("?")[2]).items()}
    if kind == "onvif":
        if "profile" in params and not params["profile"].isdigit():
            raise SourceError("onvif: profile must be a profile index (0, 1, ...)")
        port = port or 80
    return Source(kind, opened, user, pw, host.lower(), port, params)


def _credentials(kind: str, user: str, pw: str | None) -> tuple[str, str | None]:
    """The user name and password as the reader uses them: %XX decoded for RTSP and ONVIF
    (FFmpeg's RTSP client url-decodes them), as written for RTMP (FFmpeg's RTMP client
    does not, and so cannot take a / ? or # in them)."""
    if kind == "rtmp":
        if any(c in (user + (pw or "")) for c in "/?#"):
            raise SourceError(
                "rtmp URL: FFmpeg takes RTMP credentials as written; / ? # cannot be in them"
            )
        return user, pw
    try:
        return unquote(user, errors="strict"), None if pw is None else unquote(pw, errors="strict")
    except UnicodeDecodeError:
        raise SourceError("the user name or password, percent-decoded, is not UTF-8") from None


def _userinfo(kind: str, user: str, pw: str | None) -> str:
    """user[:password] for the URL the producer opens (see _credentials)."""
    if kind == "rtmp":
        return user if pw is None else f"{user}:{pw}"
    encoded = quote(user, safe="")
    return encoded if pw is None else f"{encoded}:{quote(pw, safe='')}"
