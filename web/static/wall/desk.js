// The dispatcher's desk: the officers (online or not, with their dispatch status), calls
// with them either way, an officer's phone camera pulled onto the wall, and a call handed
// to another desk.
import { Call } from "../common.js";
import { store } from "./store.js";
import { html, label, useTopics } from "../ui.js";

export class Desk {
  constructor(signal) {
    this.signal = signal;
    this.ringing = null;  // a call.ring waiting for an answer
    this.call = null;     // the Call in progress
    this.notice = "";
    this.remote = null;   // the <video> that shows the officer
    this.peerMedia = null; // what the officer sends in the call: {audio, video}
  }

  set(changes) { Object.assign(this, changes); store.emit("desk"); }

  close() { if (this.call) this.call.end(); this.call = this.ringing = null; }

  onPresence(p) {
    if (p.status === "offline") store.presence.delete(p.user); else store.presence.set(p.user, p);
    store.emit("desk");
  }

  // The officer's phone camera as a tile (the phone publishes once asked).
  pull(stream) {
    store.addStream(stream);
    store.expectStream(stream);
  }

  stopStream(stream) {
    const officer = [...store.presence.values()].find((p) => `phone-${p.user.toLowerCase()}` === stream);
    if (officer) this.signal.send({ type: "publish.request", to: officer.user, stop: true });
    store.setLayout({ streams: store.layout.streams.filter((s) => s !== stream) });
  }

  startCall(id, peer, iceServers) {
    const call = new Call(this.signal, id, peer, iceServers, { remote: this.remote, local: null });
    this.set({ ringing: null, call, notice: "", peerMedia: null });
  }

  endCall(reason) {
    if (this.call) this.call.end();
    this.set({ call: null, ringing: null, peerMedia: null,
      notice: reason ? `Call ended: ${label(reason)}` : this.notice });
  }

  accept() {
    const r = this.ringing;
    this.signal.send({ type: "call.accept", call: r.call });
    this.startCall(r.call, r.from, r.ice_servers);
  }

  decline() {
    this.signal.send({ type: "call.decline", call: this.ringing.call });
    this.endCall();
  }

  hangup() { this.call.hangup(); this.endCall(); }

  handover(to) { this.signal.send({ type: "call.transfer", call: this.call.id, to }); }

  async onMessage(m) {
    const mine = this.call && this.call.id === m.call;
    switch (m.type) {
      case "presence.list": store.presence.clear(); for (const p of m.users) this.onPresence(p); break;
      case "presence": this.onPresence(m); break;
      case "call.ring": this.set({ ringing: m }); break;
      case "call.ringing": this.startCall(m.call, m.to, m.ice_servers); this.set({ notice: `Calling ${m.to}…` }); break;
      case "call.accept": if (mine) await this.call.offer(); break;
      case "sdp": if (mine) await this.call.onSdp(m.sdp); break;
      case "call.record": if (mine) await this.call.record(m.stream); break;
      case "ice": if (mine) await this.call.onIce(m.candidate); break;
      case "call.media": if (mine) this.set({ peerMedia: { audio: m.audio, video: m.video } }); break;
      case "call.transfer": this.set({ notice: `Handing over to ${m.to}…` }); break;
      case "call.hangup":
        if (mine || (this.ringing && this.ringing.call === m.call)) this.endCall(m.reason);
        break;
      case "call.decline": case "call.timeout": case "call.busy":
        if (mine || !m.call) this.endCall(m.type.slice(5));
        break;
      case "publish.requested":
        if (!m.stop) { this.pull(m.stream); this.set({ notice: `Asked ${m.to} for his camera…` }); }
        break;
      case "publish.answer":
        if (m.accepted) { this.pull(m.stream); this.set({ notice: `${m.officer} shares his camera` }); break; }
        store.setLayout({ streams: store.layout.streams.filter((s) => s !== m.stream) });
        this.set({ notice: `${m.officer}: camera not shared — ${m.reason || "refused"}` });
        break;
      case "error": if (m.request) this.set({ notice: m.message }); break;
    }
  }
}

export let desk = null;
export function startDesk(signal) { desk = new Desk(signal); return desk; }

function OfficerRow({ id, o, p }) {
  const presence = p ? p.status : "offline";
  const duty = o ? store.officerStatus(o) : null;
  return html`
    <li data-user=${id} data-status=${presence} data-duty=${duty}>
      <i class=${`dot st-${duty || "none"}`}></i>
      <span class="name" title=${o?.tickets?.length ? `on ${o.tickets.join(", ")}` : ""}>
        ${o && o.name ? `${o.name} (${id})` : id}
        <small>${label(duty || "no fixes")} · ${label(presence)}${o?.tickets?.length ? ` · ${o.tickets.join(", ")}` : ""}</small>
      </span>
      <button class="call" disabled=${presence !== "available" || desk.call !== null}
              onClick=${() => desk.signal.send({ type: "call.invite", to: id })}>Call</button>
      <button class="camera" disabled=${!p}
              onClick=${() => desk.signal.send({ type: "publish.request", to: id })}>Camera</button>
    </li>`;
}

export function DeskPanel() {
  useTopics(store, "desk", "officers");
  if (!desk) return null;
  const officers = new Map([...store.officers.values()].map((o) => [o.id, o]));
  const online = [...store.presence.values()].filter((p) => p.role === "officer");
  const ids = [...new Set([...online.map((p) => p.user), ...officers.keys()])].sort();
  const desks = [...store.presence.values()].filter((p) => p.role !== "officer" && p.status === "available"
    && p.user !== store.me.username);
  const state = desk.ringing ? "ring" : desk.call ? "call" : "idle";
  return html`
    <section id="people">
      <h2>Officers <small>${online.length} online</small></h2>
      <ul id="officers">
        ${ids.map((id) => html`<${OfficerRow} key=${id} id=${id} o=${officers.get(id)} p=${store.presence.get(id)} />`)}
      </ul>
      <section id="call-panel" data-state=${state}>
        ${desk.ringing ? html`<div class="ring">Call from <strong id="ring-from">${desk.ringing.transferred_by
          ? `${desk.ringing.from} (from ${desk.ringing.transferred_by})` : desk.ringing.from}</strong>
          <button id="call-accept" class="primary" onClick=${() => desk.accept()}>Accept</button>
          <button id="call-decline" onClick=${() => desk.decline()}>Decline</button></div>` : null}
        <div class="incall" hidden=${state !== "call"}>With <strong id="call-peer">${desk.call?.peer}</strong>
          <span id="call-media" class="warn">${desk.peerMedia && !desk.peerMedia.video ? " · audio only" : ""}${desk.peerMedia && !desk.peerMedia.audio ? " · muted" : ""}</span>
          <video id="call-remote" autoplay playsinline ref=${(v) => { if (v) { desk.remote = v; if (desk.call) desk.call.remote = v; } }}></video>
          <button id="call-hangup" onClick=${() => desk.hangup()}>Hang up</button>
          <select id="handover">${desks.map((p) => html`<option value=${p.user}>${p.user}</option>`)}</select>
          <button id="call-handover" onClick=${(e) => desk.handover(e.target.previousElementSibling.value)}>Hand over</button>
        </div>
      </section>
      <p id="desk-notice" role="status">${desk.notice}</p>
    </section>`;
}
