// The PTZ pad of one camera, on its page and on its wall tile: pan, tilt and zoom while a
// button (or an arrow key, + or -, when the pad has the focus) is held — ONVIF
// ContinuousMove at the chosen speed, Stop on release —, where the camera points, and
// its presets (go, save the current position as one, delete once confirmed on the pad).
import { useEffect, useRef, useState } from "preact/hooks";
import { api, getJson, postJson } from "./common.js";
import { html } from "./ui.js";

const POLL_MS = 1000;  // the position is the camera's answer to a question: asked this often
// A move is sent again this often while held: the server asks the camera to stop by itself
// 3 s after the last one (media.onvif MOVE_TIMEOUT), so a page that is closed or cut off
// mid-hold cannot leave it turning.
const REPEAT_MS = 1000;
// Direction of each control: [pan, tilt, zoom], scaled by the speed. Tilt up is positive.
const MOVES = {
  left: [-1, 0, 0], right: [1, 0, 0], up: [0, 1, 0], down: [0, -1, 0],
  "up-left": [-1, 1, 0], "up-right": [1, 1, 0], "down-left": [-1, -1, 0], "down-right": [1, -1, 0],
  "zoom-in": [0, 0, 1], "zoom-out": [0, 0, -1],
};
const KEYS = { ArrowLeft: "left", ArrowRight: "right", ArrowUp: "up", ArrowDown: "down",
  "+": "zoom-in", "=": "zoom-in", "-": "zoom-out" };
const ARROWS = [["up-left", "↖"], ["up", "▲"], ["up-right", "↗"], ["left", "◀"], null,
  ["right", "▶"], ["down-left", "↙"], ["down", "▼"], ["down-right", "↘"]];

// Commands to one camera, one at a time and in order: a stop sent while its move is still
// on the way would otherwise overtake it and leave the camera turning.
class Driver {
  constructor(cameraId, onError) {
    this.url = `/api/cameras/${encodeURIComponent(cameraId)}/ptz`;
    this.onError = onError;
    this.queue = Promise.resolve();
    this.pending = 0;  // commands sent and not answered yet
    this.moving = false;
  }
  send(command) {
    this.pending += 1;
    this.queue = this.queue.then(() => postJson(this.url, command)).then(
      () => this.onError(""), (err) => this.onError(err.message)).finally(() => { this.pending -= 1; });
    return this.queue;
  }
  move([pan, tilt, zoom], speed) {
    this.moving = true;
    const command = { action: "move", pan: pan * speed, tilt: tilt * speed, zoom: zoom * speed };
    clearInterval(this.repeat);
    // Not behind a slow camera's queue: a repeat waits until the last command is answered.
    this.repeat = setInterval(() => { if (this.moving && !this.pending) this.send(command); }, REPEAT_MS);
    return this.send(command);
  }
  // The page goes away with a button held: a stop that outlives the page (keepalive).
  leave() {
    clearInterval(this.repeat);
    if (!this.moving) return;
    this.moving = false;
    fetch(this.url, { method: "POST", keepalive: true, credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ action: "stop" }) });
  }
  // `always`: even when this pad started no move (the camera may be on its way to a preset).
  stop(always = false) {
    clearInterval(this.repeat);
    if (!this.moving && !always) return this.queue;
    this.moving = false;
    return this.send({ action: "stop" });
  }
}

const fixed = (v) => (typeof v === "number" ? v.toFixed(2) : "—");

// `cameraId`: an onvif:// camera. `onMoved()` hears every move that ended (a stop, a
// preset reached), e.g. to take a fresh snapshot. A camera without PTZ gets one line.
export function PtzPad({ cameraId, onMoved = () => {} }) {
  const [ptz, setPtz] = useState(null);  // GET .../ptz: {position, moving, presets}
  const [absent, setAbsent] = useState("");  // why there is no PTZ (409 no_ptz)
  const [error, setError] = useState("");
  const [speed, setSpeed] = useState(0.5);
  const [held, setHeld] = useState(null);
  const [name, setName] = useState("");
  const [removing, setRemoving] = useState(null);  // the token of the preset whose deletion is asked
  const driver = useRef(null);
  if (!driver.current) driver.current = new Driver(cameraId, setError);
  const url = driver.current.url;

  const load = async () => {
    const r = await api(url);
    const data = await r.json().catch(() => ({}));
    if (r.status === 409) setAbsent(data.message || "this camera has no PTZ");
    else if (!r.ok) setError(data.message || `${r.status} ${r.statusText}`);
    else { setPtz(data); setAbsent(""); }
  };
  useEffect(() => {
    // Polls one after another: a slow camera must not pile questions up in front of a stop.
    let timer = null, live = true;
    const poll = () => load().catch(() => {}).finally(() => { if (live) timer = setTimeout(poll, POLL_MS); });
    load().catch((err) => setError(err.message)).finally(() => { if (live) timer = setTimeout(poll, POLL_MS); });
    const release = () => { setHeld(null); driver.current.stop(); };
    const leave = () => driver.current.leave();
    addEventListener("blur", release);  // a window left with a button held must not keep turning
    addEventListener("pagehide", leave);
    return () => {
      live = false;
      clearTimeout(timer);
      removeEventListener("blur", release);
      removeEventListener("pagehide", leave);
      driver.current.stop();
    };
  }, [cameraId]);

  const start = (move) => {
    if (held === move) return;
    setHeld(move);
    driver.current.move(MOVES[move], speed);
  };
  const end = (always = false) => {
    if (!driver.current.moving && always !== true) return;
    setHeld(null);
    driver.current.stop(true).then(() => { load().catch(() => {}); onMoved(); });
  };
  const hold = (move) => ({
    "data-move": move,
    class: held === move ? "held" : "",
    onPointerDown: (e) => { e.preventDefault(); e.currentTarget.setPointerCapture(e.pointerId); start(move); },
    onPointerUp: end, onPointerCancel: end, onLostPointerCapture: end,
  });
  // Keys steer while the pad (not one of its text fields or the slider) has the focus.
  const typing = (e) => e.target.tagName === "INPUT";
  const onKeyDown = (e) => {
    const move = KEYS[e.key];
    if (!move || typing(e)) return;
    e.preventDefault();
    if (!e.repeat) start(move);
  };
  // Any key let go while a key steers ends it, wherever the focus went meanwhile.
  const onKeyUp = (e) => { if (KEYS[e.key]) end(); };
  // The focus leaving the pad (a click elsewhere, Tab) ends a move held by a key.
  const onFocusOut = (e) => { if (!e.currentTarget.contains(e.relatedTarget)) end(); };

  const goto = async (token) => {
    await driver.current.send({ action: "goto_preset", preset: token });
    await load().catch(() => {});
    onMoved();
  };
  // A name the camera lists already (the server checks again): two would be told apart by nobody.
  const savePreset = async (e) => {
    e.preventDefault();
    const wanted = name.trim();
    if (!wanted) { setError("Give the preset a name."); return; }
    if (ptz.presets.some((p) => (p.name || "").toLowerCase() === wanted.toLowerCase())) {
      setError(`A preset named "${wanted}" exists: choose another name, or delete that one first.`);
      return;
    }
    try {
      await postJson(`${url}/presets`, { name: wanted });
      setName("");
      setError("");
      await load();
    } catch (err) { setError(err.message.replace(/^name: /, "")); }
  };
  const deletePreset = async (token) => {
    setRemoving(null);
    try {
      await getJson(`${url}/presets/${encodeURIComponent(token)}`, { method: "DELETE" });
      setError("");
      await load();
    } catch (err) { setError(err.message); }
  };

  if (absent) return html`<p class="ptz-absent">No PTZ: ${absent}</p>`;
  if (!ptz) return html`<div class="ptz"><p class="busy">${error || "Asking the camera…"}</p></div>`;
  const pos = ptz.position || {};
  return html`
    <div class="ptz" tabindex="0" onKeyDown=${onKeyDown} onKeyUp=${onKeyUp} onFocusOut=${onFocusOut}
         onDblClick=${(e) => e.stopPropagation()} aria-label="PTZ: hold a button or an arrow key to move">
      <div class="ptz-controls">
        <div class="ptz-arrows">
          ${ARROWS.map((a, i) => (a
            ? html`<button type="button" key=${a[0]} title=${a[0]} ...${hold(a[0])}>${a[1]}</button>`
            : html`<button type="button" key=${i} class="ptz-stop" title="stop" onClick=${() => end(true)}>■</button>`))}
        </div>
        <div class="ptz-zoom">
          <button type="button" title="zoom in" ...${hold("zoom-in")}>+</button>
          <button type="button" title="zoom out" ...${hold("zoom-out")}>−</button>
        </div>
      </div>
      <label class="ptz-speed">Speed
        <input type="range" min="0.1" max="1" step="0.1" value=${speed}
               onInput=${(e) => setSpeed(Number(e.target.value))} />
        <span>${Math.round(speed * 100)} %</span></label>
      <output class="ptz-position" data-pan=${pos.pan} data-tilt=${pos.tilt} data-zoom=${pos.zoom}
              data-moving=${String(!!ptz.moving)}>
        pan ${fixed(pos.pan)} · tilt ${fixed(pos.tilt)} · zoom ${fixed(pos.zoom)}${ptz.moving ? " · moving" : ""}
      </output>
      <ul class="ptz-presets">
        ${ptz.presets.map((p) => html`
          <li key=${p.token} data-preset=${p.token}>
            ${removing === p.token ? html`
              <span class="name confirm-text">Delete ${p.name || p.token}?</span>
              <button type="button" class="delete-yes" onClick=${() => deletePreset(p.token)}>Delete</button>
              <button type="button" class="delete-no" onClick=${() => setRemoving(null)}>Keep</button>` : html`
              <span class="name">${p.name || p.token}</span>
              <button type="button" class="go" onClick=${() => goto(p.token)}>Go</button>
              <button type="button" class="delete" title="Delete this preset" onClick=${() => setRemoving(p.token)}>✕</button>`}
          </li>`)}
        ${ptz.presets.length === 0 ? html`<li class="none">No presets yet.</li>` : null}
      </ul>
      <form class="ptz-save" onSubmit=${savePreset}>
        <input name="preset" placeholder="Preset name" maxlength="64" required value=${name}
               onInput=${(e) => setName(e.target.value)} />
        <button type="submit">Save position</button>
      </form>
      ${error ? html`<p class="ptz-error" role="alert">${error}</p>` : null}
    </div>`;
}
