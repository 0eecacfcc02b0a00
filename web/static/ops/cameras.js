// Cameras: the list with each one's live state, and the form that adds one or edits it
// (the camera's page reuses it). Passwords are write-only: the API shows a stored one as
// `***`, the form never shows it, and sends `***` back to keep it.
import { useEffect, useState } from "preact/hooks";
import { api, getJson, postJson } from "../common.js";
import { html } from "../ui.js";
import { go, useLeaveGuard } from "./main.js";

const POLL_MS = 3000;  // the list's live state
const SCAN_S = 3;  // how long a discovery scan listens for devices
const STORED = "***";  // the password as the API shows it, and as PUT/probe read "keep it"

// --- what the list shows ----------------------------------------------------------------

export function bitrate(bps) {
  if (!bps) return "—";
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mbit/s` : `${Math.round(bps / 1e3)} kbit/s`;
}

export function resolution(state) {
  return state.width && state.height ? `${state.width}×${state.height}` : "—";
}

// online, offline (tried and down: its last error says why), or idle: nothing pulls it
// now (sources are opened on demand, for a viewer, the recorder or a detector).
const STATUS_TEXT = { online: "online", offline: "offline", idle: "idle — pulled when watched" };

export function StatePill({ state }) {
  return html`<span class=${`pill ${state.status}`} data-status=${state.status}
    title=${state.status === "idle" ? "Nobody watches, records or detects on it now: it is opened when someone does" : ""}>
    ${STATUS_TEXT[state.status]}</span>`;
}

// The last error on one line (its whole text on hover): device messages run long.
export function LastError({ text }) {
  if (!text) return html`<span class="none">—</span>`;
  return html`<span class="last-error" title=${text}>${text}</span>`;
}

// Re-run `fn` every `ms` while the component is shown (and once at once).
export function usePoll(fn, ms, deps = []) {
  useEffect(() => {
    let live = true;
    const run = () => { if (live) fn(); };
    run();
    const timer = setInterval(run, ms);
    return () => { live = false; clearInterval(timer); };
  }, deps);
}

// --- source URLs as the form edits them -----------------------------------------------------

function decode(text) {
  try { return decodeURIComponent(text); } catch { return text; }
}

// `scheme://[user[:password]@]host[:port][/path][?query]` as written: {scheme, user,
// password (null, "***" for a stored one, or as typed), hostPort, tail}; null when the text
// is no such URL. The API's `user:***@` ends the user info wherever it is.
export function parseUrl(text) {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/is.exec((text || "").trim());
  if (!m) return null;
  const [, scheme, rest] = m;
  let user = "", password = null, after = rest;
  const stored = rest.indexOf(`:${STORED}@`);
  if (stored >= 0) {
    [user, password, after] = [rest.slice(0, stored), STORED, rest.slice(stored + STORED.length + 2)];
  } else {
    const end = rest.search(/[/?#]/);
    const at = (end < 0 ? rest : rest.slice(0, end)).lastIndexOf("@");
    if (at >= 0) {
      const info = rest.slice(0, at);
      const colon = info.indexOf(":");
      user = colon < 0 ? info : info.slice(0, colon);
      password = colon < 0 ? null : decode(info.slice(colon + 1));
      after = rest.slice(at + 1);
    }
  }
  const end = after.search(/[/?#]/);
  return { scheme: scheme.toLowerCase(), user: decode(user), password,
    hostPort: end < 0 ? after : after.slice(0, end), tail: end < 0 ? "" : after.slice(end) };
}

function splitHostPort(text) {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(text);
  return m ? { host: m[1].replace(/^\[|\]$/g, ""), port: m[2] || "" } : { host: text, port: "" };
}

// A camera id from a name: what the id pattern takes ([a-z0-9][a-z0-9_-]{0,62}).
const ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const ID_RULE = "lower-case letters, digits, - and _, starting with a letter or digit, at most 63";
export function slug(text) {
  return text.toLowerCase().replace(/[^a-z0-9_-]+/g, "-").replace(/^[^a-z0-9]+|-+$/g, "").slice(0, 63);
}

// The form's fields for a camera as the API shows it (null: a new camera).
function fieldsOf(camera) {
  const src = camera ? parseUrl(camera.source) : null;
  const onvif = !camera || src?.scheme === "onvif";
  const where = onvif && src ? splitHostPort(src.hostPort) : { host: "", port: "" };
  const profile = onvif && src ? new URLSearchParams(src.tail.replace(/^[^?]*\??/, "")).get("profile") : null;
  const rec = camera?.record || {};
  const det = camera?.detect || {};
  const text = (v) => (v == null ? "" : String(v));
  return {
    id: camera?.id || "", name: camera?.name || "",
    kind: onvif ? "onvif" : "url",
    url: onvif ? "" : src ? `${src.scheme}://${src.hostPort}${src.tail}` : camera.source,
    host: where.host, port: where.port, profile: profile || "0",
    user: src?.user || "", password: "", stored: src?.password === STORED,
    detect_source: camera?.detect_source || "",
    lat: text(camera?.position?.lat), lon: text(camera?.position?.lon),
    record_mode: rec.mode || "off", retain_days: text(rec.retain_days ?? 7), max_gb: text(rec.max_gb),
    detect_fps: text(det.fps ?? 2), detect_enabled: det.enabled ?? true,
  };
}

// The source URL the fields make: credentials percent-encoded (the server decodes them), a
// password left empty on a camera that has one sent as `***` (the server keeps it).
export function sourceOf(f) {
  const pass = f.password ? encodeURIComponent(f.password) : f.stored ? STORED : null;
  const info = f.user ? `${encodeURIComponent(f.user)}${pass ? `:${pass}` : ""}@` : "";
  if (f.kind === "onvif") {
    const host = f.host.trim();
    const bracketed = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
    const port = String(f.port).trim();
    const profile = String(f.profile).trim();
    return `onvif://${info}${bracketed}${port ? `:${port}` : ""}${profile && profile !== "0" ? `?profile=${profile}` : ""}`;
  }
  const u = parseUrl(f.url);
  if (!u || u.user) return f.url.trim();  // no URL (the server says why), or one with its own user info
  return `${u.scheme}://${info}${u.hostPort}${u.tail}`;
}

// The camera as the API takes it. `zones`: the stored ones, kept by an edit.
function bodyOf(f, zones) {
  const num = (s) => (String(s).trim() === "" ? null : Number(s));
  const body = { id: f.id.trim(), source: sourceOf(f) };
  if (f.name.trim()) body.name = f.name.trim();
  if (f.detect_source.trim()) body.detect_source = f.detect_source.trim();
  if (f.lat.trim() || f.lon.trim()) body.position = { lat: num(f.lat), lon: num(f.lon) };
  body.record = { mode: f.record_mode };
  if (f.retain_days.trim()) body.record.retain_days = num(f.retain_days);
  if (f.max_gb.trim()) body.record.max_gb = num(f.max_gb);
  body.detect = { enabled: f.detect_enabled };
  if (f.detect_fps.trim()) body.detect.fps = num(f.detect_fps);
  if (zones) body.zones = zones;
  return body;
}

const FIELDS = ["id", "name", "source", "detect_source", "position", "position.lat", "position.lon",
  "record.mode", "record.retain_days", "record.max_gb", "detect.fps", "detect.enabled"];

// The validator's and the HTTP library's wording of a complaint about `field`, in plain
// words: the id's pattern said as a rule, "Input should be ..." as what to give, and no
// "ssl:default" (how the library says it tried without TLS).
const PLAIN = [
  [/^Value error, /, ""],
  [/^String should match pattern .*$/s, (m, field) => (field === "id" ? ID_RULE : "not in the expected form")],
  [/^(Field required|String should have at least 1 character)$/, "required"],
  [/^Input should be a valid (number|integer).*$/, "a number"],
  [/^Input should be less than or equal to /, "at most "],
  [/^Input should be greater than or equal to /, "at least "],
  [/^Input should be greater than /, "more than "],
  [/^Input should be less than /, "less than "],
  [/ ssl:\S+/g, ""],
];

export function plain(text, field = "") {
  return PLAIN.reduce((t, [from, to]) => t.replace(from, typeof to === "function" ? (m) => to(m, field) : to), String(text));
}

// The server's "field: why; field: why" as {field: why} in plain words, the field's name
// left to the place the complaint is shown at; what names no field of the form is under
// "" (a part without "field: " continues the one before it).
export function fieldErrors(message) {
  const out = {};
  let field = "";
  for (const part of String(message).split("; ")) {
    const m = /^([\w.]+): (.*)$/s.exec(part);
    let text = part;
    if (m) {
      field = FIELDS.includes(m[1]) ? m[1] : "";
      if (field) text = m[2];
    }
    text = plain(text, field);
    out[field] = out[field] ? `${out[field]}; ${text}` : text;
  }
  return out;
}

// Whom a stored password goes to: scheme, user, host and port of the source the fields
// make ("" for no URL). The server keeps a password only for the same four.
function origin(f) {
  const u = parseUrl(sourceOf({ ...f, password: "" }));
  return u ? [u.scheme, u.user, u.hostPort.toLowerCase()].join(" ") : "";
}

// What the form can tell before sending, as {field: why}; the server checks it all again.
// `keeps`: a stored password is kept (same origin as when the form opened).
function check(f, keeps) {
  const out = {};
  const id = f.id.trim();
  if (!id) out.id = "required";
  else if (!ID.test(id)) out.id = ID_RULE;
  if (f.kind === "onvif" && !f.host.trim()) out.host = "required";
  if (f.kind === "url" && !f.url.trim()) out.url = "required";
  if (f.stored && !f.password && !keeps) {
    out.password = "required: the address or user changed";
  }
  const [lat, lon] = [f.lat.trim(), f.lon.trim()];
  if (Boolean(lat) !== Boolean(lon)) out[lat ? "position.lon" : "position.lat"] = "give both latitude and longitude, or neither";
  return out;
}

// --- the list ------------------------------------------------------------------------------

function where(source) {
  const u = parseUrl(source);
  return u ? `${u.scheme} · ${u.hostPort}` : source.split(":")[0];
}

export function CameraList({ me }) {
  const [cameras, setCameras] = useState(null);
  const [error, setError] = useState("");
  usePoll(() => getJson("/api/cameras")
    .then((r) => { setCameras(r.cameras); setError(""); })
    .catch((err) => setError(err.message)), POLL_MS);
  const admin = me.role === "admin";
  const count = (status) => cameras.filter((c) => c.state.status === status).length;
  const sorted = (cameras || []).slice().sort((a, b) => (a.name || a.id).localeCompare(b.name || b.id));
  return html`
    <section id="cameras">
      <div class="ops-toolbar">
        <h2>Cameras ${cameras ? html`<small>${count("online")} of ${cameras.length} online${count("idle") ? `, ${count("idle")} idle` : ""}</small>` : null}</h2>
        ${admin ? html`<a class="button primary" id="add-camera" href="#/cameras/new">Add camera</a>` : null}
      </div>
      ${error ? html`<p class="error-box" role="alert">Could not load the cameras: ${error}</p>` : null}
      ${cameras === null && !error ? html`<p class="busy">Loading…</p>` : null}
      ${cameras && cameras.length === 0 ? html`<p>No cameras yet.${admin ? " Add one, or scan the network for ONVIF cameras." : ""}</p>` : null}
      ${sorted.length ? html`
        <table class="list" id="camera-list">
          <thead><tr>
            <th>Camera</th><th>State</th><th>Codec</th><th>Resolution</th><th>FPS</th><th>Bitrate</th>
            <th title="Times the source was opened again after it dropped">Reconnects</th><th>Last error</th><th></th>
          </tr></thead>
          <tbody>
            ${sorted.map((c) => html`
              <tr key=${c.id} data-camera=${c.id} data-online=${String(c.state.online)} data-status=${c.state.status}>
                <td><a href=${`#/cameras/${encodeURIComponent(c.id)}`} class="name">${c.name || c.id}</a>
                  <small class="where">${c.id} · ${where(c.source)}</small></td>
                <td><${StatePill} state=${c.state} /></td>
                <td>${c.state.codec || "—"}${c.state.audio ? html` <small>+ ${c.state.audio}</small>` : null}</td>
                <td>${resolution(c.state)}</td>
                <td>${c.state.fps ? c.state.fps.toFixed(1) : "—"}</td>
                <td>${bitrate(c.state.bitrate)}</td>
                <td>${c.state.reconnects}</td>
                <td class="error-cell"><${LastError} text=${c.state.last_error} /></td>
                <td class="links">
                  <a href=${`#/cameras/${encodeURIComponent(c.id)}/zones`} class="zones">Zones</a>
                  <a href=${`#/recordings/${encodeURIComponent(c.id)}`} class="recordings">Recordings</a>
                </td>
              </tr>`)}
          </tbody>
        </table>` : null}
    </section>`;
}

// --- the form ------------------------------------------------------------------------------

// A discovery scan: the devices that answered, to pick one from.
function Scan({ onPick }) {
  const [scan, setScan] = useState(null);  // {until} while it runs, then {devices} or {error}
  const [, tick] = useState(0);
  useEffect(() => {
    if (!scan?.until) return undefined;
    const timer = setInterval(() => tick((n) => n + 1), 250);
    return () => clearInterval(timer);
  }, [scan]);
  const run = async () => {
    setScan({ until: Date.now() + SCAN_S * 1000 });
    try {
      setScan({ devices: (await postJson("/api/cameras/discover", { timeout_s: SCAN_S })).devices });
    } catch (err) { setScan({ error: err.message }); }
  };
  const left = scan?.until ? Math.max(0, Math.ceil((scan.until - Date.now()) / 1000)) : 0;
  return html`
    <div class="scan">
      <button type="button" id="scan" onClick=${run} disabled=${!!scan?.until}>Scan network</button>
      ${scan?.until ? html`<span class="busy" id="scan-progress"><span class="spinner"></span>
        Asking the network for ONVIF cameras… ${left ? `${left} s` : "collecting answers"}</span>` : null}
      ${scan?.error ? html`<span class="field-error" role="alert">The scan failed: ${scan.error}</span>` : null}
      ${scan?.devices && scan.devices.length === 0 ? html`<p class="busy" id="scan-none">No ONVIF camera answered
        in ${SCAN_S} s. Cameras on another subnet do not hear a scan: type the address.</p>` : null}
      ${scan?.devices?.length ? html`
        <ul id="scan-results">
          ${scan.devices.map((d) => html`
            <li key=${d.source} data-source=${d.source}>
              <b>${d.name || d.address}</b> <small>${d.hardware || ""} · ${where(d.source)}</small>
              <button type="button" class="use" onClick=${() => onPick(d)}>Use</button>
            </li>`)}
        </ul>` : null}
    </div>`;
}

// A labelled input with the server's complaint about its field under it.
function Field({ label, name, errors, hint, children }) {
  return html`
    <label class="field">
      <span class="label">${label}</span>
      ${children}
      ${hint ? html`<small class="hint">${hint}</small>` : null}
      ${errors[name] ? html`<span class="field-error" data-field=${name}>${errors[name]}</span>` : null}
    </label>`;
}

// Add a camera (`camera` null), or edit it: `onSaved(view)` hears the camera as saved.
export function CameraForm({ me, camera = null, onSaved = null }) {
  const [initial] = useState(() => fieldsOf(camera));
  const [f, setF] = useState(initial);
  const [errors, setErrors] = useState({});
  const [busy, setBusy] = useState("");
  const [probe, setProbe] = useState(null);  // {url} of the test picture, or {error}
  const [deleting, setDeleting] = useState(false);
  useEffect(() => () => { if (probe?.url) URL.revokeObjectURL(probe.url); }, [probe]);
  useLeaveGuard(JSON.stringify(f) !== JSON.stringify(initial), "The camera's settings have unsaved changes. Leave without saving them?");
  if (me.role !== "admin") {
    return html`<p class="error-box" role="alert">Only administrators add and change cameras.
      <a href="#/cameras">Back to the cameras</a></p>`;
  }
  const editing = camera !== null;
  const keeps = origin(f) === origin(initial);  // the stored password, if any, still goes with it
  const put = (changes) => setF((old) => ({ ...old, ...changes }));
  // An input's props: `field` is what the server calls it in its errors.
  const bind = (name, field = name) => ({
    name, id: `cam-${name.replaceAll("_", "-")}`, value: f[name], "aria-invalid": String(!!(errors[name] || errors[field])),
    onInput: (e) => put({ [name]: e.target.value }),
  });

  // A URL pasted with its credentials: they go to the user and password fields, out of sight.
  const takeCredentials = () => {
    const u = parseUrl(f.url);
    if (!u || !u.user) return;
    put({ url: `${u.scheme}://${u.hostPort}${u.tail}`, user: u.user,
      ...(u.password && u.password !== STORED ? { password: u.password } : {}) });
  };
  const pick = (device) => {
    const hp = splitHostPort(parseUrl(device.source)?.hostPort || "");
    put({ kind: "onvif", host: hp.host, port: hp.port,
      name: f.name || device.name || "", id: f.id || slug(device.name || hp.host) });
    document.getElementById("cam-user")?.focus();
  };

  // Each action's complaints replace the last one's: none outlives the action it was about.
  const test = async () => {
    setBusy("testing");
    setProbe(null);
    setErrors({});
    try {
      const r = await api("/api/cameras/probe", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ source: sourceOf(f), ...(editing ? { id: camera.id } : {}) }),
      });
      if (r.ok) setProbe({ url: URL.createObjectURL(await r.blob()) });
      else {
        // Shown at the source: its name goes, whatever the complaint is about.
        const message = (await r.json().catch(() => ({}))).message || `${r.status} ${r.statusText}`;
        setProbe({ error: Object.values(fieldErrors(message)).join("; ") });
      }
    } catch (err) { setProbe({ error: err.message }); }
    setBusy("");
  };

  const save = async (e) => {
    e.preventDefault();
    setProbe((p) => (p?.error ? null : p));
    const found = check(f, keeps);
    setErrors(found);
    if (Object.keys(found).length) return;
    setBusy("saving");
    try {
      const path = editing ? `/api/cameras/${encodeURIComponent(camera.id)}` : "/api/cameras";
      // The zones as stored now (the zone editor may have changed them since this page opened).
      const zones = editing ? (await getJson(path)).zones : null;
      const saved = await postJson(path, bodyOf(f, zones), editing ? "PUT" : "POST");
      put({ password: "", stored: parseUrl(saved.source)?.password === STORED });
      if (onSaved) onSaved(saved); else go(`/cameras/${encodeURIComponent(saved.id)}`);
    } catch (err) {
      setErrors(err.status === 409 ? { id: err.message } : fieldErrors(err.message));
    }
    setBusy("");
  };

  const remove = async () => {
    setBusy("deleting");
    setErrors({});
    setProbe((p) => (p?.error ? null : p));
    try {
      await getJson(`/api/cameras/${encodeURIComponent(camera.id)}`, { method: "DELETE" });
      go("/cameras");
    } catch (err) { setErrors({ "": err.message }); setBusy(""); }
  };

  const fieldErrorCount = Object.keys(errors).filter((k) => k).length;
  // The server keeps a stored password only for the scheme, user, host and port it was typed for.
  const passwordHint = !f.stored || f.password ? null : keeps
    ? "a password is stored: leave empty to keep it (kept only while the scheme, user, host and port stay the same)"
    : "the address or user changed: type the password (the stored one goes only to the device it was typed for)";
  return html`
    <form class="camera-form" id="camera-form" onSubmit=${save} novalidate>
      ${editing ? null : html`<h2>Add a camera</h2>`}
      <fieldset>
        <legend>Camera</legend>
        <div class="row">
          <${Field} label="Id" name="id" errors=${errors}
                    hint=${editing ? "fixed: streams, recordings and tickets are filed under it" : "a-z, 0-9, _ and -: it names the stream in URLs"}>
            <input ...${bind("id")} readonly=${editing} required maxlength="63" autocomplete="off" />
          </${Field}>
          <${Field} label="Name" name="name" errors=${errors}>
            <input ...${bind("name")} maxlength="120" autocomplete="off" placeholder="e.g. North gate" />
          </${Field}>
        </div>
      </fieldset>

      <fieldset class="source">
        <legend>Video source</legend>
        <div class="kinds" role="radiogroup">
          <label><input type="radio" name="kind" id="cam-kind-onvif" checked=${f.kind === "onvif"}
                        onChange=${() => put({ kind: "onvif" })} /> ONVIF camera</label>
          <label><input type="radio" name="kind" id="cam-kind-url" checked=${f.kind === "url"}
                        onChange=${() => put({ kind: "url" })} /> Stream URL</label>
        </div>
        ${f.kind === "onvif" ? html`
          <${Scan} onPick=${pick} />
          <div class="row">
            <${Field} label="Host" name="host" errors=${errors}>
              <input ...${bind("host", "source")} placeholder="192.168.1.64" autocomplete="off" />
            </${Field}>
            <${Field} label="Port" name="port" errors=${errors}>
              <input ...${bind("port")} type="number" min="1" max="65535" placeholder="80" class="short" />
            </${Field}>
            <${Field} label="Profile" name="profile" errors=${errors} hint="0: main stream">
              <input ...${bind("profile")} type="number" min="0" max="99" class="short" />
            </${Field}>
          </div>` : html`
          <${Field} label="Stream URL" name="url" errors=${errors}
                    hint="rtsp://host:554/path, or another kind of source this server takes (media.api_sources) — the user and password go below">
            <input ...${bind("url", "source")} onChange=${takeCredentials} placeholder="rtsp://192.168.1.64:554/Streaming/Channels/101"
                   autocomplete="off" class="wide" />
          </${Field}>`}
        <div class="row">
          <${Field} label="User" name="user" errors=${errors}>
            <input ...${bind("user")} autocomplete="off" />
          </${Field}>
          <${Field} label="Password" name="password" errors=${errors} hint=${passwordHint}>
            <input ...${bind("password")} type="password" autocomplete="new-password" required=${f.stored && !keeps}
                   placeholder=${f.stored ? (keeps ? "unchanged" : "required") : ""} />
          </${Field}>
        </div>
        ${errors.source ? html`<p class="field-error" data-field="source">${errors.source}</p>` : null}
        <div class="probe">
          <button type="button" id="probe" onClick=${test} disabled=${!!busy}>Test</button>
          ${busy === "testing" ? html`<span class="busy"><span class="spinner"></span> Asking the camera for a picture…</span>` : null}
          ${probe?.error ? html`<p class="field-error" id="probe-error" role="alert">${probe.error}</p>` : null}
          ${probe?.url ? html`<img id="probe-img" src=${probe.url} alt="The camera's picture now" />` : null}
        </div>
      </fieldset>

      <fieldset>
        <legend>Detection</legend>
        <${Field} label="Detection sub-stream" name="detect_source" errors=${errors}
                  hint="optional: a smaller stream for the detector (rtsp://… or onvif://…?profile=1); the main stream when empty">
          <input ...${bind("detect_source")} autocomplete="off" class="wide" />
        </${Field}>
        <div class="row">
          <${Field} label="Frames per second" name="detect.fps" errors=${errors}>
            <input ...${bind("detect_fps", "detect.fps")} type="number" min="0.1" max="30" step="0.1" class="short" />
          </${Field}>
          <label class="field check"><input type="checkbox" id="cam-detect-enabled" checked=${f.detect_enabled}
                 onChange=${(e) => put({ detect_enabled: e.target.checked })} /> Detect violations</label>
        </div>
      </fieldset>

      <fieldset>
        <legend>Recording</legend>
        <div class="row">
          <${Field} label="Mode" name="record.mode" errors=${errors}>
            <select ...${bind("record_mode", "record.mode")}>
              <option value="off">off</option>
              <option value="continuous">continuous</option>
              <option value="events">events only</option>
            </select>
          </${Field}>
          <${Field} label="Keep (days)" name="record.retain_days" errors=${errors}>
            <input ...${bind("retain_days", "record.retain_days")} type="number" min="0.1" step="any" class="short" />
          </${Field}>
          <${Field} label="Quota (GB)" name="record.max_gb" errors=${errors} hint="optional">
            <input ...${bind("max_gb", "record.max_gb")} type="number" min="0.1" step="any" class="short" />
          </${Field}>
        </div>
      </fieldset>

      <fieldset>
        <legend>Map position</legend>
        <div class="row">
          <${Field} label="Latitude" name="position.lat" errors=${errors}>
            <input ...${bind("lat", "position.lat")} type="number" step="any" min="-85.05" max="85.05" />
          </${Field}>
          <${Field} label="Longitude" name="position.lon" errors=${errors}>
            <input ...${bind("lon", "position.lon")} type="number" step="any" min="-180" max="180" />
          </${Field}>
        </div>
        ${errors.position ? html`<p class="field-error" data-field="position">${errors.position}</p>` : null}
      </fieldset>

      ${fieldErrorCount || errors[""] ? html`<div class="error-box" id="form-error" role="alert">
        Not saved.${fieldErrorCount ? " See the marked fields." : ""}${errors[""] ? html` <span>${errors[""]}</span>` : null}</div>` : null}
      <div class="actions">
        <button type="submit" class="primary" id="save" disabled=${!!busy}>${editing ? "Save changes" : "Add camera"}</button>
        ${busy === "saving" ? html`<span class="busy">Saving…</span>` : null}
        ${editing ? null : html`<a href="#/cameras">Cancel</a>`}
        ${editing && !deleting ? html`<button type="button" class="danger" id="delete" onClick=${() => setDeleting(true)}>Delete camera</button>` : null}
        ${deleting ? html`<span class="confirm" id="confirm-delete">Delete ${camera.id}? Its video and detection stop at once.
          <button type="button" class="danger" id="delete-yes" onClick=${remove} disabled=${!!busy}>Delete</button>
          <button type="button" id="delete-no" onClick=${() => setDeleting(false)}>Keep</button></span>` : null}
      </div>
    </form>`;
}
