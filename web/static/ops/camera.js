// One camera: its live state, a fresh picture (or its live video), the PTZ pad for an
// ONVIF camera that has PTZ, its settings (edited here by an administrator), and links to
// its zones and recordings.
import { useEffect, useRef, useState } from "preact/hooks";
import { getJson } from "../common.js";
import { PtzPad } from "../ptz.js";
import { html } from "../ui.js";
import { Player } from "../wall/player.js";
import { bitrate, CameraForm, LastError, parseUrl, resolution, StatePill, usePoll } from "./cameras.js";

const POLL_MS = 3000;

// The camera's picture now (asked again on `stamp` changes), or its live video.
// `lastError`: the stream's, shown at once while the picture is awaited (a dead camera
// takes the snapshot's whole deadline to say it gave none).
function Picture({ cameraId, stamp, lastError, onRefresh }) {
  const [live, setLive] = useState(false);
  const [loaded, setLoaded] = useState(null);  // null while the picture is on its way, then true/false
  const [playing, setPlaying] = useState("");
  const box = useRef(null);
  useEffect(() => setLoaded(null), [stamp]);
  useEffect(() => {
    if (!live) return undefined;
    const player = new Player(cameraId, (state, detail) => setPlaying(detail ? `${state}: ${detail}` : state));
    box.current.append(player.video);
    return () => { player.close(); };
  }, [live]);
  const src = `/api/cameras/${encodeURIComponent(cameraId)}/snapshot.jpg?t=${stamp}`;
  return html`
    <div class="picture">
      ${live
        ? html`<div class="live" ref=${box}></div><p class="busy" id="live-state">${playing}</p>`
        : html`<img id="snapshot" key=${stamp} src=${src} alt="The camera's picture"
                    onLoad=${() => setLoaded(true)} onError=${() => setLoaded(false)} />
          ${loaded === null ? html`<p class="busy" id="snapshot-wait">Taking a picture…${lastError
            ? html` <span class="field-error" id="snapshot-last-error">The stream's last error: ${lastError}</span>` : null}</p>` : null}
          ${loaded === false ? html`<p class="field-error" id="snapshot-error">The camera gave no picture${lastError
            ? `: ${lastError}` : "."}</p>` : null}`}
      <div class="picture-tools">
        ${live ? null : html`<button type="button" id="snapshot-refresh" onClick=${onRefresh}>New picture</button>`}
        <button type="button" id="live-toggle" onClick=${() => setLive(!live)}>${live ? "Picture" : "Live video"}</button>
      </div>
    </div>`;
}

function Facts({ camera }) {
  const s = camera.state;
  const src = parseUrl(camera.source);
  return html`
    <dl class="facts" id="camera-state">
      <dt>State</dt><dd><${StatePill} state=${s} /></dd>
      <dt>Source</dt><dd>${src ? `${src.scheme} · ${src.hostPort}` : camera.source.split(":")[0]}</dd>
      <dt>Codec</dt><dd>${s.codec || "—"}${s.audio ? ` + ${s.audio}` : ""}</dd>
      <dt>Resolution</dt><dd>${resolution(s)}</dd>
      <dt>FPS</dt><dd>${s.fps ? s.fps.toFixed(1) : "—"}</dd>
      <dt>Bitrate</dt><dd>${bitrate(s.bitrate)}</dd>
      <dt>Viewers</dt><dd>${s.viewers} <small>(${s.consumers} consumers)</small></dd>
      <dt>Reconnects</dt><dd>${s.reconnects}</dd>
      <dt>Last error</dt><dd class="error-cell"><${LastError} text=${s.last_error} /></dd>
      <dt>Recording</dt><dd>${camera.record.mode}${camera.record.mode !== "off" ? `, kept ${camera.record.retain_days} d` : ""}</dd>
      <dt>Detection</dt><dd>${camera.detect.enabled ? `${camera.detect.fps} fps` : "off"}, ${camera.zones.length} zone${camera.zones.length === 1 ? "" : "s"}</dd>
    </dl>`;
}

export function CameraPage({ me, cameraId }) {
  const [camera, setCamera] = useState(null);  // with its live state, polled
  const [edited, setEdited] = useState(null);  // what the form edits: loaded once, again after a save
  const [error, setError] = useState(null);  // {status, message} of the last poll that failed
  const [stamp, setStamp] = useState(Date.now());
  const [saved, setSaved] = useState(false);
  const path = `/api/cameras/${encodeURIComponent(cameraId)}`;
  usePoll(() => getJson(path)
    .then((c) => { setCamera(c); setEdited((e) => e || c); setError(null); })
    .catch((err) => setError({ status: err.status, message: err.message })), POLL_MS, [cameraId]);

  if (error?.status === 404) {
    return html`<p class="error-box" role="alert" id="no-camera">${error.message}. <a href="#/cameras">All cameras</a></p>`;
  }
  if (!camera) return html`<p class="busy">${error ? error.message : "Loading…"}</p>`;
  const id = encodeURIComponent(camera.id);
  const onvif = parseUrl(camera.source)?.scheme === "onvif";
  const onSaved = (view) => { setCamera(view); setEdited(view); setSaved(true); setStamp(Date.now()); };
  return html`
    <section id="camera" data-camera=${camera.id}>
      <div class="ops-toolbar">
        <h2>${camera.name || camera.id} <small>${camera.id}</small></h2>
        <nav class="camera-links">
          <a href="#/cameras">All cameras</a>
          <a href=${`#/cameras/${id}/zones`} id="to-zones">Zones</a>
          <a href=${`#/recordings/${id}`} id="to-recordings">Recordings</a>
        </nav>
      </div>
      ${error ? html`<p class="error-box" role="alert">Could not refresh: ${error.message}</p>` : null}
      <div class="camera-top">
        <${Picture} cameraId=${camera.id} stamp=${stamp} lastError=${camera.state.last_error}
                    onRefresh=${() => setStamp(Date.now())} />
        <div class="camera-side">
          <${Facts} camera=${camera} />
          ${onvif ? html`<h3>PTZ</h3><${PtzPad} cameraId=${camera.id} onMoved=${() => setStamp(Date.now())} />` : null}
        </div>
      </div>
      ${me.role === "admin" && edited ? html`
        <h3>Settings ${saved ? html`<small class="saved" id="saved">saved</small>` : null}</h3>
        <${CameraForm} me=${me} camera=${edited} key=${edited} onSaved=${onSaved} />` : null}
    </section>`;
}
