// One camera: its state, its settings (edited here), PTZ, and links to its zones and recordings.
import { html } from "../ui.js";

export function CameraPage({ cameraId }) { return html`<h2>${cameraId}</h2>`; }
