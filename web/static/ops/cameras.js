// Cameras: the list with each one's live state, and the form that adds one.
import { html } from "../ui.js";

export function CameraList() { return html`<h2>Cameras</h2>`; }
export function CameraForm() { return html`<h2>Add a camera</h2>`; }
