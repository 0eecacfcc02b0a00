// One tile's WHEP session, and the truth about its picture: it says "no signal" when the
// video element's own frame counter stops, "offline" with the server's reason, and
// "refused" (once, no retry loop) when the server will not serve the stream.
import { api, waitGathering } from "../common.js";

const NO_SIGNAL_S = 3;     // no new frame for this long: the picture is frozen
const RETRY_MIN_S = 2;     // a failed session is tried again after this, doubling ...
const RETRY_MAX_S = 30;    // ... up to this
const REFUSED = new Set([400, 401, 403, 404, 409, 413, 415]);  // asking again changes nothing

export class Player {
  // onState(state, detail) hears every change: connecting, playing, nosignal, offline,
  // refused, retrying.
  constructor(id, onState) {
    this.id = id;
    this.onState = onState;
    this.video = document.createElement("video");
    Object.assign(this.video, { muted: true, autoplay: true, playsInline: true });
    this.state = null;
    this.closed = false;
    this.backoff = RETRY_MIN_S;
    this.frames = 0;
    this.lastFrame = performance.now();
    this.watchdog = setInterval(() => this.watch(), 1000);
    this.connect();
  }

  set(state, detail = "") {
    if (state === this.state && detail === this.detail) return;
    this.state = state;
    this.detail = detail;
    this.onState(state, detail);
  }

  // Frames counted by the video element itself: what the dispatcher really sees.
  watch() {
    const q = this.video.getVideoPlaybackQuality ? this.video.getVideoPlaybackQuality() : null;
    const frames = q ? q.totalVideoFrames : 0;
    const t = performance.now();
    if (frames > this.frames) {
      this.frames = frames;
      this.lastFrame = t;
      if (["connecting", "nosignal", "offline"].includes(this.state)) this.set("playing");
    } else if (this.state === "playing" && t - this.lastFrame > NO_SIGNAL_S * 1000) {
      this.set("nosignal", `no picture for ${Math.round((t - this.lastFrame) / 1000)} s`);
    }
  }

  // The server's view of the source (polled by the wall): why a tile is dark. Until the
  // server has a reason, it is still trying: the tile stays "connecting".
  showSource(online, reason) {
    if (online || !reason || this.state === "playing" || this.state === "refused") return;
    this.set("offline", reason);
  }

  async connect() {
    if (this.closed) return;
    this.set("connecting");
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    // Sound too (a body camera, a phone): the tile stays muted until the dispatcher
    // listens to it (Player.listen), one tile at a time.
    pc.addTransceiver("audio", { direction: "recvonly" });
    const media = new MediaStream();
    pc.ontrack = (e) => {
      media.addTrack(e.track);
      if (this.video.srcObject !== media) this.video.srcObject = media;
    };
    pc.onconnectionstatechange = () => {
      if (pc === this.pc && ["failed", "closed"].includes(pc.connectionState) && !this.closed) {
        this.retry("connection lost");
      }
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await waitGathering(pc);
      const r = await api(`/whep/${encodeURIComponent(this.id)}`, {
        method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp,
      });
      if (r.status !== 201) {
        const message = (await r.json().catch(() => ({}))).message || `HTTP ${r.status}`;
        if (REFUSED.has(r.status)) { this.refuse(message); return; }
        throw new Error(message);
      }
      this.resource = r.headers.get("Location");
      if (this.closed) { await this.hangup(); return; }
      await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
      this.backoff = RETRY_MIN_S;
    } catch (err) {
      if (!this.closed) this.retry(err.message);
    }
  }

  refuse(message) {
    this.hangup();
    this.set("refused", message);
  }

  retry(why) {
    if (this.closed || this.timer) return;
    this.hangup();
    this.set("retrying", `${why}; again in ${this.backoff} s`);
    this.timer = setTimeout(() => { this.timer = null; this.connect(); }, this.backoff * 1000);
    this.backoff = Math.min(RETRY_MAX_S, this.backoff * 2);
  }

  // Unmute (true) or mute this tile's sound. Unmuting is a click: browsers let a page
  // play sound only after a gesture.
  listen(on) {
    this.video.muted = !on;
    if (on) this.video.play().catch(() => {});
  }

  get listening() { return !this.video.muted; }

  // Frames decoded so far, from the peer connection's own statistics.
  async framesDecoded() {
    if (!this.pc) return 0;
    let n = 0;
    (await this.pc.getStats()).forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "video") n += r.framesDecoded || 0; });
    return n;
  }

  // The server ends the session first (DELETE), then the peer connection closes: closed
  // the other way round, the server sees the DTLS close and the DELETE finds nothing.
  async hangup() {
    const resource = this.resource;
    const pc = this.pc;
    this.resource = this.pc = null;
    if (resource) await fetch(resource, { method: "DELETE", credentials: "same-origin" }).catch(() => {});
    if (pc) pc.close();
  }

  // Ends the session at the server (awaited before a logout revokes the token).
  async close() {
    this.closed = true;
    clearInterval(this.watchdog);
    clearTimeout(this.timer);
    await this.hangup();
    this.video.srcObject = null;
  }
}
