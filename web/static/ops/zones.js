// A camera's zones, drawn on a fresh snapshot of its picture.
import { html } from "../ui.js";

export function ZoneEditor({ cameraId }) { return html`<h2>Zones of ${cameraId}</h2>`; }
