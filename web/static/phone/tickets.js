// His tickets on the phone: an offer rings (sound, vibration) with what, where, how far
// and the evidence picture; accepted, a map with him and the place, distance and
// bearing, a hand-over to the phone's maps app, arrival (by his track, or a button);
// on scene, photos from his camera and a note to resolve it; reminders; his history.
import * as L from "leaflet";
import { useEffect, useRef, useState } from "preact/hooks";
import { getJson, openMedia, postJson, stopTracks } from "../common.js";
import { age, beep, clock, evidenceUrl, html, label, now, snapshotOf, STATE_LABELS, useTick, useTopics } from "../ui.js";
import { phone } from "./state.js";

const DECLINE_REASONS = ["busy with another case", "too far away", "not my area", "going off duty", "other"];
const RING_EVERY_MS = 2500;

// Great-circle distance in metres and initial bearing in degrees (0 = north).
export function distanceBearing(lat1, lon1, lat2, lon2) {
  const r = Math.PI / 180, p1 = lat1 * r, p2 = lat2 * r, dl = (lon2 - lon1) * r;
  const a = Math.sin((p2 - p1) / 2) ** 2 + Math.cos(p1) * Math.cos(p2) * Math.sin(dl / 2) ** 2;
  const distance = 2 * 6371008.8 * Math.asin(Math.sqrt(a));
  const y = Math.sin(dl) * Math.cos(p2);
  const x = Math.cos(p1) * Math.sin(p2) - Math.sin(p1) * Math.cos(p2) * Math.cos(dl);
  return { distance, bearing: (Math.atan2(y, x) / r + 360) % 360 };
}

const COMPASS = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];
function away(ticket) {
  const g = phone.gps;
  if (g.lat == null) return null;
  const { distance, bearing } = distanceBearing(g.lat, g.lon, ticket.location.lat, ticket.location.lon);
  return { distance, bearing, text: `${distance < 1000 ? `${Math.round(distance)} m` : `${(distance / 1000).toFixed(1)} km`} ${COMPASS[Math.round(bearing / 45) % 8]} (${Math.round(bearing)}°)` };
}

function place(t) {
  return `${t.camera ? `camera ${t.camera} · ` : ""}${t.grid ? `grid ${t.grid} · ` : ""}${t.location.lat.toFixed(5)}, ${t.location.lon.toFixed(5)}`;
}

async function act(ticket, action, reason = "") {
  try {
    phone.putTicket(await postJson(`/api/tickets/${encodeURIComponent(ticket.id)}/actions`, { action, reason }));
    phone.set({ notice: "" }, "notice");
  } catch (e) {
    phone.set({ notice: e.message }, "notice");
  }
}

export function Offer({ ticket }) {
  useTopics(phone, "gps");
  const [declining, setDeclining] = useState(false);
  const [reason, setReason] = useState(DECLINE_REASONS[0]);
  // It rings until he answers (or the offer is withdrawn).
  useEffect(() => {
    const ring = () => { beep(3, true); if (navigator.vibrate) navigator.vibrate([400, 200, 400]); };
    ring();
    const timer = setInterval(ring, RING_EVERY_MS);
    return () => { clearInterval(timer); if (navigator.vibrate) navigator.vibrate(0); };
  }, [ticket.id]);
  const img = snapshotOf(ticket);
  const far = away(ticket);
  return html`
    <section id="offer" class="card ringing" data-ticket=${ticket.id}>
      <h2>New case: ${label(ticket.category)}</h2>
      ${img ? html`<img class="snapshot" src=${img} alt="evidence"/>` : null}
      <p class="what">${ticket.description || ""}</p>
      <p class="where">${place(ticket)}</p>
      <p class="far" data-distance=${far ? Math.round(far.distance) : ""}>${far ? far.text : "distance: waiting for GPS"}</p>
      ${declining ? html`
        <label>Why not? <select id="decline-reason" value=${reason} onChange=${(e) => setReason(e.target.value)}>
          ${DECLINE_REASONS.map((r) => html`<option value=${r}>${r}</option>`)}</select></label>
        <div class="buttons">
          <button id="decline-confirm" class="danger" onClick=${() => act(ticket, "decline", reason)}>Decline</button>
          <button onClick=${() => setDeclining(false)}>Back</button>
        </div>` : html`
        <div class="buttons">
          <button id="accept-ticket" class="primary big" onClick=${() => act(ticket, "accept")}>Accept</button>
          <button id="decline-ticket" class="big" onClick=${() => setDeclining(true)}>Decline…</button>
        </div>`}
    </section>`;
}

function MiniMap({ ticket }) {
  const el = useRef(null);
  const layers = useRef(null);
  useEffect(() => {
    const map = L.map(el.current, { zoomControl: false, attributionControl: false });
    const target = [ticket.location.lat, ticket.location.lon];
    map.setView(target, 17);
    getJson("/api/map").then((bm) => {
      if (bm.tile_url) L.tileLayer(bm.tile_url, { maxZoom: bm.tile_max_zoom }).addTo(map);
      for (const layer of bm.layers) {
        fetch(layer.url, { credentials: "same-origin" }).then((r) => r.json())
          .then((doc) => L.geoJSON(doc, { style: { color: "#3a4656", weight: layer.kind === "roads" ? 5 : 1, fillOpacity: 0.5 }, interactive: false }).addTo(map).bringToBack())
          .catch(() => {});
      }
    }).catch(() => {});
    const incident = L.marker(target, { icon: L.divIcon({ className: "incident-marker", iconSize: null, html: "<span></span>" }) }).addTo(map);
    const me = L.marker(target, { icon: L.divIcon({ className: "me-marker", iconSize: null, html: "<span></span>" }) });
    const line = L.polyline([], { color: "#f0b400", dashArray: "6 6" }).addTo(map);
    layers.current = { map, me, line, incident, fitted: false };
    const off = phone.on("gps", () => draw());
    const draw = () => {
      const g = phone.gps;
      if (g.lat == null) return;
      me.setLatLng([g.lat, g.lon]).addTo(map);
      line.setLatLngs([[g.lat, g.lon], target]);
      if (!layers.current.fitted) { map.fitBounds(L.latLngBounds([[g.lat, g.lon], target]), { padding: [30, 30], maxZoom: 18 }); layers.current.fitted = true; }
    };
    draw();
    return () => { off(); map.remove(); };
  }, [ticket.id]);
  return html`<div id="ticket-map" ref=${el}></div>`;
}

// His camera as a viewfinder; a press takes the picture, uploaded as evidence.
function PhotoTaker({ ticket, onTaken }) {
  const video = useRef(null);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    let stream = null, closed = false;
    openMedia({ video: true, audio: false }).then((m) => {
      if (closed) { stopTracks(m.stream); return; }
      stream = m.stream;
      video.current.srcObject = stream;
    }).catch((e) => setError(`camera: ${e.message}`));
    return () => { closed = true; stopTracks(stream); };
  }, []);
  const take = async () => {
    const v = video.current;
    if (!v.videoWidth) return;
    setBusy(true);
    try {
      const canvas = document.createElement("canvas");
      canvas.width = v.videoWidth;
      canvas.height = v.videoHeight;
      canvas.getContext("2d").drawImage(v, 0, 0);
      const blob = await new Promise((ok) => canvas.toBlob(ok, "image/jpeg", 0.85));
      const r = await fetch(`/api/tickets/${encodeURIComponent(ticket.id)}/evidence`, {
        method: "POST", credentials: "same-origin", headers: { "Content-Type": "image/jpeg" }, body: blob,
      });
      const body = await r.json();
      if (!r.ok) throw new Error(body.message);
      onTaken(body);
    } catch (e) { setError(e.message); } finally { setBusy(false); }
  };
  return html`
    <div class="camera">
      <video ref=${video} autoplay playsinline muted></video>
      ${error ? html`<p class="error">${error}</p>` : null}
      <button id="take-photo" class="primary" disabled=${busy} onClick=${take}>Take photo</button>
    </div>`;
}

function Resolve({ ticket }) {
  const photos = ticket.evidence.filter((e) => e.includes("-photos/"));
  const [camera, setCamera] = useState(false);
  const [note, setNote] = useState("");
  return html`
    <div class="resolve">
      <h3>Resolve</h3>
      <div class="photos">
        ${photos.map((p) => html`<img key=${p} class="photo" src=${evidenceUrl(ticket.id, p)} alt="photo"/>`)}
      </div>
      ${camera
        ? html`<${PhotoTaker} ticket=${ticket} onTaken=${() => { setCamera(false); getJson(`/api/tickets/${encodeURIComponent(ticket.id)}`).then((t) => phone.putTicket(t)); }} />`
        : html`<button id="open-camera" onClick=${() => setCamera(true)}>${photos.length ? "Another photo" : "Photo of the scene"}</button>`}
      <textarea id="resolve-note" placeholder="What was done" value=${note} maxLength="1000" onInput=${(e) => setNote(e.target.value)}></textarea>
      <button id="resolve-ticket" class="primary big" disabled=${photos.length === 0}
              title=${photos.length ? "" : "a photo of the scene first"} onClick=${() => act(ticket, "resolve", note)}>Resolved</button>
    </div>`;
}

export function Working({ ticket }) {
  useTopics(phone, "gps", "reminders");
  useTick(5000);
  const far = away(ticket);
  const reminder = phone.reminders.get(ticket.id);
  const geo = `geo:${ticket.location.lat},${ticket.location.lon}?q=${ticket.location.lat},${ticket.location.lon}(${encodeURIComponent(ticket.id)})`;
  const reopened = ticket.state === "on_scene" && ticket.times.resolved ? ticket.note : null;
  return html`
    <section id="working" class="card" data-ticket=${ticket.id} data-state=${ticket.state}>
      <h2>${ticket.id}: ${label(ticket.category)} <span class=${`badge st-${ticket.state}`}>${STATE_LABELS[ticket.state]}</span></h2>
      ${reminder ? html`<p id="reminder" class="warn">Reminder: ${reminder.step} due soon (${age(now() - reminder.at)} ago)</p>` : null}
      ${reopened ? html`<p class="warn">Sent back: ${reopened}</p>` : null}
      <p class="where">${place(ticket)}</p>
      <p class="far" data-distance=${far ? Math.round(far.distance) : ""}>${far ? far.text : "distance: waiting for GPS"}</p>
      ${ticket.state !== "resolved" ? html`<${MiniMap} ticket=${ticket} />` : null}
      <div class="buttons">
        <a id="navigate" class="button" href=${geo}>Open in maps</a>
        ${ticket.state === "accepted" ? html`<button id="arrived" onClick=${() => act(ticket, "arrive", "by the officer")}>I have arrived</button>` : null}
      </div>
      ${ticket.state === "on_scene" ? html`<${Resolve} ticket=${ticket} />` : null}
      ${ticket.state === "resolved" ? html`<p class="dim">Resolved at ${clock(ticket.times.resolved)}; waiting for the centre (or the camera) to verify.</p>` : null}
    </section>`;
}

export function History() {
  useTopics(phone, "tickets");
  const list = phone.history();
  return html`
    <section id="history" class="card">
      <h2>My tickets</h2>
      ${list.length === 0 ? html`<p class="dim">None yet.</p>` : null}
      <ul>${list.map((t) => html`
        <li key=${t.id} data-ticket=${t.id} data-state=${t.state}>
          <b>${t.id}</b> ${label(t.category)} <span class=${`badge st-${t.state}`}>${STATE_LABELS[t.state]}</span>
          <small>${clock(t.updated_at)}</small></li>`)}</ul>
    </section>`;
}
