"""Source URLs: parsing, validation and redaction of the credentials they carry."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "onvif")
_USERINFO = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s/]*)@", re.I
)
# Query parameters that carry a secret (cameras that take credentials in the URL's query).
SECRET_PARAMS = ("password", "passwd", "pwd", "pass", "token", "secret", "key", "auth", "signature")
_SECRET_QUERY = re.compile(rf"(?P<name>[?&;](?:{'|'.join(SECRET_PARAMS)})=)[^&;#\s]*", re.I)


class SourceError(ValueError):
    pass


@dataclass(frozen=True)
class Source:
    kind: str  # rtsp | rtmp | onvif | file | lavfi | clock
    url: str  # what the producer opens (credentials included)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def redacted(self) -> str:
        return redact(self.url)


def redact(text: str) -> str:
    """Hide every password written as user:password@, and every secret query parameter
    (?password=, &token=, ...), in a URL inside `text`."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m['name']}***", text)


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
            raise SourceError(f"lavfi: filter {m[1]!r} is not allowed (test patterns and picture filters only)")


def parse_source(url: str) -> Source:
    if not isinstance(url, str) or not url.strip():
        raise SourceError("empty source URL")
    if len(url) > 2048:
        raise SourceError("source URL longer than 2048 characters")
    if any(c in url for c in "\r\n\t\0 "):
        raise SourceError("source URL contains whitespace or control characters")
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep:
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
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise SourceError(f"malformed {scheme} URL: {e}") from None
    if not parts.hostname:
        raise SourceError(f"{scheme} URL has no host")
    user = unquote(parts.username) if parts.username is not None else None
    pw = unquote(parts.password) if parts.password is not None else None
    params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    kind = "rtsp" if scheme in ("rtsp", "rtsps") else scheme
    if kind == "onvif":
        if "profile" in params and not params["profile"].isdigit():
            raise SourceError("onvif: profile must be a profile index (0, 1, ...)")
        port = port or 80
    return Source(kind, url, user, pw, parts.hostname, port, params)
