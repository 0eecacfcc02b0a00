"use strict";
// The dispatcher's desk on the wall: who is online, calls with officers (either side may
// call), an officer's phone camera pulled onto the wall, and a call handed to another desk.

class Desk {
  constructor() {
    this.people = new Map();  // user -> presence
    this.ringing = null;
    this.call = null;
    this.signal = new Signal((m) => this.onMessage(m).catch((err) => this.notice(err.message)));
    $("#people").hidden = false;
    $("#call-panel").onclick = (e) => this.onClick(e);
  }
  close() { this.signal.close(); if (this.call) this.call.end(); $("#people").hidden = true; }
  notice(text) { $("#desk-notice").textContent = text; }

  render() {
    const list = $("#officers");
    list.replaceChildren();
    for (const [user, p] of this.people) {
      if (p.role !== "officer") continue;
      const li = document.createElement("li");
      li.dataset.user = user;
      li.dataset.status = p.status;
      const name = document.createElement("span");
      name.textContent = `${user} · ${p.status.replace("_", " ")}`;
      const call = document.createElement("button");
      call.textContent = "Call";
      call.className = "call";
      call.disabled = p.status !== "available" || this.call !== null;
      call.onclick = () => this.signal.send({ type: "call.invite", to: user });
      const cam = document.createElement("button");
      cam.textContent = "Camera";
      cam.className = "camera";
      cam.onclick = () => this.signal.send({ type: "publish.request", to: user });
      li.append(name, call, cam);
      list.append(li);
    }
    const desks = [...this.people.values()].filter(
      (p) => p.role !== "officer" && p.status === "available");
    $("#handover").replaceChildren(...desks.map((p) => new Option(p.user, p.user)));
  }

  onPresence(p) {
    if (p.status === "offline") this.people.delete(p.user); else this.people.set(p.user, p);
    this.render();
  }

  pull(stream, officer) {
    if (players.has(stream)) return;
    const stop = () => {
      this.signal.send({ type: "publish.request", to: officer, stop: true });
      players.get(stream).close();
      players.get(stream).tile.remove();
      players.delete(stream);
    };
    const player = new Player({ id: stream, name: `${officer} (phone)` }, stop);
    players.set(stream, player);
    $("#wall").prepend(player.tile);
  }

  startCall(id, peer, iceServers) {
    this.ringing = null;
    this.call = new Call(this.signal, id, peer, iceServers, { remote: $("#call-remote"), local: null });
    $("#call-peer").textContent = peer;
    $("#call-panel").dataset.state = "call";
    this.render();
  }

  endCall(reason) {
    if (this.call) this.call.end();
    this.call = this.ringing = null;
    $("#call-panel").dataset.state = "idle";
    if (reason) this.notice(`Call ended: ${reason.replace("_", " ")}`);
    this.render();
  }

  onClick(e) {
    const id = e.target.id;
    if (id === "call-accept" && this.ringing) {
      const r = this.ringing;
      this.signal.send({ type: "call.accept", call: r.call });
      this.startCall(r.call, r.from, r.ice_servers);
    } else if (id === "call-decline" && this.ringing) {
      this.signal.send({ type: "call.decline", call: this.ringing.call });
      this.endCall();
    } else if (id === "call-hangup" && this.call) {
      this.call.hangup();
      this.endCall();
    } else if (id === "call-handover" && this.call && $("#handover").value) {
      this.signal.send({ type: "call.transfer", call: this.call.id, to: $("#handover").value });
    }
  }

  async onMessage(m) {
    const mine = this.call && this.call.id === m.call;
    switch (m.type) {
      case "presence.list": for (const p of m.users) this.onPresence(p); break;
      case "presence": this.onPresence(m); break;
      case "call.ring":
        this.ringing = m;
        $("#ring-from").textContent = m.transferred_by ? `${m.from} (from ${m.transferred_by})` : m.from;
        $("#call-panel").dataset.state = "ring";
        break;
      case "call.ringing": this.startCall(m.call, m.to, m.ice_servers); this.notice(`Calling ${m.to}…`); break;
      case "call.accept": if (mine) await this.call.offer(); break;
      case "sdp": if (mine) await this.call.onSdp(m.sdp); break;
      case "call.record": if (mine) await this.call.record(m.stream); break;
      case "ice": if (mine) await this.call.onIce(m.candidate); break;
      case "call.transfer": this.notice(`Handing over to ${m.to}…`); break;
      case "call.hangup":
        if (mine || (this.ringing && this.ringing.call === m.call)) this.endCall(m.reason);
        break;
      case "call.decline": case "call.timeout": case "call.busy":
        if (mine || !m.call) this.endCall(m.type.slice(5));
        break;
      case "publish.requested":
        if (m.stop) break;
        this.pull(m.stream, m.to);
        break;
      case "error": this.notice(m.message); break;
    }
  }
}

function startDesk() { if (!desk) desk = new Desk(); }
