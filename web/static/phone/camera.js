// His camera, shown in the command centre only with his consent: a dispatcher's request
// asks him; he shares or refuses (the dispatcher is told, with the reason); while shared
// a banner says so and stops it; one capture at most, and every track is stopped
// however the sharing ends (his stop, the dispatcher's, a failure, signing out).
import { useState } from "preact/hooks";
import { WhipPublisher } from "../common.js";
import { html, useTopics } from "../ui.js";
import { phone } from "./state.js";

const REFUSALS = ["driving", "private situation", "camera needed for something else", "other"];

export class CameraShare {
  constructor(signal) {
    this.signal = signal;
    this.publisher = new WhipPublisher();
  }

  // A request (or a stop) from a dispatcher.
  onRequest(m) {
    if (m.stop) { this.stop(); return; }
    if (phone.sharing) {  // already shown: one capture, and the dispatcher hears yes again
      this.answer(m.by, true);
      return;
    }
    phone.set({ cameraAsk: { by: m.by, stream: m.stream } }, "camera");
  }

  async share() {
    const ask = phone.cameraAsk;
    if (!ask || this.starting) return;
    this.starting = true;
    phone.set({ cameraAsk: null, sharing: { to: ask.by, stream: ask.stream, live: false } }, "camera");
    try {
      await this.publisher.start(ask.stream);
      phone.set({ sharing: { ...phone.sharing, live: true } }, "camera");
      this.answer(ask.by, true);
    } catch (err) {
      this.publisher.stop();
      const stopped = !phone.sharing;
      phone.set({ sharing: null, notice: stopped ? "" : `Camera not shared: ${err.message}` }, "camera", "notice");
      if (!stopped) this.answer(ask.by, false, `camera failed: ${err.message}`);
    } finally {
      this.starting = false;
    }
  }

  refuse(reason) {
    const ask = phone.cameraAsk;
    phone.set({ cameraAsk: null }, "camera");
    if (ask) this.answer(ask.by, false, reason);
  }

  // Ends the sharing, whoever asked; tells the dispatcher when it was his own stop.
  stop(byOfficer = false) {
    const was = phone.sharing;
    this.publisher.stop();
    phone.set({ sharing: null, cameraAsk: null }, "camera");
    if (was && byOfficer) this.answer(was.to, false, "stopped by the officer");
  }

  answer(to, accepted, reason = "") {
    this.signal.send({ type: "publish.answer", to, accepted, reason });
  }
}

export function CameraPanel({ share }) {
  useTopics(phone, "camera");
  const [reason, setReason] = useState(REFUSALS[0]);
  const ask = phone.cameraAsk;
  const on = phone.sharing;
  return html`
    ${ask ? html`
      <section id="camera-ask" class="card ringing">
        <h2>${ask.by} asks to see your camera</h2>
        <div class="buttons">
          <button id="camera-share" class="primary big" onClick=${() => share.share()}>Share my camera</button>
        </div>
        <label>Or refuse: <select id="camera-refuse-reason" value=${reason} onChange=${(e) => setReason(e.target.value)}>
          ${REFUSALS.map((r) => html`<option value=${r}>${r}</option>`)}</select></label>
        <button id="camera-refuse" onClick=${() => share.refuse(reason)}>Refuse</button>
      </section>` : null}
    <div id="sharing" class="sharing-bar" hidden=${!on} data-live=${on && on.live ? "1" : "0"}>
      <span class="dot"></span> Your camera is shown in the command centre${on ? ` (${on.to})` : ""}
      <button id="sharing-stop" onClick=${() => share.stop(true)}>Stop</button>
    </div>`;
}
