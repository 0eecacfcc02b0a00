#!/usr/bin/python3
"""Loopback RTSP test server for Gridwatch tests and benchmarks.

A real RTSP server (GStreamer gst-rtsp-server via PyGObject) that serves
synthetic, file-backed or relayed H.264 / MJPEG streams on 127.0.0.1 only.

It needs Debian's system Python with the GStreamer introspection bindings
(python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-{base,good,ugly,
bad}).  Those bindings do not load inside a virtualenv, so always start it
with /usr/bin/python3, as a subprocess of the tests.  It uses only the
standard library plus ``gi``.

Usage::

    /usr/bin/python3 tests/support/rtsp_server.py --port PORT \
        [--mount PATH=SPEC ...] [--threads N] [--backlog N] \
        [--udp-ports LO-HI] [--auth USER:PASSWORD] [--die-with-parent]
        [-v|--verbose]

``--port 0`` picks a free port; the chosen port is the one printed on the
READY line.  ``--mount`` may be repeated; without any, a single
``/cam1=testsrc:1280x720@30:4000`` mount is served.

Mount specs (every stream is shared: all clients of one mount see the same
live stream; TCP-interleaved and UDP unicast transports are offered,
multicast is not):

``testsrc[:WxH[@FPS]][:KBPS][,key=value...]``
    videotestsrc is-live=true ! x264enc tune=zerolatency
    speed-preset=ultrafast bitrate=KBPS key-int-max=FPS (1 s GOP, no
    B-frames) ! video/x-h264,profile=constrained-baseline !
    rtph264pay name=pay0 pt=96 config-interval=1.
    Defaults: 640x360@30, 1000 kbit/s.  Options: ``pattern=NAME`` (any
    videotestsrc pattern, default smpte), ``speed=N`` (horizontal scroll in
    px/frame, default 4 so frames differ; 0 = static picture),
    ``gop=N`` (key-int-max in frames, default = FPS), ``bframes=N`` (main profile
    with N B-frames, b-adapt off, no zerolatency: a camera whose decode and
    presentation orders differ), ``audio=aac|pcma|pcmu`` (a 440 Hz tone as a
    second stream, AAC at 16 kHz or G.711 at 8 kHz, as IP cameras send sound).  With the
    ultrafast preset x264 only ever emits constrained baseline (no CABAC,
    no B-frames; SDP profile-level-id 42c0xx), which WebRTC peers accept
    for pass-through; the caps filter just makes that explicit.
    e.g. ``/cam1=testsrc:1280x720@30:4000``

``mjpeg[:WxH[@FPS]][:QUALITY][,key=value...]``
    videotestsrc is-live=true ! jpegenc quality=QUALITY (default 85) !
    rtpjpegpay name=pay0 pt=26.  Same pattern/speed options.
    e.g. ``/mj=mjpeg:640x360@15``

``file:/path/to/video.mp4``
    Loops an MP4/MOV forever, paced in real time.  H.264 video is passed
    through without re-encoding (qtdemux ! h264parse); any other video codec
    is decoded and re-encoded with x264 (1 s GOP).  The file is demuxed by
    one always-running "feeder" pipeline per mount (segment seeks give a
    seamless loop with continuous timestamps) and handed to the RTSP media
    through an appsrc, so the mount behaves like a live camera: a client
    joins mid-stream and starts at the next keyframe of the file.
    e.g. ``/file1=file:/tmp/clip.mp4``

``udp:PORT``
    Receives RTP/H.264 (payload type 96) on 127.0.0.1:PORT and re-serves it:
    udpsrc ! rtph264depay ! h264parse config-interval=-1 !
    rtph264pay name=pay0 pt=96 config-interval=1.  The UDP port is only
    bound while at least one RTSP client is connected (the media is torn
    down when the last client leaves).  Feed it e.g. with::

        ffmpeg -re -f lavfi -i testsrc2=size=640x360:rate=30 -c:v libx264 \
            -preset ultrafast -tune zerolatency -g 30 \
            -bsf:v h264_mp4toannexb -f rtp rtp://127.0.0.1:5004

    e.g. ``/udp1=udp:5004``

``--auth USER:PASSWORD`` (split at the first ``:``; the password may hold
any character, ``@ / # :`` included; repeatable) makes every mount require
RTSP Basic authentication with one of those credentials: a client without
them, or with others, gets 401 Unauthorized and no stream.

Protocol with the parent process:

* When every mount is set up and the listening socket is bound, exactly one
  line ``READY <port>`` is printed to stdout (and flushed).  Nothing else is
  ever written to stdout; diagnostics go to stderr.
* Startup errors (bad spec, missing file, port in use) exit with status 2
  before READY.
* SIGTERM / SIGINT close all client connections and exit with status 0.
  ``--die-with-parent`` additionally asks the kernel to send SIGTERM when
  the parent process (strictly: the parent *thread*) exits.

Behaviour worth knowing in tests:

* A mount's pipeline (except file mounts' feeders) is built on the first
  DESCRIBE and torn down when its last client leaves; the first client gets
  the encoder's first IDR at once (DESCRIBE ~15-60 ms, first RTP ~65-140
  ms).  A client joining a running mount starts mid-GOP and its decoder
  must wait for the next keyframe (up to one GOP: 1 s by default).
  file: mounts behave the same way with the file's GOP; udp: mounts answer
  DESCRIBE only once the sender's next IDR (with SPS/PPS) arrives, and with
  no sender DESCRIBE fails with 503 after gst-rtsp-server's 20 s timeout.
* Clients joining never disturb clients already playing (PLAY's Range
  header is not turned into a seek of the shared live pipeline; the SDP
  therefore carries a=ts-refclk:local / a=mediaclk:sender).
* When the server exits (SIGTERM or SIGKILL) clients see the TCP control
  connection close within a few ms; PyAV/ffmpeg report this as a plain end
  of stream (demux() just stops), not as an error, even on UDP transport.
* A restarted server can bind the same port immediately (GLib sets
  SO_REUSEADDR), even with the old connections still in FIN-WAIT/CLOSE-WAIT.
* Server-side RTP/RTCP UDP sockets come from --udp-ports and are bound to
  127.0.0.1; several servers may share the range (busy ports are skipped).

Example (pytest fixture sketch)::

    proc = subprocess.Popen(["/usr/bin/python3", "tests/support/rtsp_server.py",
                             "--port", "0", "--mount", "/cam1=testsrc:640x360@30:1000"],
                            stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline().split()[1])   # "READY <port>"
    url = f"rtsp://127.0.0.1:{port}/cam1"
    ...
    proc.terminate(); proc.wait(5)
"""

import argparse
import os
import re
import signal
import sys
import threading
import time

try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer
except (ImportError, ValueError) as exc:  # pragma: no cover - environment check
    sys.stderr.write(
        "rtsp_server.py: GStreamer RTSP bindings unavailable (%s).\n"
        "Run it with Debian's /usr/bin/python3 (not a venv) and install "
        "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-*.\n" % exc
    )
    sys.exit(2)

HOST = "127.0.0.1"
NONE = Gst.CLOCK_TIME_NONE
DEFAULT_MOUNT = "/cam1=testsrc:1280x720@30:4000"
VERBOSE = False


def log(msg):
    sys.stderr.write("rtsp_server: %s\n" % msg)
    sys.stderr.flush()


def debug(msg):
    if VERBOSE:
        log(msg)


class SpecError(ValueError):
    pass


# --------------------------------------------------------------------------
# Spec parsing
# --------------------------------------------------------------------------

_SYNTH_RE = re.compile(
    r"^(?P<kind>testsrc|mjpeg)"
    r"(?::(?P<w>\d+)x(?P<h>\d+)(?:@(?P<fps>\d+))?)?"
    r"(?::(?P<num>\d+))?$"
)


def _parse_synth(spec):
    head, _, opts_s = spec.partition(",")
    m = _SYNTH_RE.match(head)
    if not m:
        raise SpecError("bad spec %r (want e.g. testsrc:1280x720@30:4000)" % spec)
    opts = {}
    if opts_s:
        for item in opts_s.split(","):
            key, eq, val = item.partition("=")
            if not eq or not key:
                raise SpecError("bad option %r in %r (want key=value)" % (item, spec))
            opts[key.strip()] = val.strip()
    unknown = set(opts) - {"pattern", "speed", "gop", "bframes", "audio"}
    if unknown:
        raise SpecError("unknown option(s) %s in %r" % (", ".join(sorted(unknown)), spec))
    kind = m.group("kind")
    w = int(m.group("w") or 640)
    h = int(m.group("h") or 360)
    fps = int(m.group("fps") or 30)
    if not (w > 0 and h > 0 and fps > 0):
        raise SpecError("width, height and fps must be positive in %r" % spec)
    if not re.match(r"^[A-Za-z0-9_-]+$", opts.get("pattern", "smpte")):
        raise SpecError("bad pattern in %r" % spec)
    src = (
        "videotestsrc is-live=true pattern={pattern} horizontal-speed={speed} "
        "! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1"
    ).format(pattern=opts.get("pattern", "smpte"), speed=int(opts.get("speed", 4)),
             w=w, h=h, fps=fps)
    if kind == "testsrc":
        kbps = int(m.group("num") or 1000)
        gop = int(opts.get("gop", fps))
        bframes = int(opts.get("bframes", 0))
        if bframes:
            # Main profile with B-frames, as most IP cameras send (zerolatency forbids them).
            x264 = "bframes={b} b-adapt=false ! video/x-h264,profile=main".format(b=bframes)
        else:
            x264 = "tune=zerolatency ! video/x-h264,profile=constrained-baseline"
        enc = (
            "x264enc speed-preset=ultrafast bitrate={kbps} key-int-max={gop} {x264} "
            "! rtph264pay name=pay0 pt=96 config-interval=1"
        ).format(kbps=kbps, gop=gop, x264=x264)
    else:
        quality = int(m.group("num") or 85)
        if not 0 <= quality <= 100:
            raise SpecError("jpeg quality must be 0..100 in %r" % spec)
        enc = "jpegenc quality={q} ! rtpjpegpay name=pay0 pt=26".format(q=quality)
    audio = opts.get("audio")
    if audio is None:
        return "( %s ! %s )" % (src, enc)
    if audio not in _AUDIO:
        raise SpecError("audio must be one of %s in %r" % (", ".join(sorted(_AUDIO)), spec))
    tone = "audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample"
    return "( %s ! %s %s ! %s )" % (src, enc, tone, _AUDIO[audio])


# A camera's sound as IP cameras send it: AAC (MPEG-4 generic) or G.711 A-law / mu-law.
_AUDIO = {
    "aac": "audio/x-raw,rate=16000,channels=1 ! avenc_aac ! rtpmp4gpay name=pay1 pt=97",
    "pcma": "audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay name=pay1",
    "pcmu": "audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay1",
}


def parse_mount(arg):
    """'PATH=SPEC' -> (path, kind, payload)."""
    path, eq, spec = arg.partition("=")
    if not eq or not path.startswith("/") or not spec:
        raise SpecError("bad --mount %r (want /path=spec)" % arg)
    if spec.startswith("file:"):
        fpath = os.path.abspath(os.path.expanduser(spec[len("file:"):]))
        if not os.path.isfile(fpath):
            raise SpecError("file not found for %s: %s" % (path, fpath))
        return path, "file", fpath
    if spec.startswith("udp:"):
        port_s = spec[len("udp:"):]
        if not port_s.isdigit() or not 0 < int(port_s) < 65536:
            raise SpecError("bad udp port in %r" % spec)
        launch = (
            "( udpsrc address={host} port={port} buffer-size=4194304 "
            'caps="application/x-rtp,media=video,clock-rate=90000,'
            'encoding-name=H264,payload=96" '
            "! rtph264depay ! h264parse config-interval=-1 "
            "! rtph264pay name=pay0 pt=96 config-interval=1 )"
        ).format(host=HOST, port=int(port_s))
        return path, "launch", launch
    if spec.split(":", 1)[0].split(",", 1)[0] in ("testsrc", "mjpeg"):
        try:
            return path, "launch", _parse_synth(spec)
        except SpecError:
            raise
        except ValueError as exc:
            raise SpecError("bad value in %r: %s" % (spec, exc))
    raise SpecError("unknown spec %r (testsrc:, mjpeg:, file:, udp:)" % spec)


# --------------------------------------------------------------------------
# File looping: one feeder pipeline per file mount, fanned out to appsrcs
# --------------------------------------------------------------------------

class _Consumer:
    """One RTSP media's appsrc, fed by a FileFeeder."""

    def __init__(self, appsrc, name):
        self.appsrc = appsrc
        self.name = name
        self.started = False

    def push(self, buf, abs_pts, abs_dts, keyframe):
        src = self.appsrc
        if src.get_clock() is None:  # media pipeline not PLAYING yet
            return
        base = src.get_base_time()
        pts = abs_pts - base if abs_pts is not None else None
        dts = abs_dts - base if abs_dts is not None else None
        if not self.started:
            # Start every client pipeline on a keyframe (SPS/PPS precede it,
            # h264parse config-interval=-1 in the feeder).
            if not keyframe or (pts is not None and pts < 0) or (dts is not None and dts < 0):
                return
        out = buf.copy()
        out.pts = pts if pts is not None and pts >= 0 else NONE
        out.dts = dts if dts is not None and dts >= 0 else NONE
        if not self.started:
            out.set_flags(Gst.BufferFlags.DISCONT)
        ret = src.emit("push-buffer", out)
        if ret == Gst.FlowReturn.OK:
            if not self.started:
                debug("%s: first keyframe pushed" % self.name)
            self.started = True
        elif ret == Gst.FlowReturn.FLUSHING:
            self.started = False
        else:
            debug("%s: push-buffer returned %s" % (self.name, ret))


class FileFeeder:
    """Demuxes an MP4 in an endless real-time loop and fans AUs out."""

    def __init__(self, path, mount):
        self.path = path
        self.mount = mount
        self.lock = threading.Lock()
        self.consumers = set()
        self.linked = False
        self.error = None
        self._restart_id = 0
        self.duration = None
        self._build()

    # -- pipeline ----------------------------------------------------------
    def _build(self):
        p = Gst.Pipeline.new("feeder" + self.mount.replace("/", "_"))
        # Same clock as the RTSP media pipelines (see _Consumer.push).
        p.use_clock(Gst.SystemClock.obtain())
        src = Gst.ElementFactory.make("filesrc")
        src.set_property("location", self.path)
        demux = Gst.ElementFactory.make("qtdemux")
        self.parse = Gst.ElementFactory.make("h264parse")
        self.parse.set_property("config-interval", -1)
        capsf = Gst.ElementFactory.make("capsfilter")
        capsf.set_property(
            "caps", Gst.Caps.from_string("video/x-h264,stream-format=byte-stream,alignment=au"))
        sink = Gst.ElementFactory.make("appsink", "sink")
        sink.set_property("sync", True)  # real-time pacing
        sink.set_property("emit-signals", True)
        sink.set_property("max-buffers", 8)
        sink.set_property("enable-last-sample", False)
        sink.connect("new-sample", self._on_sample)
        for e in (src, demux, self.parse, capsf, sink):
            p.add(e)
        src.link(demux)
        self.parse.link(capsf)
        capsf.link(sink)
        # Loop bookkeeping, see _on_event.
        self._sinkpad = sink.get_static_pad("sink")
        self._next_base = None
        capsf.get_static_pad("src").add_probe(
            Gst.PadProbeType.EVENT_DOWNSTREAM | Gst.PadProbeType.EVENT_FLUSH, self._on_event)
        demux.connect("pad-added", self._on_pad_added)
        demux.connect("no-more-pads", self._on_no_more_pads)
        bus = p.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_message)
        self.pipeline = p

    def _on_event(self, pad, info):
        """Make each loop start exactly where the previous one ended.

        After a non-flushing segment seek the new segment's base is the
        running time of the previous segment's *position* (the last frame's
        PTS), not of its stop, so every loop would start one frame early and
        repeat the previous RTP timestamp.  Shift the appsink pad's running
        time so that base(n+1) = base(n) + (stop - start).
        """
        ev = info.get_event()
        if ev.type == Gst.EventType.FLUSH_STOP:
            self._next_base = None
            self._sinkpad.set_offset(0)
        elif ev.type == Gst.EventType.SEGMENT:
            seg = ev.parse_segment()
            if self._next_base is not None:
                self._sinkpad.set_offset(self._next_base - seg.base)
            base = seg.base + self._sinkpad.get_offset()
            if seg.stop != NONE and seg.stop > seg.start and seg.rate == 1.0:
                self._next_base = base + (seg.stop - seg.start)
            else:
                self._next_base = None
        return Gst.PadProbeReturn.OK

    def _on_pad_added(self, demux, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        name = caps.get_structure(0).get_name() if caps and caps.get_size() else ""
        if self.linked or not name.startswith("video/"):
            return
        if name == "video/x-h264":
            ok = pad.link(self.parse.get_static_pad("sink")) == Gst.PadLinkReturn.OK
        else:
            # Not H.264: decode and re-encode (1 s GOP at 30 fps).
            log("%s: %s is %s, re-encoding to H.264" % (self.mount, self.path, name))
            bin_ = Gst.parse_bin_from_description(
                "queue name=q ! decodebin ! videoconvert ! video/x-raw,format=I420 ! "
                "x264enc name=enc tune=zerolatency speed-preset=ultrafast key-int-max=30",
                False)
            # (explicit ghost pads: auto-ghosting would pick videoconvert's
            # sink because decodebin's src pad does not exist yet)
            bin_.add_pad(Gst.GhostPad.new("sink", bin_.get_by_name("q").get_static_pad("sink")))
            bin_.add_pad(Gst.GhostPad.new("src", bin_.get_by_name("enc").get_static_pad("src")))
            self.pipeline.add(bin_)
            bin_.sync_state_with_parent()
            r1 = bin_.link(self.parse)
            r2 = pad.link(bin_.get_static_pad("sink"))
            ok = r1 and r2 == Gst.PadLinkReturn.OK
            debug("%s: re-encode link: %s %s" % (self.mount, r1, r2))
        self.linked = self.linked or ok
        debug("%s: linked %s (%s): %s" % (self.mount, pad.get_name(), name, ok))

    def _on_no_more_pads(self, demux):
        if not self.linked:
            self.error = "no usable video track in %s" % self.path
            gerr = GLib.Error.new_literal(Gst.StreamError.quark(), self.error,
                                          Gst.StreamError.DEMUX)
            demux.post_message(Gst.Message.new_error(demux, gerr, self.error))

    def start(self, timeout_s=10):
        """Preroll synchronously (validates the file), then play. -> bool."""
        bus = self.pipeline.get_bus()
        self.pipeline.set_state(Gst.State.PAUSED)
        ok = False
        for _ in range(int(timeout_s * 10)):
            ret, _, _ = self.pipeline.get_state(100 * Gst.MSECOND)
            msg = bus.pop_filtered(Gst.MessageType.ERROR)
            if msg is not None:
                err, dbg = msg.parse_error()
                self.error = err.message if not dbg or dbg == err.message else (
                    "%s (%s)" % (err.message, dbg.replace("\n", " ")))
                break
            if ret == Gst.StateChangeReturn.FAILURE:
                self.error = self.error or "preroll failed"
                break
            if ret == Gst.StateChangeReturn.SUCCESS:
                ok = True
                break
        else:
            self.error = "preroll timed out"
        if not ok:
            self.pipeline.set_state(Gst.State.NULL)
            return False
        # Flushing *segment* seek: at the end we get SEGMENT_DONE instead of
        # EOS and loop with a non-flushing segment seek, which keeps running
        # time (and so the outgoing timestamps) continuous.
        self._seek(Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT)
        self.pipeline.set_state(Gst.State.PLAYING)
        return True

    def _seek(self, flags):
        # An explicit stop (= duration) makes each loop last exactly the file
        # duration in running time; with stop=-1 the next loop's running time
        # would start at the last frame's PTS, i.e. one frame too early, and
        # the first frame of the new loop would repeat the last RTP timestamp.
        if self.duration is None:
            ok, dur = self.pipeline.query_duration(Gst.Format.TIME)
            self.duration = dur if ok and dur > 0 else -1
        stop_type = Gst.SeekType.SET if self.duration > 0 else Gst.SeekType.NONE
        ok = self.pipeline.seek(1.0, Gst.Format.TIME, flags,
                                Gst.SeekType.SET, 0, stop_type, self.duration)
        if not ok:
            log("%s: seek failed" % self.mount)
        return ok

    def _on_message(self, bus, msg):
        t = msg.type
        if t == Gst.MessageType.SEGMENT_DONE:
            debug("%s: loop" % self.mount)
            self._seek(Gst.SeekFlags.SEGMENT)
        elif t == Gst.MessageType.EOS:  # fallback if segment seeks are ignored
            debug("%s: EOS, flushing loop" % self.mount)
            self._seek(Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT)
        elif t == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            log("%s: feeder error: %s (%s); restarting in 1 s" % (self.mount, err.message, dbg))
            self.pipeline.set_state(Gst.State.NULL)
            if not self._restart_id:
                self._restart_id = GLib.timeout_add(1000, self._restart)

    def _restart(self):
        self._restart_id = 0
        self.pipeline.set_state(Gst.State.PAUSED)
        self.pipeline.get_state(5 * Gst.SECOND)
        self._seek(Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT)
        self.pipeline.set_state(Gst.State.PLAYING)
        return False

    def stop(self):
        if self._restart_id:
            GLib.source_remove(self._restart_id)
            self._restart_id = 0
        self.pipeline.set_state(Gst.State.NULL)

    # -- fan-out -------------------------------------------------------------
    def _on_sample(self, sink):
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.EOS
        with self.lock:
            consumers = list(self.consumers)
        if not consumers:
            return Gst.FlowReturn.OK
        buf = sample.get_buffer()
        seg = sample.get_segment()
        base = sink.get_base_time()

        def to_abs(ts):
            if ts == NONE:
                return None
            rt = seg.to_running_time(Gst.Format.TIME, ts)
            return None if rt == NONE else base + rt

        abs_pts, abs_dts = to_abs(buf.pts), to_abs(buf.dts)
        key = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        for c in consumers:
            c.push(buf, abs_pts, abs_dts, key)
        return Gst.FlowReturn.OK

    def attach(self, factory, media):
        appsrc = media.get_element().get_by_name("src")
        consumer = _Consumer(appsrc, self.mount)
        with self.lock:
            self.consumers.add(consumer)
        debug("%s: media configured (%d consumers)" % (self.mount, len(self.consumers)))

        def _detach(_media):
            with self.lock:
                self.consumers.discard(consumer)
            debug("%s: media unprepared" % self.mount)

        media.connect("unprepared", _detach)


_FILE_LAUNCH = (
    "( appsrc name=src is-live=true format=time do-timestamp=false block=false "
    "max-bytes=8388608 leaky-type=downstream min-latency=0 "
    'caps="video/x-h264,stream-format=byte-stream,alignment=au" '
    "! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def build_server(args, mounts):
    server = GstRtspServer.RTSPServer()
    server.set_address(HOST)
    server.set_service(str(args.port))
    server.set_backlog(args.backlog)
    server.get_thread_pool().set_max_threads(args.threads)
    server.connect("client-connected",
                   lambda _srv, client: client.connect("pre-play-request", _on_pre_play))
    points = server.get_mount_points()
    permissions = _require_auth(server, args.auth) if args.auth else None
    clock = Gst.SystemClock.obtain()
    # Without a pool with *unicast* (ttl 0) addresses, the per-client UDP
    # RTP/RTCP sockets are bound to 0.0.0.0 and [::]; this pins them to
    # 127.0.0.1 (IPv4 only).
    pool = GstRtspServer.RTSPAddressPool()
    lo, hi = args.udp_ports
    if not pool.add_range(HOST, HOST, lo, hi, 0):
        raise SpecError("bad --udp-ports range %d-%d" % (lo, hi))
    feeders = []
    for path, kind, payload in mounts:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_shared(True)
        factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP | GstRtsp.RTSPLowerTrans.TCP)
        factory.set_clock(clock)
        factory.set_address_pool(pool)
        # Every mount is live, but videotestsrc answers the SEEKING query with
        # "seekable", so a PLAY carrying "Range: npt=0.000-" (ffmpeg/PyAV,
        # rtspsrc) made gst-rtsp-server do a *flushing seek* of the shared
        # pipeline: each viewer already connected saw a lost packet, the RTP
        # timestamp jump backwards and a ~90 ms stall whenever someone
        # joined.  With CLOCK_AND_OFFSET the media counts as not seekable
        # (the SDP just gains RFC 7273 a=ts-refclk/a=mediaclk lines).
        factory.set_publish_clock_mode(GstRtspServer.RTSPPublishClockMode.CLOCK_AND_OFFSET)
        if permissions is not None:
            factory.set_permissions(permissions)
        if kind == "file":
            feeder = FileFeeder(payload, path)
            if not feeder.start():
                for f in feeders:
                    f.stop()
                raise SpecError("%s: cannot play %s: %s" % (path, payload, feeder.error))
            feeders.append(feeder)
            factory.set_launch(_FILE_LAUNCH)
            factory.connect("media-configure", feeder.attach)
            desc = "file %s (looped)" % payload
        else:
            # Validate the launch line now rather than on first DESCRIBE.
            try:
                Gst.parse_launch(payload.strip("() ")).set_state(Gst.State.NULL)
            except GLib.Error as exc:
                raise SpecError("%s: bad pipeline: %s" % (path, exc.message))
            factory.set_launch(payload)
            desc = payload
        points.add_factory(path, factory)
        debug("mount %s -> %s" % (path, desc))
    return server, feeders


def _require_auth(server, credentials):
    """Basic auth on @server for each USER:PASSWORD in @credentials; returns the
    permissions every factory must carry (only the role those credentials give
    may open a mount)."""
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "viewer")
    for pair in credentials:
        user, _, password = pair.partition(":")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_permission_for_role("viewer", "media.factory.access", True)
    permissions.add_permission_for_role("viewer", "media.factory.construct", True)
    return permissions


def _wait_for_segments(media, timeout_s=5.0):
    """True once every stream of @media has pushed a SEGMENT into rtpbin.

    Works around a gst-rtsp-server 1.22 race: a live media can be marked
    prepared before its first RTP buffer (hence its first SEGMENT event)
    reached rtpbin; a PLAY handled in that window makes
    gst_rtsp_media_get_rates() hit g_assert(FALSE) and abort the whole
    server ("no segment event on send_rtp_sink pad").  Seen with ~30
    clients connecting at once to a mount whose media was just created
    (1 run in ~15, together with the flushing seek that build_server now
    prevents); with this guard 70 such runs passed, PLAY being held
    1-10 ms in about a quarter of them.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    waited = False
    while True:
        missing = False
        for i in range(media.n_streams()):
            pad = media.get_stream(i).get_srcpad()
            peer = pad.get_peer() if pad is not None else None
            if peer is not None and peer.get_sticky_event(Gst.EventType.SEGMENT, 0) is None:
                missing = True
                break
        if not missing:
            if waited:
                debug("PLAY held %.0f ms until the media streamed"
                      % ((time.monotonic() - start) * 1000))
            return True
        if time.monotonic() > deadline:
            return False
        waited = True
        time.sleep(0.002)


def _on_pre_play(client, ctx):
    media = ctx.media
    if media is not None and not _wait_for_segments(media):
        log("PLAY refused: media has not started streaming after 5 s")
        return GstRtsp.RTSPStatusCode.SERVICE_UNAVAILABLE
    return GstRtsp.RTSPStatusCode.OK


def _port_range(text):
    m = re.match(r"^(\d+)-(\d+)$", text)
    if not m or not 0 < int(m.group(1)) < int(m.group(2)) < 65536:
        raise argparse.ArgumentTypeError("want LO-HI, e.g. 20000-29999")
    return int(m.group(1)), int(m.group(2))


def main(argv=None):
    global VERBOSE
    ap = argparse.ArgumentParser(
        description="Loopback (127.0.0.1) RTSP test server; see module docstring.")
    ap.add_argument("--port", type=int, required=True,
                    help="TCP port for RTSP (0 = pick a free one; see READY line)")
    ap.add_argument("--mount", action="append", default=[], metavar="PATH=SPEC",
                    help="e.g. /cam1=testsrc:1280x720@30:4000, /mj=mjpeg:640x360@15, "
                         "/file1=file:/x.mp4, /udp1=udp:5004 (repeatable)")
    ap.add_argument("--threads", type=int, default=4,
                    help="max RTSP client-handling threads (default 4)")
    ap.add_argument("--backlog", type=int, default=128,
                    help="listen() backlog (gst default 5 is too small for load tests)")
    ap.add_argument("--udp-ports", type=_port_range, default=(20000, 29999),
                    metavar="LO-HI",
                    help="port range for server-side UDP RTP/RTCP sockets, bound to "
                         "127.0.0.1 (default 20000-29999)")
    ap.add_argument("--auth", action="append", default=[], metavar="USER:PASSWORD",
                    help="require RTSP Basic auth with these credentials on every mount "
                         "(repeatable: any of them)")
    ap.add_argument("--die-with-parent", action="store_true",
                    help="get SIGTERM when the parent exits (Linux prctl)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    args = ap.parse_args(argv)
    VERBOSE = args.verbose

    if not 0 <= args.port < 65536:
        log("bad port %d" % args.port)
        return 2
    if args.die_with_parent:
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
            if os.getppid() == 1:
                return 0
        except OSError as exc:
            log("prctl failed: %s" % exc)

    Gst.init(None)
    try:
        mounts = [parse_mount(m) for m in (args.mount or [DEFAULT_MOUNT])]
        paths = [m[0] for m in mounts]
        if len(set(paths)) != len(paths):
            raise SpecError("duplicate mount path")
        server, feeders = build_server(args, mounts)
    except SpecError as exc:
        log(str(exc))
        return 2

    loop = GLib.MainLoop()

    def _quit(signame):
        debug("%s, shutting down" % signame)
        loop.quit()
        return GLib.SOURCE_REMOVE

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, _quit, "SIGTERM")
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, _quit, "SIGINT")

    source_id = server.attach(None)
    if not source_id:
        log("cannot listen on %s:%d (port in use?)" % (HOST, args.port))
        for f in feeders:
            f.stop()
        return 2
    port = server.get_bound_port()
    for path, _kind, _payload in mounts:
        debug("serving rtsp://%s:%d%s" % (HOST, port, path))
    sys.stdout.write("READY %d\n" % port)
    sys.stdout.flush()

    try:
        loop.run()
    finally:
        # Never hang on shutdown: hard exit if cleanup stalls.
        killer = threading.Timer(3.0, os._exit, (0,))
        killer.daemon = True
        killer.start()
        GLib.source_remove(source_id)  # stop accepting
        server.client_filter(lambda _srv, _client: GstRtspServer.RTSPFilterResult.REMOVE)
        for f in feeders:
            f.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
