"use strict";
// The command wall: sign in, then one WHEP player per camera.

const players = new Map();
let desk = null;  // the dispatcher's desk (desk.js), once signed in as one

function showLogin() {
  if (desk) { desk.close(); desk = null; }
  for (const p of players.values()) p.close();
  players.clear();
  $("#wall").replaceChildren();
  $("#wall").hidden = true;
  $("#people").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
}

// One camera tile: a WHEP session that reconnects when it fails.
class Player {
  constructor(camera, onStop = null) {
    this.id = camera.id;
    this.tile = document.createElement("div");
    this.tile.className = "tile";
    this.tile.dataset.camera = camera.id;
    this.video = document.createElement("video");
    Object.assign(this.video, { muted: true, autoplay: true, playsInline: true });
    const label = document.createElement("div");
    label.className = "label";
    label.innerHTML = '<span class="name"></span><span class="state"></span>';
    label.querySelector(".name").textContent = camera.name || camera.id;
    this.tile.append(this.video, label);
    if (onStop) {  // a pulled phone camera: the dispatcher lets it go
      const stop = document.createElement("button");
      stop.className = "stop";
      stop.textContent = "✕";
      stop.onclick = onStop;
      label.append(stop);
    }
    this.video.addEventListener("playing", () => this.setState("playing"));
    this.closed = false;
    this.connect();
  }
  setState(state, detail = "") {
    this.tile.dataset.state = state;
    const label = this.tile.querySelector(".state");
    label.textContent = state;
    label.title = detail;
  }
  // The server's view of the camera, polled: says why a tile is dark.
  showCamera(camera) {
    const st = camera.state;
    if (st.online || st.consumers === 0) return;
    if (this.tile.dataset.state !== "playing" || this.video.paused) {
      this.setState("offline", st.last_error || "no picture from the camera");
    }
  }
  async connect() {
    this.setState("connecting");
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.ontrack = (e) => { this.video.srcObject = new MediaStream([e.track]); };
    pc.onconnectionstatechange = () => {
      if (["failed", "disconnected"].includes(pc.connectionState)) this.retry();
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await waitGathering(pc);
      const r = await api(`/whep/${encodeURIComponent(this.id)}`, {
        method: "POST",
        headers: { "Content-Type": "application/sdp" },
        body: pc.localDescription.sdp,
      });
      if (r.status !== 201) throw new Error((await r.json()).message);
      this.resource = r.headers.get("Location");
      await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
    } catch (err) {
      this.setState("error");
      this.retry();
    }
  }
  retry() {
    if (this.closed || this.retrying) return;
    this.retrying = true;
    this.hangup();
    setTimeout(() => { this.retrying = false; if (!this.closed) this.connect(); }, 2000);
  }
  hangup() {
    if (this.resource) fetch(this.resource, { method: "DELETE", credentials: "same-origin" });
    this.resource = null;
    if (this.pc) this.pc.close();
  }
  close() { this.closed = true; this.hangup(); }
}

async function showWall() {
  const me = await (await api("/api/me")).json();
  $("#who").textContent = `${me.username} (${me.role})`;
  $("#login").hidden = true;
  $("#logout").hidden = false;
  $("#wall").hidden = false;
  await refreshCameras();
  if (["admin", "dispatcher"].includes(me.role)) startDesk();
}

async function refreshCameras() {
  const { cameras } = await (await api("/api/cameras")).json();
  for (const camera of cameras) {
    if (!players.has(camera.id)) {
      const player = new Player(camera);
      players.set(camera.id, player);
      $("#wall").append(player.tile);
    }
    players.get(camera.id).showCamera(camera);
  }
}

setInterval(() => { if (!$("#wall").hidden) refreshCameras().catch(() => {}); }, 3000);

document.addEventListener("signed-out", showLogin);
bindLogin($("#login"), $("#login-error"), showWall);

$("#logout").addEventListener("click", async () => {
  await api("/api/logout", { method: "POST" });
  showLogin();
});

showWall().catch(() => showLogin());
