// A camera's recordings on a timeline, as NVR users know it from Frigate: the segments as
// bars (a gap is a gap), marks and tickets on them, a click plays from that moment and on
// across segment boundaries, the wall clock of the frame on screen, and a span exported
// as one MP4. Without a camera in the route, the cameras to pick from.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { api, getJson } from "../common.js";
import { clock, html, label, now, STATE_LABELS, Topics, useTick, useTopics } from "../ui.js";

const RANGES = [["5 min", 300], ["15 min", 900], ["1 h", 3600], ["6 h", 21600], ["24 h", 86400]];
const MIN_SPAN_S = 60;
const MAX_SPAN_S = 7 * 86400 - 1;  // the API's longest timeline
const REFRESH_MS = 5000;  // the view's data again, while it shows the present
const AHEAD_S = 600;  // how far past the moment asked the player looks for footage
const RUN_UP_S = 10;  // a ticket is played from a little before the camera confirmed it
const JOIN_S = 2;  // segments closer than this are drawn as one bar (they abut, to a GOP)
const CAUGHT_UP_MS = 2000;  // at the live edge: how long to wait for more to be written
const RETRIES = 5;  // a segment being written that does not play yet: asked for again this often
const TICK_STEPS = [10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const ENDED = new Set(["closed", "rejected", "cancelled"]);

const pad = (n, w = 2) => String(n).padStart(w, "0");

function day(unix) {
  const d = new Date(unix * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

// The wall clock to a tenth of a second, with the date: what a frame shows.
function when(unix) {
  return `${day(unix)} ${clock(unix)}.${Math.floor((unix * 10) % 10)}`;
}

// <input type="datetime-local" step="1"> speaks local time without a zone.
function toInput(unix) {
  const d = new Date(unix * 1000);
  return `${day(unix)}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fromInput(text) {
  const t = new Date(text).getTime();
  return Number.isFinite(t) ? t / 1000 : null;
}

// The last `span` seconds, the present a little in from the right edge.
function following(span) {
  const end = now() + span * 0.03;
  return { start: end - span, end, follow: true };
}

const endOf = (segment) => segment.end ?? now();

// A field the page fills in and the user may edit: set from `value` unless the user is in
// it (a controlled date field would be reset under his fingers by every re-render).
function Field({ value, onValue, ...props }) {
  const ref = useRef(null);
  useEffect(() => { if (document.activeElement !== ref.current) ref.current.value = value; }, [value]);
  return html`<input ...${props} ref=${ref} onChange=${(e) => onValue(e.currentTarget.value)} />`;
}

// The player: one <video> playing one segment file at a time, from any moment, on to the
// next segment when one ends (a gap is skipped). Topics: "frame" (the time on screen),
// "state". `at`: the wall time of the frame on screen (Unix s), null before any.
class Playback extends Topics {
  constructor(cameraId) {
    super();
    Object.assign(this, { cameraId, segment: null, segments: [], at: null, url: null, run: 0, retries: 0,
      reloadedAt: -Infinity });
    Object.assign(this, { state: "idle", message: "Click the timeline to play from that moment." });
    const v = this.video = document.createElement("video");
    v.id = "playback";
    v.muted = true;
    v.playsInline = true;
    v.preload = "auto";
    v.addEventListener("ended", () => this.next());
    v.addEventListener("playing", () => { this.retries = 0; this.set("playing", this.note); });
    v.addEventListener("waiting", () => this.set("loading", "Loading…"));
    v.addEventListener("pause", () => { if (!v.ended && this.state === "playing") this.set("paused", ""); });
    v.addEventListener("seeked", () => this.show(v.currentTime));
    v.addEventListener("error", () => {
      const seg = this.segment;
      if (!this.url || !seg) return;
      // A segment opened a moment ago holds no picture yet: its header comes with its first fragment.
      if (seg.end === null && this.retries++ < RETRIES) this.wait(seg, this.at - seg.start);
      else this.set("error", `This recording could not be played (${v.error?.message || "unreadable file"}).`);
    });
    // The frame presented, not the clock the element interpolates: what the picture shows.
    const frame = (_t, meta) => { this.show(meta.mediaTime); v.requestVideoFrameCallback(frame); };
    v.requestVideoFrameCallback(frame);
  }

  show(mediaTime) {
    if (!this.segment) return;
    this.at = this.segment.start + mediaTime;
    this.emit("frame");
  }

  set(state, message) {
    Object.assign(this, { state, message });
    this.emit("state");
  }

  // The segments from `t` to AHEAD_S after it (with the one that covers `t`), oldest first.
  async around(t) {
    const q = new URLSearchParams({ camera: this.cameraId, from: t, to: t + AHEAD_S });
    this.segments = (await getJson(`/api/recordings/timeline?${q}`)).segments;
    return this.segments;
  }

  // Play from wall time `t`: its segment from the right offset, or the next footage there is.
  async play(t) {
    const run = ++this.run;
    this.set("loading", "Loading…");
    let segments;
    try { segments = await this.around(t); } catch (err) { if (run === this.run) this.set("error", err.message); return; }
    if (run !== this.run) return;
    const seg = segments.find((s) => s.start <= t && t < endOf(s)) || segments.find((s) => s.start > t);
    if (!seg) {
      this.set("error", `No recording at ${when(t)}, nor in the ${AHEAD_S / 60} minutes after.`);
      return;
    }
    this.load(seg, Math.max(0, t - seg.start), seg.start > t ? `No recording at ${clock(t)}: playing from ${clock(seg.start)}.` : "");
  }

  // `fresh`: ask the server again (a segment being written has grown since it was read).
  load(seg, offset, note = "", fresh = false) {
    const v = this.video, run = this.run;
    Object.assign(this, { segment: seg, note, at: seg.start + offset });
    const start = () => {
      if (run !== this.run) return;
      v.currentTime = offset;
      v.play().catch((err) => { if (err.name !== "AbortError" && run === this.run) this.set("error", err.message); });
    };
    if (this.url === seg.url && !fresh && v.readyState >= HTMLMediaElement.HAVE_METADATA) start();
    else {
      this.url = seg.url;
      v.addEventListener("loadedmetadata", start, { once: true });
      v.src = fresh ? `${seg.url}?at=${Date.now()}` : seg.url;
    }
    this.emit("frame", "state");
  }

  // A segment ended: on to the next one, from the time reached (a gap skipped). One that
  // was being written when it was read has grown since: the rest of it first, or, at the
  // live edge, once more of it is written.
  async next() {
    const seg = this.segment;
    if (!seg) return;
    const reached = seg.start + this.video.currentTime;
    const run = ++this.run;
    if (seg.end === null || !this.segments.some((s) => s.start > seg.start)) {
      try { await this.around(reached); } catch (err) { if (run === this.run) this.set("error", err.message); return; }
      if (run !== this.run) return;
    }
    const same = this.segments.find((s) => s.url === seg.url);
    const next = this.segments.find((s) => s.start > seg.start);
    const moved = reached > this.reloadedAt + 0.1;  // a reload that brought nothing more is not tried again
    if (seg.end === null && same && endOf(same) - reached > 1 && moved) {
      this.reloadedAt = reached;
      this.load(same, reached - same.start, "", true);
    } else if (next) this.load(next, Math.max(0, reached - next.start));
    else if (same?.end === null) this.wait(same, reached - same.start);
    else this.set("ended", "End of the recordings.");
  }

  // At the live edge: the segment being written, from `offset` again once more of it is there.
  wait(seg, offset) {
    const run = ++this.run;
    this.set("live", "Caught up with the recording: going on as it is written.");
    setTimeout(() => { if (run === this.run) this.load(seg, offset, "", true); }, CAUGHT_UP_MS);
  }

  toggle() {
    if (this.video.paused) this.video.play().catch(() => {});
    else this.video.pause();
  }

  close() {
    this.run++;
    this.url = null;
    this.video.pause();
    this.video.removeAttribute("src");
    this.video.load();
  }
}

// Adjacent segments as one run (start, end, bytes): a bar per stretch of footage.
function runs(segments) {
  const out = [];
  for (const s of segments) {
    const last = out[out.length - 1];
    if (last && s.start - last.end <= JOIN_S) { last.end = Math.max(last.end, endOf(s)); last.bytes += s.bytes; }
    else out.push({ start: s.start, end: endOf(s), bytes: s.bytes });
  }
  return out;
}

// Tick times in the view, on the local clock's round minutes and hours.
function ticks(view, width) {
  const span = view.end - view.start;
  const step = TICK_STEPS.find((s) => (width / span) * s >= 90) || TICK_STEPS[TICK_STEPS.length - 1];
  const d = new Date(view.start * 1000);
  const midnight = new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime() / 1000;
  const out = [];
  for (let t = midnight + Math.ceil((view.start - midnight) / step) * step; t <= view.end; t += step) out.push(t);
  return { out, step };
}

function tickLabel(t, step) {
  const d = new Date(t * 1000);
  if (d.getHours() === 0 && d.getMinutes() === 0 && d.getSeconds() === 0) return day(t);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return step < 60 ? `${hm}:${pad(d.getSeconds())}` : hm;
}

function Playhead({ playback, view }) {
  useTopics(playback, "frame");
  const at = playback.at;
  if (at === null || at < view.start || at > view.end) return null;
  return html`<div class="playhead" style=${{ left: `${((at - view.start) / (view.end - view.start)) * 100}%` }}></div>`;
}

// The timeline: drag to move along it, the wheel to zoom around the pointer, a click to
// play from the moment under it. Its element says the time it spans (data-from, data-to).
function Track({ view, data, span, playback, onSeek, onView }) {
  const box = useRef(null);
  const drag = useRef(null);
  const seekTo = useRef(onSeek);
  seekTo.current = onSeek;  // the drawn marks are kept between renders; the handler is not
  const [hover, setHover] = useState(null);
  const [width, setWidth] = useState(1000);
  useEffect(() => {
    const watch = new ResizeObserver(() => box.current && setWidth(box.current.clientWidth));
    watch.observe(box.current);
    return () => watch.disconnect();
  }, []);
  const length = view.end - view.start;
  const x = (t) => `${((t - view.start) / length) * 100}%`;
  const w = (a, b) => `${((Math.min(b, view.end) - Math.max(a, view.start)) / length) * 100}%`;
  const timeAt = (clientX) => {
    const r = box.current.getBoundingClientRect();
    return view.start + ((clientX - r.left) / r.width) * length;
  };
  const drawn = useMemo(() => {
    const { out, step } = ticks(view, width);
    const inView = (t) => t >= view.start && t <= view.end;
    return html`
      ${out.map((t) => html`<span key=${`t${t}`} class="tick" style=${{ left: x(t) }}>${tickLabel(t, step)}</span>`)}
      ${runs(data?.segments || []).filter((r) => r.end > view.start && r.start < view.end).map((r) => html`
        <span key=${`s${r.start}`} class="run" data-start=${r.start} data-end=${r.end}
              style=${{ left: x(Math.max(r.start, view.start)), width: w(r.start, r.end) }}
              title=${`Recorded ${clock(r.start)} – ${clock(r.end)}`}></span>`)}
      ${(data?.marks || []).filter((m) => inView(m.at)).map((m, i) => html`
        <span key=${`m${i}`} class="mark" data-at=${m.at} style=${{ left: x(m.at) }} title=${`Mark at ${clock(m.at)}`}></span>`)}
      ${(data?.tickets || []).filter((t) => inView(t.at)).map((t) => html`
        <button key=${t.id} type="button" class=${`ticket ${ENDED.has(t.state) ? "ended" : "open"}`} data-ticket=${t.id}
                style=${{ left: x(t.at) }} onPointerDown=${(e) => e.stopPropagation()}
                onClick=${() => seekTo.current(t.at - RUN_UP_S)}
                title=${`${t.id} · ${label(t.kind)}${t.zone ? ` in ${t.zone}` : ""} · ${STATE_LABELS[t.state] || t.state} · ${clock(t.at)}`}>
        </button>`)}`;
  }, [view.start, view.end, width, data]);
  const pan = (seconds, from = view) => onView({ start: from.start + seconds, end: from.end + seconds, follow: false });
  const zoom = (t, factor) => {
    const next = Math.min(MAX_SPAN_S, Math.max(MIN_SPAN_S, length * factor));
    const start = t - ((t - view.start) * next) / length;
    onView({ start, end: start + next, follow: false });
  };
  return html`
    <div class="track" id="timeline" ref=${box} data-from=${view.start} data-to=${view.end}
         onPointerDown=${(e) => {
           if (e.button !== 0) return;
           box.current.setPointerCapture(e.pointerId);
           drag.current = { x: e.clientX, view, moved: false };
         }}
         onPointerMove=${(e) => {
           setHover({ t: timeAt(e.clientX), left: e.clientX - box.current.getBoundingClientRect().left });
           const d = drag.current;
           if (!d || (!d.moved && Math.abs(e.clientX - d.x) < 4)) return;
           d.moved = true;
           pan((-(e.clientX - d.x) / box.current.clientWidth) * (d.view.end - d.view.start), d.view);
         }}
         onPointerUp=${(e) => {
           const d = drag.current;
           drag.current = null;
           if (d && !d.moved) onSeek(timeAt(e.clientX));
         }}
         onPointerLeave=${() => setHover(null)}
         onWheel=${(e) => {
           e.preventDefault();
           if (Math.abs(e.deltaX) > Math.abs(e.deltaY)) {  // a touchpad's sideways swipe moves along
             pan((e.deltaX / box.current.clientWidth) * length);
           } else zoom(timeAt(e.clientX), e.deltaY > 0 ? 1.25 : 0.8);
         }}>
      ${span && span.to > view.start && span.from < view.end ? html`<span class="span" style=${{ left: x(Math.max(span.from, view.start)), width: w(span.from, span.to) }}></span>` : null}
      ${drawn}
      <${Playhead} playback=${playback} view=${view} />
      ${hover ? html`<span class="hover" style=${{ left: `${hover.left}px` }}>${clock(hover.t)}</span>` : null}
    </div>`;
}

function Player({ playback, sound, setSound }) {
  useTopics(playback, "frame", "state");
  const box = useRef(null);
  useEffect(() => { box.current.append(playback.video); }, []);
  const at = playback.at;
  return html`
    <div class="player">
      <div class="screen" ref=${box}></div>
      <div class="controls">
        <button type="button" id="play-toggle" disabled=${!playback.segment}
                onClick=${() => playback.toggle()}>${playback.state === "playing" ? "Pause" : "Play"}</button>
        <label><input type="checkbox" id="sound" checked=${sound}
                      onChange=${(e) => setSound(e.currentTarget.checked)} /> Sound</label>
        <output id="playing" data-at=${at ?? ""} data-segment=${playback.segment?.url || ""}>${at === null ? "—" : when(at)}</output>
        <span id="play-state" data-state=${playback.state}
              class=${playback.state === "error" ? "field-error" : "busy"} role=${playback.state === "error" ? "alert" : null}>${playback.message}</span>
      </div>
    </div>`;
}

// fetch a clip with its progress: `onProgress(bytes, total)` (total 0 when unknown).
async function fetchClip(cameraId, span, onProgress, signal) {
  const q = new URLSearchParams({ camera: cameraId, from: span.from, to: span.to });
  const r = await api(`/api/recordings/clip?${q}`, { signal });
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    throw new Error(body.message || `${r.status} ${r.statusText}`);
  }
  const total = Number(r.headers.get("Content-Length")) || 0;
  const reader = r.body.getReader();
  const parts = [];
  let got = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    got += value.length;
    onProgress(got, total);
  }
  const name = /filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "")?.[1] || `${cameraId}.mp4`;
  return { blob: new Blob(parts, { type: "video/mp4" }), name, seconds: Number(r.headers.get("X-Clip-Duration")) };
}

function saveAs(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

// Cutting a clip is long work on the server before the first byte: its time so far.
function Progress({ job }) {
  useTick(1000);
  if (job.phase === "cutting") return html`Cutting the clip on the server… ${Math.round(now() - job.started)} s`;
  return job.total
    ? html`Downloading ${Math.floor((job.got / job.total) * 100)}% (${mb(job.got)} of ${mb(job.total)})`
    : html`Downloading ${mb(job.got)}`;
}

// The span to export is in whole seconds, as its fields show it.
function Export({ cameraId, span, setSpan, playback }) {
  useTopics(playback, "state");
  const [job, setJob] = useState(null);  // {phase: cutting | downloading | done | error, ...}
  const abort = useRef(null);
  useEffect(() => () => abort.current?.abort(), []);
  const running = job && (job.phase === "cutting" || job.phase === "downloading");
  const edit = (field) => (text) => {
    const t = fromInput(text);
    if (t !== null) setSpan({ ...(span || { from: t, to: t }), [field]: t });
  };
  const here = () => Math.round(playback.at);
  const start = async () => {
    abort.current = new AbortController();
    const started = now();
    setJob({ phase: "cutting", started });
    try {
      const clip = await fetchClip(cameraId, span, (got, total) => setJob({ phase: "downloading", started, got, total }),
        abort.current.signal);
      saveAs(clip.blob, clip.name);
      setJob({ phase: "done", message: `Saved ${clip.name}: ${Math.round(clip.seconds)} s, ${mb(clip.blob.size)}.` });
    } catch (err) {
      setJob({ phase: "error", message: err.name === "AbortError" ? "Export cancelled." : err.message });
    }
  };
  return html`
    <fieldset class="export" id="export-panel">
      <legend>Export a clip</legend>
      <label>From <${Field} type="datetime-local" step="1" id="export-from" value=${span ? toInput(span.from) : ""}
                            onValue=${edit("from")} /></label>
      <button type="button" id="export-from-here" disabled=${!playback.segment}
              onClick=${() => setSpan({ from: here(), to: Math.max(here() + 1, span?.to ?? here() + 60) })}>Start at playhead</button>
      <label>To <${Field} type="datetime-local" step="1" id="export-to" value=${span ? toInput(span.to) : ""}
                          onValue=${edit("to")} /></label>
      <button type="button" id="export-to-here" disabled=${!playback.segment}
              onClick=${() => setSpan({ from: Math.min(here() - 1, span?.from ?? here() - 60), to: here() })}>End at playhead</button>
      <span class="dim">${span ? `${Math.round(span.to - span.from)} s` : "Play a moment first, or give the times."}</span>
      ${running
        ? html`<button type="button" id="export-cancel" onClick=${() => abort.current.abort()}>Cancel</button>`
        : html`<button type="button" class="primary" id="export" disabled=${!span} onClick=${start}>Export</button>`}
      <p id="export-state" data-state=${job?.phase || "idle"} class=${job?.phase === "error" ? "field-error" : "busy"}
         role=${job?.phase === "error" ? "alert" : null}>
        ${running ? html`<${Progress} job=${job} />` : job?.message || ""}</p>
    </fieldset>`;
}

function Toolbar({ view, setView }) {
  const length = view.end - view.start;
  const around = (span) => {
    if (view.follow) return following(span);
    const mid = (view.start + view.end) / 2;
    return { start: mid - span / 2, end: mid + span / 2, follow: false };
  };
  const shift = (k) => setView({ start: view.start + k * length, end: view.end + k * length, follow: false });
  return html`
    <div class="toolbar">
      ${RANGES.map(([name, s]) => html`
        <button key=${s} type="button" data-range=${s} class=${Math.abs(length - s) < 1 ? "on" : ""}
                onClick=${() => setView(around(s))}>${name}</button>`)}
      <button type="button" id="earlier" title="Earlier" onClick=${() => shift(-0.5)}>◀</button>
      <button type="button" id="later" title="Later" onClick=${() => shift(0.5)}>▶</button>
      <button type="button" id="to-now" class=${view.follow ? "on" : ""} onClick=${() => setView(following(length))}>Now</button>
      <label>Day <${Field} type="date" id="day" value=${day((view.start + view.end) / 2)} onValue=${(text) => {
        const [y, m, d] = text.split("-").map(Number);
        if (!y) return;
        const start = new Date(y, m - 1, d).getTime() / 1000;
        setView({ start, end: start + 86400, follow: false });
      }} /></label>
      <span class="dim">drag to move, wheel to zoom, click to play</span>
    </div>`;
}

function CameraRecordings({ cameraId }) {
  const playback = useMemo(() => new Playback(cameraId), [cameraId]);
  const [view, setView] = useState(() => following(3600));
  const [data, setData] = useState(null);
  const [error, setError] = useState("");
  const [cameras, setCameras] = useState(null);
  const [span, setSpan] = useState(null);
  const [sound, setSound] = useState(false);
  const [tick, setTick] = useState(0);
  useEffect(() => () => playback.close(), []);
  useEffect(() => { playback.video.muted = !sound; }, [sound]);
  useEffect(() => {
    getJson("/api/cameras").then((d) => setCameras(d.cameras), () => setCameras([]));
    const timer = setInterval(() => setTick((n) => n + 1), REFRESH_MS);
    return () => clearInterval(timer);
  }, []);
  useEffect(() => { if (view.follow && tick) setView(following(view.end - view.start)); }, [tick]);
  // The view's data, once a drag or a zoom settles, and again while it shows the present.
  const present = view.end > now() - REFRESH_MS / 1000;
  useEffect(() => {
    let gone = false;
    const timer = setTimeout(async () => {
      const q = new URLSearchParams({ camera: cameraId, from: view.start, to: view.end });
      try {
        const d = await getJson(`/api/recordings/timeline?${q}`);
        if (!gone) { setData(d); setError(""); }
      } catch (err) { if (!gone) setError(err.message); }
    }, data ? 150 : 0);
    return () => { gone = true; clearTimeout(timer); };
  }, [view.start, view.end, present ? tick : -1]);
  const seek = (t) => {
    if (view.follow) setView({ ...view, follow: false });  // watching the past: the view stays put
    if (!span) setSpan({ from: Math.round(t) - 30, to: Math.round(t) + 30 });
    playback.play(t);
  };
  const camera = cameras?.find((c) => c.id === cameraId);
  const recorded = data?.segments?.length;
  return html`
    <section class="recordings" data-camera=${cameraId}>
      <h2>Recordings of
        <select id="rec-camera" value=${cameraId} onChange=${(e) => { location.hash = `#/recordings/${encodeURIComponent(e.currentTarget.value)}`; }}>
          ${(cameras && !camera ? [{ id: cameraId }, ...cameras] : cameras || [{ id: cameraId }]).map((c) => html`
            <option key=${c.id} value=${c.id}>${c.name || c.id}</option>`)}
        </select>
        <a href=${`#/cameras/${encodeURIComponent(cameraId)}`}>camera page</a>
      </h2>
      ${camera && camera.record?.mode === "off" ? html`<p class="busy" id="not-recorded">This camera is not recorded now (record mode off); older footage is shown if there is any.</p>` : null}
      <${Player} playback=${playback} sound=${sound} setSound=${setSound} />
      <${Toolbar} view=${view} setView=${setView} />
      <${Track} view=${view} data=${data} span=${span} playback=${playback} onSeek=${seek} onView=${setView} />
      <p class="legend">
        <span class="key run"></span> recorded
        <span class="key mark"></span> mark
        <span class="key ticket open"></span> open ticket
        <span class="key ticket ended"></span> ended ticket
        ${data && !recorded ? html` · <b id="no-footage">No recordings in this view.</b>` : null}
        ${data?.truncated ? html` · only the first marks are shown: zoom in for all` : null}
      </p>
      ${error ? html`<p class="field-error" role="alert" id="timeline-error">${error}</p>` : null}
      <${Export} cameraId=${cameraId} span=${span} setSpan=${setSpan} playback=${playback} />
    </section>`;
}

function CameraPicker() {
  const [cameras, setCameras] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => { getJson("/api/cameras").then((d) => setCameras(d.cameras), (err) => setError(err.message)); }, []);
  return html`
    <section class="recordings">
      <h2>Recordings</h2>
      ${error ? html`<p class="field-error" role="alert">${error}</p>` : null}
      ${cameras === null && !error ? html`<p class="busy">Loading the cameras…</p>` : null}
      ${cameras && !cameras.length ? html`<p>No cameras yet.</p>` : null}
      <ul class="rec-cameras" id="rec-cameras">
        ${(cameras || []).map((c) => html`
          <li key=${c.id}><a href=${`#/recordings/${encodeURIComponent(c.id)}`} data-camera=${c.id}>${c.name || c.id}</a>
            <span class="dim"> ${c.record?.mode === "off" ? "not recorded" : `recorded (${c.record?.mode})`}</span></li>`)}
      </ul>
    </section>`;
}

export function Recordings({ cameraId }) {
  return cameraId ? html`<${CameraRecordings} cameraId=${cameraId} key=${cameraId} />` : html`<${CameraPicker} />`;
}
