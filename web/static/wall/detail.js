// One ticket in full: its evidence (pictures, the clip playing in the page, the signed
// evidence package to download), the detection and the plate with the plate's other
// tickets (repeat offenders), the audit log as a timeline, the officer's track (drawn on the map, with
// distance, time to arrive and whether the deadline was met), the officers it could go
// to with their ETA, and the actions a dispatcher may take, each with a reason.
import { useEffect, useState } from "preact/hooks";
import { getJson, postJson } from "../common.js";
import { store } from "./store.js";
import { clock, duration, evidenceUrl, html, label, STATE_LABELS, useTopics } from "../ui.js";

// What a dispatcher does from the wall; accept, arrive and resolve are the officer's.
const DESK_ACTIONS = ["verify", "reopen", "close", "reassign", "suspend", "resume", "reject", "cancel"];
const NEEDS_REASON = new Set(["reopen", "reassign", "suspend", "reject", "cancel"]);
const WAITING = new Set(["new", "reassigned"]);

async function loadTicket(id) {
  const ticket = await getJson(`/api/tickets/${encodeURIComponent(id)}`);
  const [evidence, track, candidates, plate] = await Promise.all([
    getJson(`/api/tickets/${encodeURIComponent(id)}/evidence`),
    ticket.assignee || ticket.times.dispatched ? getJson(`/api/tickets/${encodeURIComponent(id)}/track`) : null,
    WAITING.has(ticket.state) ? getJson(`/api/tickets/${encodeURIComponent(id)}/candidates`) : null,
    ticket.plate ? getJson(`/api/plates/${encodeURIComponent(ticket.plate.text)}/tickets?limit=20`) : null,
  ]);
  return { ticket, evidence: evidence.evidence, track, candidates, plate };
}

// The plate as read, and the plate's other tickets: a repeat offender shows at once.
function Plate({ plate, id, found }) {
  if (!plate) return null;
  const others = (found?.tickets || []).filter((t) => t.id !== id);
  return html`
    <p class="plate" data-plate=${plate.text}>Plate <b class="plate-text">${plate.text}</b>
      <span class="dim"> read ${Math.round(plate.confidence * 100)}% sure</span>
      ${others.length ? html` · <span class="repeat" data-count=${others.length}>${others.length} other
        ticket${others.length > 1 ? "s" : ""}:</span>
        ${others.map((o) => html` <a key=${o.id} href="#" data-other=${o.id}
          onClick=${(e) => { e.preventDefault(); store.select(o.id); }}>${o.id}</a>`)}` : null}
    </p>`;
}

function Evidence({ items }) {
  const pictures = items.filter((e) => e.url && /\.(jpe?g|png)$/i.test(e.name));
  const clips = items.filter((e) => e.url && /\.mp4$/i.test(e.name));
  const [big, setBig] = useState(null);
  return html`
    <div class="evidence">
      ${pictures.map((e) => html`
        <figure key=${e.name} data-evidence=${e.name}>
          <img src=${e.url} alt=${e.name} onClick=${() => setBig(big === e.url ? null : e.url)}/>
          <figcaption>${e.name.split("/").pop()}</figcaption>
        </figure>`)}
      ${clips.map((e) => html`
        <figure key=${e.name} class="clip" data-evidence=${e.name}>
          <video src=${e.url} controls muted playsInline preload="auto"></video>
          <figcaption>${e.name.split("/").pop()}</figcaption>
        </figure>`)}
      ${pictures.length + clips.length === 0 ? html`<p class="dim">No evidence files.</p>` : null}
      ${big ? html`<div class="lightbox" onClick=${() => setBig(null)}><img src=${big} alt="evidence"/></div>` : null}
    </div>`;
}

function Timeline({ log }) {
  return html`
    <ol class="timeline">
      ${log.map((e, i) => html`
        <li key=${i} data-action=${e.action}>
          <time>${clock(e.at)}</time>
          <b>${label(e.action)}</b>
          ${e.from !== e.to && e.to ? html` → ${STATE_LABELS[e.to] || e.to}` : null}
          <span class="who">${e.who}${e.assignee && e.assignee !== e.who ? ` (${e.assignee})` : ""}</span>
          ${e.why ? html`<div class="why">${e.why}</div>` : null}
        </li>`)}
    </ol>`;
}

function Track({ track }) {
  const p = track?.properties;
  if (!p || !p.officer) return null;
  return html`
    <div class="track" data-officer=${p.officer}>
      <h3>Patrol track · ${p.officer}</h3>
      <dl>
        <dt>distance</dt><dd data-field="distance">${Math.round(p.distance_m)} m</dd>
        <dt>time to arrive</dt><dd data-field="arrive">${duration(p.time_to_arrive_s)}</dd>
        <dt>deadline</dt><dd data-field="deadline">${p.arrive_deadline_met == null ? "—" : p.arrive_deadline_met ? "met" : "missed"}</dd>
        <dt>fixes</dt><dd>${p.times.length}</dd>
      </dl>
    </div>`;
}

function Candidates({ data, onDispatch }) {
  if (!data) return null;
  return html`
    <div class="candidates">
      <h3>Send an officer</h3>
      ${data.candidates.length === 0 ? html`<p class="dim">${data.reason}</p>` : html`
        <table>
          <tr><th>officer</th><th>by road</th><th>ETA</th><th></th></tr>
          ${data.candidates.map((c) => html`
            <tr key=${c.officer} data-candidate=${c.officer} title=${c.why}>
              <td>${c.officer} <small class="dim">${c.mode}</small></td><td>${Math.round(c.road_m)} m</td>
              <td>${duration(c.eta_s)}</td>
              <td><button class="dispatch primary" onClick=${() => onDispatch(c.officer)}>Dispatch</button></td>
            </tr>`)}
        </table>`}
    </div>`;
}

export function Detail() {
  useTopics(store, "selected");
  const id = store.selected;
  const [data, setData] = useState(null);
  const [error, setError] = useState("");
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const live = id && store.tickets.get(id);

  // Loaded on selection and again whenever the ticket changes.
  useEffect(() => {
    if (!id) { setData(null); return; }
    let current = true;
    loadTicket(id).then((d) => {
      if (!current) return;
      setData(d);
      setError("");
      store.setTrack(d.track && d.track.geometry ? d.track : null);
    }).catch((e) => current && setError(e.message));
    return () => { current = false; };
  }, [id, live && live.updated_at, live && live.evidence.length]);

  if (!id) return null;
  const t = data?.ticket;
  const act = async (action, officer) => {
    if (NEEDS_REASON.has(action) && !reason.trim()) { setError(`${action}: give a reason`); return; }
    setBusy(true);
    try {
      const body = { action, reason: reason.trim() };
      if (officer) body.officer = officer;
      store.putTicket(await postJson(`/api/tickets/${encodeURIComponent(id)}/actions`, body));
      setReason("");
      setError("");
    } catch (e) { setError(e.message); } finally { setBusy(false); }
  };
  return html`
    <aside id="detail" data-ticket=${id} data-state=${t?.state}>
      <header>
        <h2>${id} ${t ? html`<span class=${`badge st-${t.state}`}>${STATE_LABELS[t.state]}</span>` : null}
          ${t?.overdue ? html`<span class="badge overdue">overdue</span>` : null}</h2>
        <button class="close" title="Close" onClick=${() => store.select(null)}>✕</button>
      </header>
      ${error ? html`<p class="error" role="alert">${error}</p>` : null}
      ${!t ? html`<p class="dim">Loading…</p>` : html`
        <p class="summary">${label(t.category)} · ${t.priority} · ${t.grid || "no grid"}
          ${t.camera ? html` · camera <a href="#" onClick=${(e) => { e.preventDefault(); store.openVideo(t.camera); }}>${t.camera}</a>` : null}
          · ${t.assignee ? `assigned to ${t.assignee}` : "unassigned"}</p>
        ${t.description ? html`<p>${t.description}</p>` : null}
        ${t.note ? html`<p class="note">${t.note}</p>` : null}
        ${t.detection ? html`<p class="detection" data-box=${(t.detection.box || []).join(",")}>
          Detected: ${t.detection.label || "object"} in zone <b>${t.detection.zone}</b> (${label(t.detection.kind)}),
          box ${(t.detection.box || []).map((v) => Math.round(v)).join(", ")}</p>` : null}
        <${Plate} plate=${t.plate} id=${id} found=${data.plate} />
        <${Evidence} items=${data.evidence} />
        <p class="package"><a href=${`/api/tickets/${encodeURIComponent(id)}/evidence.zip`} download
          title="pictures with time and place, the clip, the plate, a signed manifest">Evidence package (signed .zip)</a></p>
        <${Candidates} data=${data.candidates} onDispatch=${(officer) => act("dispatch", officer)} />
        <${Track} track=${data.track} />
        <div class="actions">
          <input name="reason" placeholder="reason (for the audit log)" value=${reason}
                 onInput=${(e) => setReason(e.target.value)}/>
          ${t.actions.filter((a) => DESK_ACTIONS.includes(a)).map((a) => html`
            <button key=${a} data-action=${a} disabled=${busy} onClick=${() => act(a)}>${label(a)}</button>`)}
        </div>
        <h3>Audit log</h3>
        <${Timeline} log=${t.log} />`}
    </aside>`;
}
