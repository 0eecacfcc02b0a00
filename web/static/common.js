// What the wall and the officer's phone share: the API, sign-in, the /ws signal channel,
// a WHIP publisher and a point-to-point call.

export const $ = (sel) => document.querySelector(sel);

// fetch with the session cookie; a 401 anywhere means the session is over.
export async function api(path, options = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...options });
  if (r.status === 401) { document.dispatchEvent(new Event("signed-out")); throw new Error("signed out"); }
  return r;
}

// JSON from the API, or an Error carrying the server's message.
export async function getJson(path, options = {}) {
  const r = await api(path, options);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(body.message || `${r.status} ${r.statusText}`), { status: r.status });
  return body;
}

export function postJson(path, data, method = "POST") {
  return getJson(path, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });
}

export function waitGathering(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 2000);  // host candidates come at once; do not hang on a slow one
  });
}

// The login form: calls onSignedIn once the session cookie is set.
export function bindLogin(form, errorBox, onSignedIn) {
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const r = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: data.get("username"), password: data.get("password") }),
    });
    if (!r.ok) { errorBox.textContent = (await r.json()).message; return; }
    errorBox.textContent = "";
    form.reset();
    onSignedIn();
  });
}

// /ws with a device id that survives reloads and reconnects (a call survives a dropped
// socket for calls.reconnect_s), reconnecting after a second. `onState(up)` hears the
// socket open and close; every event that carries an inbox id is acknowledged once the
// handler has taken it, so a reload never replays it.
export class Signal {
  constructor(onMessage, onState = () => {}) {
    this.device = localStorage.getItem("gw-device");
    if (!this.device) {
      this.device = Array.from(crypto.getRandomValues(new Uint8Array(8)),
        (b) => b.toString(16).padStart(2, "0")).join("");
      localStorage.setItem("gw-device", this.device);
    }
    this.onMessage = onMessage;
    this.onState = onState;
    this.closed = false;
    this.connect();
  }
  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.ws = new WebSocket(`${scheme}://${location.host}/ws?device=${this.device}`);
    this.ws.onopen = () => this.onState(true);
    this.ws.onmessage = async (e) => {
      const m = JSON.parse(e.data);
      try { await this.onMessage(m); } finally { if (m.id) this.send({ type: "ack", id: m.id }); }
    };
    this.ws.onclose = () => {
      if (this.closed) return;
      this.onState(false);
      setTimeout(() => this.connect(), 1000);
    };
  }
  send(message) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }
  close() { this.closed = true; this.ws.close(); }
}

// Every capture track this page has opened, so that a page can show none is left live.
export const captures = [];

// The camera and microphone. A call whose camera fails goes on with sound alone (and one
// whose microphone fails, with the picture alone): {stream, audio, video}.
export async function openMedia({ video = true, audio = true } = {}) {
  const attempts = [{ video, audio }];
  if (video && audio) attempts.push({ video: false, audio: true }, { video: true, audio: false });
  let failure;
  for (const want of attempts) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia(want);
      captures.push(...stream.getTracks());
      return { stream, audio: stream.getAudioTracks().length > 0, video: stream.getVideoTracks().length > 0 };
    } catch (err) { failure = err; }
  }
  throw failure;
}

export function stopTracks(stream) {
  if (stream) for (const t of stream.getTracks()) t.stop();
}

// The phone's camera to the server over WHIP (for the wall, the recorder, the detectors).
// stop() wins over a start() still under way: whatever that start opens is closed.
export class WhipPublisher {
  constructor() { this.run = 0; }

  // `media`: a camera already open (a recorded call's); its tracks stay its owner's.
  async start(stream, media = null) {
    const run = ++this.run;
    const own = media === null;
    const opened = media || (await openMedia({ video: true, audio: false })).stream;
    if (run !== this.run) { if (own) stopTracks(opened); throw new Error("stopped"); }
    Object.assign(this, { own, media: opened, pc: new RTCPeerConnection({ iceServers: [] }) });
    for (const track of opened.getTracks()) this.pc.addTransceiver(track, { direction: "sendonly" });
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await waitGathering(this.pc);
    if (run !== this.run) throw new Error("stopped");
    const r = await api(`/whip/${encodeURIComponent(stream)}`, {
      method: "POST", headers: { "Content-Type": "application/sdp" }, body: this.pc.localDescription.sdp,
    });
    if (r.status !== 201) { const err = (await r.json()).message; this.stop(); throw new Error(err); }
    this.resource = r.headers.get("Location");
    if (run !== this.run) { this.stop(); throw new Error("stopped"); }
    await this.pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
  }

  stop() {
    this.run++;
    if (this.resource) api(this.resource, { method: "DELETE" }).catch(() => {});
    this.resource = null;
    if (this.pc) this.pc.close();
    if (this.own) stopTracks(this.media);
    this.pc = this.media = null;
  }
}

// One side of a call: the inviting side offers once accepted; either side answers any
// offer (an ICE restart after a network change is just a new offer).
export class Call {
  constructor(signal, id, peer, iceServers, { remote, local }) {
    Object.assign(this, { signal, id, peer, remote, local, offerer: false });
    this.iceServers = iceServers || [];
  }
  open() {
    this.opening = this.opening || this._open();  // offer, answer and record share one
    return this.opening;
  }
  async _open() {
    const opened = await openMedia({ video: true, audio: true });
    if (this.ended) { stopTracks(opened.stream); throw new Error("the call has ended"); }
    this.media = opened.stream;
    this.sending = { audio: opened.audio, video: opened.video, muted: false };
    this.tellMedia();
    if (this.local) this.local.srcObject = this.media;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    for (const track of this.media.getTracks()) pc.addTrack(track, this.media);
    pc.ontrack = (e) => { this.remote.srcObject = e.streams[0] || new MediaStream([e.track]); };
    pc.onicecandidate = (e) => this.signal.send({
      type: "ice", call: this.id, candidate: e.candidate ? e.candidate.toJSON() : null,
    });
    pc.oniceconnectionstatechange = () => {
      if (this.offerer && pc.iceConnectionState === "failed") this.offer(true);
    };
  }
  async offer(restart = false) {
    this.offerer = true;
    await this.open();
    if (restart) this.pc.restartIce();
    await this.pc.setLocalDescription(await this.pc.createOffer({ iceRestart: restart }));
    await waitGathering(this.pc);
    this.signal.send({ type: "sdp", call: this.id, sdp: this.pc.localDescription.toJSON() });
  }
  async onSdp(sdp) {
    await this.open();
    await this.pc.setRemoteDescription(sdp);
    if (sdp.type === "offer") {
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      await waitGathering(this.pc);
      this.signal.send({ type: "sdp", call: this.id, sdp: this.pc.localDescription.toJSON() });
    }
  }
  async onIce(candidate) {
    if (this.pc && this.pc.remoteDescription) await this.pc.addIceCandidate(candidate).catch(() => {});
  }
  // A recorded call: this side's camera also goes to the server, which records it.
  async record(stream) {
    await this.open();
    this.recording = new WhipPublisher();
    await this.recording.start(stream, this.media);
  }
  // The other side is told what it gets: audio only when this camera failed, muted.
  tellMedia() {
    const { audio, video, muted } = this.sending;
    this.signal.send({ type: "call.media", call: this.id, audio: audio && !muted, video });
  }
  setMuted(muted) {
    if (!this.media) return;
    for (const t of this.media.getAudioTracks()) t.enabled = !muted;
    this.sending.muted = muted;
    this.tellMedia();
  }
  hangup() { this.signal.send({ type: "call.hangup", call: this.id }); this.end(); }
  end() {
    this.ended = true;
    if (this.recording) this.recording.stop();
    if (this.pc) this.pc.close();
    stopTracks(this.media);
    this.pc = this.media = null;
  }
}
