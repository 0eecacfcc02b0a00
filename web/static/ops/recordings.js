// A camera's recordings on a timeline: segments, marks and tickets; play from a moment; export a clip.
import { html } from "../ui.js";

export function Recordings({ cameraId }) { return html`<h2>Recordings ${cameraId || ""}</h2>`; }
