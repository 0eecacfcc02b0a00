// A camera's zones, drawn on a fresh snapshot of its picture (as Frigate's zone editor):
// "New zone", then click to add points and click the first point (or "Close") to close
// it; drag a point to move it, drag a zone to move it whole, drag an edge's middle handle
// to add a point there, right-click a point (or select it and press Delete) to remove it.
// Points are kept relative to the picture (0 to 1, x right, y down) and saved so (frame
// null); a zone stored in pixels of a declared frame is shown divided by that frame.
// The server checks what is saved: its refusal is put on the field, and on the point, it names.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, getJson, postJson } from "../common.js";
import { html, label } from "../ui.js";
import { useLeaveGuard } from "./main.js";

const KINDS = ["no_parking", "no_stall"];
const COLOURS = { no_parking: "#f85149", no_stall: "#d29922" };
const MIN_POINTS = 3;
const DEFAULT_DWELL_S = 120;

const clamp = (v) => Math.min(1, Math.max(0, v));
const round4 = (v) => Math.round(v * 10000) / 10000;

// A zone as the API gives it -> as the editor holds it (relative points, hours split).
export function fromWire(z) {
  const [fw, fh] = z.frame || [1, 1];
  const [from, to] = z.hours ? z.hours.split("-") : ["", ""];
  return {
    name: z.name, kind: z.kind, polygon: z.polygon.map(([x, y]) => [x / fw, y / fh]),
    dwell_s: z.dwell_s, from, to, classes: z.classes || [],
  };
}

// The editor's zone -> the API's (relative points, frame null).
export function toWire(z) {
  return {
    name: z.name.trim(), kind: z.kind, polygon: z.polygon.map(([x, y]) => [round4(x), round4(y)]),
    frame: null, dwell_s: Number(z.dwell_s), hours: z.from && z.to ? `${z.from}-${z.to}` : null,
    classes: z.classes.length ? z.classes : null,
  };
}

// An error as the screen places it: {zone: index or null, field: "polygon"|"name"|... or
// null, point: index or null, why}.
const LOC = /^zones\.(\d+)(?:\.([a-z_]+)(?:\.(\d+))?(?:\.\d+)*)?:\s*(.*)$/s;

// The server's invalid_zones message ("zones.0.polygon.3: why; zones.1.dwell_s: why") as
// errors; a part that names no zone is kept whole (zone null).
export function parseErrors(message) {
  return message.split(/; (?=[\w.() ]+: )/).map((part) => {
    const m = LOC.exec(part.trim());
    if (!m) return { zone: null, field: null, point: null, why: part };
    return {
      zone: Number(m[1]), field: m[2] || null, point: m[3] == null ? null : Number(m[3]),
      why: m[4].replace(/^Value error, /, ""),
    };
  });
}

// What the page can tell before sending; the server checks the rest (and all of this again).
// `counted`: the class names the detectors count for each kind (GET .../zones' `classes`).
function check(zones, counted) {
  const found = [];
  const names = new Map();
  zones.forEach((z, i) => {
    const err = (field, why) => found.push({ zone: i, field, point: null, why });
    if (z.polygon.length < MIN_POINTS) err("polygon", `draw at least ${MIN_POINTS} points (it has ${z.polygon.length})`);
    const name = z.name.trim();
    if (!name) err("name", "give the zone a name");
    else if (names.has(name)) err("name", `zone ${names.get(name)} has this name too`);
    names.set(name, i);
    const dwell = Number(z.dwell_s);
    if (!(dwell > 0 && dwell <= 86400)) err("dwell_s", "seconds, more than 0 and at most 86400");
    if (Boolean(z.from) !== Boolean(z.to)) err("hours", "give both times, or neither for always");
    const stray = z.classes.filter((c) => !counted[z.kind].includes(c));
    if (stray.length) err("classes", `the detectors never count ${stray.join(", ")} in a ${label(z.kind)} zone: untick it`);
  });
  return found;
}

const centre = (poly) => [poly.reduce((s, p) => s + p[0], 0) / poly.length, poly.reduce((s, p) => s + p[1], 0) / poly.length];

// The picture and the zones drawn over it. Coordinates on screen are pixels of the picture
// as shown (the overlay's viewBox follows its size), so handles stay round at any size.
function Stage({ picture, aspect, zones, selected, point, drawing, hover, errors, onDown, onMove, onUp, onMenu, svgRef }) {
  const box = useRef(null);
  const [size, setSize] = useState([0, 0]);
  useEffect(() => {
    const watch = new ResizeObserver(() => setSize([box.current.clientWidth, box.current.clientHeight]));
    watch.observe(box.current);
    return () => watch.disconnect();
  }, []);
  const [w, h] = size;
  const px = ([x, y]) => [x * w, y * h];
  const pts = (poly) => poly.map((p) => px(p).join(",")).join(" ");
  const pointErrors = errors.filter((e) => e.field === "polygon" && e.point != null && zones[e.zone]?.polygon[e.point]);
  return html`
    <div class="zone-stage" id="zone-stage" ref=${box} style=${{ aspectRatio: `${aspect[0]} / ${aspect[1]}` }}>
      ${picture ? html`<img src=${picture} alt="the camera's picture" draggable=${false}/>` : null}
      <svg ref=${svgRef} class=${`zones${drawing ? " drawing" : ""}`} viewBox=${`0 0 ${w || 1} ${h || 1}`}
           onPointerDown=${onDown} onPointerMove=${onMove} onPointerUp=${onUp} onPointerLeave=${onUp}
           onContextMenu=${onMenu}>
        ${zones.map((z, i) => {
          const on = i === selected;
          const open = on && drawing;
          const colour = COLOURS[z.kind];
          const [cx, cy] = z.polygon.length ? px(centre(z.polygon)) : [0, 0];
          return html`
            <g key=${i} class=${`zone${on ? " selected" : ""}`} data-zone=${i} data-kind=${z.kind}>
              ${open ? html`<polyline points=${pts(hover ? [...z.polygon, hover] : z.polygon)} stroke=${colour} fill="none"/>`
                : html`<polygon points=${pts(z.polygon)} stroke=${colour} fill=${colour}
                          data-role="zone" data-zone=${i}/>`}
              ${z.polygon.length ? html`<text class="zone-name" x=${cx} y=${cy}>${z.name || "(no name)"}</text>` : null}
              ${on && !drawing ? z.polygon.map((p, j) => {
                const [ax, ay] = px(p);
                const [bx, by] = px(z.polygon[(j + 1) % z.polygon.length]);
                return html`<circle key=${`m${j}`} class="mid" cx=${(ax + bx) / 2} cy=${(ay + by) / 2} r="4"
                                    data-role="mid" data-zone=${i} data-point=${j}><title>drag to add a point</title></circle>`;
              }) : null}
              ${on ? z.polygon.map((p, j) => {
                const [x, y] = px(p);
                const first = open && j === 0 && z.polygon.length >= MIN_POINTS;
                return html`
                  <circle key=${`v${j}`} class=${`vertex${j === point ? " picked" : ""}${first ? " closer" : ""}`}
                          cx=${x} cy=${y} r=${first ? 9 : 6} data-role="vertex" data-zone=${i} data-point=${j}>
                    <title>${first ? "click to close the zone" : `point ${j}: drag to move, right-click to remove`}</title></circle>
                  <text class="point-number" x=${x + 9} y=${y - 9}>${j}</text>`;
              }) : null}
            </g>`;
        })}
        ${pointErrors.map((e) => {
          const [x, y] = px(zones[e.zone].polygon[e.point]);
          return html`<circle key=${`e${e.zone}.${e.point}`} class="point-error" cx=${x} cy=${y} r="14"
                              data-zone=${e.zone} data-point=${e.point}/>`;
        })}
      </svg>
      ${pointErrors.map((e) => {
        const [x, y] = zones[e.zone].polygon[e.point];
        return html`<p key=${`t${e.zone}.${e.point}`} role="alert" class=${`point-message${x > 0.6 ? " left" : ""}`}
                       data-zone=${e.zone} data-point=${e.point} style=${{ left: `${x * 100}%`, top: `${y * 100}%` }}>
          ${zones[e.zone].name}, point ${e.point}: ${e.why}</p>`;
      })}
    </div>`;
}

function FieldError({ errors, field }) {
  const mine = errors.filter((e) => e.field === field);
  return mine.length ? html`<p class="field-error" data-field=${field}>
    ${mine.map((e) => (field === "polygon" && e.point != null ? `point ${e.point}: ${e.why}` : e.why)).join("; ")}</p>` : null;
}

// One zone's fields in the side list. `counted`: the class names the detectors count for
// each kind; a class the zone has that its kind does not count is shown too, to untick.
function ZoneFields({ zone, index, on, errors, counted, onSelect, onChange, onDelete }) {
  const set = (field) => (e) => onChange((z) => ({ ...z, [field]: e.target.value }));
  // Another kind counts other classes: those of the old kind's go.
  const setKind = (e) => {
    const kind = e.target.value;
    onChange((z) => ({ ...z, kind, classes: z.classes.filter((c) => counted[kind].includes(c)) }));
  };
  const toggle = (name) => onChange((z) => ({
    ...z, classes: z.classes.includes(name) ? z.classes.filter((c) => c !== name) : [...z.classes, name],
  }));
  const mine = counted[zone.kind];
  const offered = [...mine, ...zone.classes.filter((c) => !mine.includes(c))];
  const dwell = Number(zone.dwell_s);
  const known = new Set(["name", "kind", "polygon", "dwell_s", "hours", "classes"]);
  return html`
    <li class=${`zone-item${on ? " selected" : ""}${errors.length ? " has-error" : ""}`} data-zone=${index}
        aria-selected=${on} onClick=${onSelect}>
      <div class="zone-head">
        <i class="swatch" style=${{ background: COLOURS[zone.kind] }}></i>
        <input name="name" value=${zone.name} maxlength="64" placeholder="name" aria-label="name" onInput=${set("name")}/>
        <button class="delete" title="Delete this zone" onClick=${(e) => { e.stopPropagation(); onDelete(); }}>Delete</button>
      </div>
      <${FieldError} errors=${errors} field="name"/>
      <label>Kind <select name="kind" value=${zone.kind} onChange=${setKind}>
        ${KINDS.map((k) => html`<option key=${k} value=${k}>${label(k)}</option>`)}</select></label>
      <${FieldError} errors=${errors} field="kind"/>
      <label>Dwell <input name="dwell_s" type="number" min="1" max="86400" step="1" value=${zone.dwell_s}
        onInput=${set("dwell_s")}/> s <span class="dim">${dwell >= 60 ? `(${+(dwell / 60).toFixed(1)} min)` : ""}</span></label>
      <${FieldError} errors=${errors} field="dwell_s"/>
      <label>Hours <input name="from" type="time" value=${zone.from} onInput=${set("from")}/>
        to <input name="to" type="time" value=${zone.to} onInput=${set("to")}/>
        <span class="dim">${zone.from || zone.to ? "" : "always"}</span></label>
      <${FieldError} errors=${errors} field="hours"/>
      <fieldset class="classes"><legend>Classes <span class="dim">— none ticked: every class listed</span></legend>
        ${offered.map((c) => html`<label key=${c} class=${mine.includes(c) ? "" : "stray"}
            title=${mine.includes(c) ? "" : `the detectors do not count ${c} in a ${label(zone.kind)} zone`}>
          <input type="checkbox" name="class" value=${c} checked=${zone.classes.includes(c)} onChange=${() => toggle(c)}/>${c}</label>`)}
        ${offered.length ? null : html`<span class="dim">the detectors count no class for ${label(zone.kind)} (detectors.classes)</span>`}
      </fieldset>
      <${FieldError} errors=${errors} field="classes"/>
      <p class="dim points">${zone.polygon.length} points</p>
      <${FieldError} errors=${errors} field="polygon"/>
      <${FieldError} errors=${errors} field="frame"/>
      ${errors.filter((e) => !known.has(e.field) && e.field !== "frame").map((e, k) => html`
        <p key=${k} class="field-error">${e.field ? `${e.field}: ` : ""}${e.why}</p>`)}
    </li>`;
}

export function ZoneEditor({ cameraId }) {
  const id = encodeURIComponent(cameraId);
  const [camera, setCamera] = useState(null);
  const [loadError, setLoadError] = useState("");
  const [picture, setPicture] = useState({ url: null, size: null, error: "", busy: false });
  const [saved, setSaved] = useState(null);  // the zones as last loaded or saved
  const [counted, setCounted] = useState(null);  // {kind: class names the detectors count}
  const [zones, setZones] = useState([]);
  const [selected, setSelected] = useState(null);  // zone index
  const [point, setPoint] = useState(null);  // point index in the selected zone
  const [drawing, setDrawing] = useState(false);  // the selected zone is being drawn
  const [errors, setErrors] = useState([]);
  const [saving, setSaving] = useState(false);
  const [note, setNote] = useState("");
  const [hover, setHover] = useState(null);  // where the pointer is, while drawing
  const svgRef = useRef(null);
  const drag = useRef(null);
  const urlRef = useRef(null);

  const dirty = saved !== null && JSON.stringify(zones.map(toWire)) !== JSON.stringify(saved.map(toWire));
  useLeaveGuard(dirty, "The zones have unsaved changes. Leave without saving them?");

  async function loadPicture() {
    setPicture((p) => ({ ...p, busy: true, error: "" }));
    try {
      const r = await api(`/api/cameras/${id}/snapshot.jpg`);
      if (!r.ok) throw new Error((await r.json().catch(() => ({}))).message || `${r.status} ${r.statusText}`);
      const url = URL.createObjectURL(await r.blob());
      const size = await new Promise((resolve, reject) => {
        const img = new Image();
        img.onload = () => resolve([img.naturalWidth, img.naturalHeight]);
        img.onerror = () => reject(new Error("the snapshot is not a picture"));
        img.src = url;
      });
      if (urlRef.current) URL.revokeObjectURL(urlRef.current);
      urlRef.current = url;
      setPicture({ url, size, error: "", busy: false });
    } catch (e) {
      setPicture((p) => ({ ...p, busy: false, error: e.message }));
    }
  }

  useEffect(() => {
    Promise.all([getJson(`/api/cameras/${id}`), getJson(`/api/cameras/${id}/zones`)]).then(([cam, body]) => {
      const loaded = body.zones.map(fromWire);
      setCounted(body.classes);
      setCamera(cam);
      setSaved(loaded);
      setZones(loaded);
    }).catch((e) => setLoadError(e.message));
    loadPicture();
    return () => { if (urlRef.current) URL.revokeObjectURL(urlRef.current); };
  }, [cameraId]);

  // Change zone i; what the server said about it no longer holds.
  function change(i, fn) {
    setZones((all) => all.map((z, k) => (k === i ? fn(z) : z)));
    setErrors((all) => all.filter((e) => e.zone !== i));
    setNote("");
  }

  function select(i, j = null) { setSelected(i); setPoint(j); }

  function startZone() {
    const n = zones.length;
    const names = new Set(zones.map((z) => z.name));
    let k = n + 1;
    while (names.has(`zone-${k}`)) k++;
    setZones((all) => [...all, { name: `zone-${k}`, kind: "no_parking", polygon: [], dwell_s: DEFAULT_DWELL_S, from: "", to: "", classes: [] }]);
    select(n);
    setDrawing(true);
    setNote("");
  }

  function finish() {
    if (selected !== null && zones[selected].polygon.length >= MIN_POINTS) setDrawing(false);
  }

  function undoPoint() {
    if (drawing && selected !== null) change(selected, (z) => ({ ...z, polygon: z.polygon.slice(0, -1) }));
  }

  function removePoint(i, j) {
    if (zones[i].polygon.length <= MIN_POINTS) { setNote(`a zone keeps at least ${MIN_POINTS} points: delete the zone instead`); return; }
    change(i, (z) => ({ ...z, polygon: z.polygon.filter((_, k) => k !== j) }));
    setPoint(null);
  }

  function removeZone(i) {
    setZones((all) => all.filter((_, k) => k !== i));
    setErrors((all) => all.filter((e) => e.zone !== i).map((e) => (e.zone > i ? { ...e, zone: e.zone - 1 } : e)));
    select(null);
    setDrawing(false);
  }

  function discard() {
    setZones(saved);
    setErrors([]);
    select(null);
    setDrawing(false);
    setNote("");
  }

  function where(e) {
    const r = svgRef.current.getBoundingClientRect();
    return [clamp((e.clientX - r.left) / r.width), clamp((e.clientY - r.top) / r.height)];
  }

  function onDown(e) {
    if (e.button !== 0) return;
    const p = where(e);
    const { role } = e.target.dataset;
    const i = Number(e.target.dataset.zone);
    const j = Number(e.target.dataset.point);
    if (drawing) {
      if (role === "vertex" && i === selected && j === 0 && zones[i].polygon.length >= MIN_POINTS) finish();
      else change(selected, (z) => ({ ...z, polygon: [...z.polygon, p] }));
      return;
    }
    if (role === "vertex") {
      select(i, j);
      drag.current = { kind: "point", zone: i, point: j };
    } else if (role === "mid") {
      drag.current = { kind: "mid", zone: i, point: j + 1 };
    } else if (role === "zone") {
      select(i);
      drag.current = { kind: "zone", zone: i, from: p, polygon: zones[i].polygon };
    } else {
      select(null);
      return;
    }
    svgRef.current.setPointerCapture(e.pointerId);
  }

  function onMove(e) {
    const [x, y] = where(e);
    if (drawing) setHover([x, y]);
    const d = drag.current;
    if (!d) return;
    if (d.kind === "mid") {  // the new point is made once it moves, not on a mere click
      change(d.zone, (z) => ({ ...z, polygon: [...z.polygon.slice(0, d.point), [x, y], ...z.polygon.slice(d.point)] }));
      select(d.zone, d.point);
      drag.current = { ...d, kind: "point" };
      return;
    }
    if (d.kind === "point") {
      change(d.zone, (z) => ({ ...z, polygon: z.polygon.map((q, k) => (k === d.point ? [x, y] : q)) }));
      return;
    }
    // The whole zone, kept inside the picture.
    const xs = d.polygon.map((q) => q[0]);
    const ys = d.polygon.map((q) => q[1]);
    const dx = Math.min(1 - Math.max(...xs), Math.max(-Math.min(...xs), x - d.from[0]));
    const dy = Math.min(1 - Math.max(...ys), Math.max(-Math.min(...ys), y - d.from[1]));
    change(d.zone, (z) => ({ ...z, polygon: d.polygon.map(([qx, qy]) => [qx + dx, qy + dy]) }));
  }

  function onUp(e) {
    drag.current = null;
    if (e.type === "pointerleave") setHover(null);
  }

  function onMenu(e) {
    e.preventDefault();
    const { role, zone, point: j } = e.target.dataset;
    if (role === "vertex" && !drawing) removePoint(Number(zone), Number(j));
  }

  // Keys: Enter closes the zone being drawn, Escape ends drawing (a zone of fewer than 3
  // points goes), Backspace or Ctrl+Z takes back its last point; Delete removes the
  // selected point. Set at each render and read when a key comes: effects run late, and
  // a key pressed at once after a click must see what that click selected.
  const onKey = useRef(null);
  onKey.current = (e) => {
    if (e.target.closest && e.target.closest("input, select, textarea")) return;
    if (drawing && (e.key === "Backspace" || (e.key === "z" && (e.ctrlKey || e.metaKey)))) { e.preventDefault(); undoPoint(); }
    else if (drawing && e.key === "Enter") finish();
    else if (drawing && e.key === "Escape") {
      if (zones[selected].polygon.length >= MIN_POINTS) finish(); else removeZone(selected);
    } else if (!drawing && point !== null && (e.key === "Delete" || e.key === "Backspace")) {
      e.preventDefault();
      removePoint(selected, point);
    }
  };
  useEffect(() => {
    const key = (e) => onKey.current(e);
    document.addEventListener("keydown", key);
    return () => document.removeEventListener("keydown", key);
  }, []);

  function show(found) {
    setErrors(found);
    const first = found.find((f) => f.zone !== null && f.zone < zones.length);
    if (first) { select(first.zone, first.field === "polygon" ? first.point : null); setDrawing(false); }
  }

  async function save() {
    setDrawing(false);
    const found = check(zones, counted);
    if (found.length) { show(found); return; }
    setSaving(true);
    try {
      const body = await postJson(`/api/cameras/${id}/zones`, { zones: zones.map(toWire) }, "PUT");
      const stored = body.zones.map(fromWire);
      setCounted(body.classes);
      setSaved(stored);
      setZones(stored);
      setErrors([]);
      setNote("saved");
    } catch (e) {
      show(e.status === 400 ? parseErrors(e.message) : [{ zone: null, field: null, point: null, why: e.message }]);
    } finally {
      setSaving(false);
    }
  }

  if (loadError) return html`<p role="alert" class="field-error" id="zones-load-error">${loadError}</p>`;
  const state = camera?.state || {};
  const aspect = picture.size || (state.width && state.height ? [state.width, state.height] : [16, 9]);
  const drawn = drawing && selected !== null ? zones[selected].polygon.length : 0;
  const general = errors.filter((e) => e.zone === null || e.zone >= zones.length);
  return html`
    <section class="zone-editor" data-camera=${cameraId} data-dirty=${dirty}>
      <div class="zone-bar">
        <h2>Zones of <a href=${`#/cameras/${id}`}>${camera?.name || cameraId}</a></h2>
        <button id="zones-refresh" onClick=${loadPicture} disabled=${picture.busy}>
          ${picture.busy ? "Taking a picture…" : "Refresh picture"}</button>
        <button id="zones-new" onClick=${startZone} disabled=${drawing || saved === null}>New zone</button>
        ${drawing ? html`
          <button id="zones-undo" onClick=${undoPoint} disabled=${drawn === 0}>Undo point</button>
          <button id="zones-close" onClick=${finish} disabled=${drawn < MIN_POINTS}>Close zone</button>
          <span class="dim hint">click to add points; click the first point to close</span>` : null}
        <span class="spacer"></span>
        ${dirty ? html`<span id="zones-dirty" class="unsaved">unsaved changes</span>` : null}
        ${note ? html`<span id="zones-note" class="dim">${note}</span>` : null}
        <button id="zones-discard" onClick=${discard} disabled=${!dirty || saving}>Discard changes</button>
        <button id="zones-save" class="primary" onClick=${save} disabled=${!dirty || saving}>
          ${saving ? "Saving…" : "Save"}</button>
      </div>
      ${picture.error ? html`<p role="alert" class="field-error" id="zones-picture-error">No picture: ${picture.error}</p>` : null}
      ${general.map((e, k) => html`<p key=${k} role="alert" class="field-error zones-error">${e.why}</p>`)}
      <div class="zone-layout">
        <${Stage} picture=${picture.url} aspect=${aspect} zones=${zones} selected=${selected} point=${point}
                  drawing=${drawing} hover=${hover} errors=${errors} svgRef=${svgRef}
                  onDown=${onDown} onMove=${onMove} onUp=${onUp} onMenu=${onMenu}/>
        <ol class="zone-list" id="zone-list">
          ${saved === null ? html`<li class="busy">Loading…</li>` : null}
          ${saved !== null && zones.length === 0 ? html`<li class="dim">No zones: "New zone" to draw one.</li>` : null}
          ${zones.map((z, i) => html`
            <${ZoneFields} key=${i} zone=${z} index=${i} on=${i === selected}
              errors=${errors.filter((e) => e.zone === i)} counted=${counted} onSelect=${() => selected !== i && !drawing && select(i)}
              onChange=${(fn) => change(i, fn)} onDelete=${() => removeZone(i)}/>`)}
        </ol>
      </div>
    </section>`;
}
