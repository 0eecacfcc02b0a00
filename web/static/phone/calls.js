// Calls with the command centre, either side calling: ring, accept, decline, hang up, an
// ICE restart after a network change, a call handed to another desk. A camera that fails
// leaves the call on sound alone; mute; what the other side sends is said on screen.
import { Call } from "../common.js";
import { html, label, useTopics } from "../ui.js";
import { phone } from "./state.js";

export class Calls {
  constructor(signal) {
    this.signal = signal;
    this.ringing = null;   // {call, from, ice_servers}
    this.call = null;      // the Call in progress
    this.handover = null;  // the new call's id while a desk hands this one to another
    this.peerMedia = null; // {audio, video} the other side sends
    this.remote = this.local = null;
  }

  set(changes) { Object.assign(this, changes); phone.emit("call"); }

  start(id, peer, iceServers) {
    const call = new Call(this.signal, id, peer, iceServers, { remote: this.remote, local: this.local });
    this.set({ ringing: null, call, peerMedia: null, muted: false });
    return call;
  }

  end(reason) {
    if (this.call) this.call.end();
    this.set({ call: null, ringing: null, peerMedia: null });
    if (reason) phone.set({ notice: `Call ended: ${label(reason)}` }, "notice");
  }

  accept() {
    const r = this.ringing;
    this.signal.send({ type: "call.accept", call: r.call });
    this.start(r.call, r.from, r.ice_servers);
  }

  decline() { this.signal.send({ type: "call.decline", call: this.ringing.call }); this.end(); }
  hangup() { this.call.hangup(); this.end(); }
  mute(muted) { this.call.setMuted(muted); this.set({ muted }); }

  async onMessage(m) {
    const mine = this.call && this.call.id === m.call;
    switch (m.type) {
      case "call.ring": this.set({ ringing: m }); break;
      case "call.ringing": this.start(m.call, m.to, m.ice_servers); phone.set({ notice: `Calling ${m.to}…` }, "notice"); break;
      case "call.accept":
        if (this.handover === m.call) {
          // The new desk took the call: the phone offers to it, as the inviting side.
          const old = this.call;
          this.handover = null;
          this.start(m.call, m.by, old.iceServers);
          old.end();
        }
        if (this.call && this.call.id === m.call) { await this.call.offer(); this.set({}); }
        break;
      case "call.transfer": this.handover = m.new_call; phone.set({ notice: `Handing over to ${m.to}…` }, "notice"); break;
      case "sdp": if (mine) { await this.call.onSdp(m.sdp); this.set({}); } break;
      case "call.record": if (mine) await this.call.record(m.stream); break;
      case "ice": if (mine) await this.call.onIce(m.candidate); break;
      case "call.media": if (mine) this.set({ peerMedia: { audio: m.audio, video: m.video } }); break;
      case "call.hangup":
        // A transferred call goes on with the new desk, which rings as a new call.
        if (mine && m.reason !== "transferred") this.end(m.reason);
        if (this.ringing && this.ringing.call === m.call) this.end(m.reason);
        break;
      case "call.decline": case "call.timeout": case "call.busy":
        if (!this.call || !m.call || mine) this.end(m.type.slice(5));
        break;
    }
  }
}

export function CallPanel({ calls }) {
  useTopics(phone, "call");
  const c = calls.call;
  const sending = c && c.sending;
  const peer = calls.peerMedia;
  return html`
    <section id="ring" class="card ringing" hidden=${!calls.ringing}>
      <p>Call from <strong id="ring-from">${calls.ringing ? (calls.ringing.transferred_by
        ? `${calls.ringing.from} (from ${calls.ringing.transferred_by})` : calls.ringing.from) : ""}</strong></p>
      <div class="buttons">
        <button id="accept" class="primary big" onClick=${() => calls.accept()}>Accept</button>
        <button id="decline" class="big" onClick=${() => calls.decline()}>Decline</button>
      </div>
    </section>
    <section id="call" class="card" hidden=${!c} data-audio-only=${sending && !sending.video ? "1" : "0"}>
      <p>In a call with <strong id="call-peer">${c ? c.peer : ""}</strong></p>
      <p id="call-media" class="warn">
        ${sending && !sending.video ? "Your camera is unavailable: audio only. " : ""}
        ${peer && !peer.video ? `${c.peer} sends audio only. ` : ""}${peer && !peer.audio ? `${c.peer} is muted.` : ""}</p>
      <video id="remote" autoplay playsinline ref=${(v) => { if (v) { calls.remote = v; if (c) c.remote = v; } }}></video>
      <video id="local" autoplay playsinline muted ref=${(v) => { if (v) { calls.local = v; if (c) c.local = v; } }}></video>
      <div class="buttons">
        <button id="mute" onClick=${() => calls.mute(!calls.muted)}>${calls.muted ? "Unmute" : "Mute"}</button>
        <button id="hangup" class="danger" onClick=${() => calls.hangup()}>Hang up</button>
      </div>
    </section>`;
}
