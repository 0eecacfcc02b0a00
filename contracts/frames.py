"""The sampled-frame stream between the media nodes and the detector workers:
`gw:frames:{camera}`, the newest FRAMES_MAXLEN entries (`jpeg`, `ts`, `width`, `height`)."""

FRAMES_MAXLEN = 4  # a worker that falls behind reads the newest frames, never a backlog


def frames_key(camera: str) -> str:
    return f"gw:frames:{camera}"
