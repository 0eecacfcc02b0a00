// The map: the centre's own base layers (GeoJSON, or its tile server), grids coloured by
// their warning state, cameras (a click opens the video), officers coloured by status
// with the last minutes of their track, open tickets by state (overdue ones flash), and
// the selected ticket's patrol track. Leaflet draws; this module keeps its layers in step
// with the store.
import * as L from "leaflet";
import { useEffect, useRef } from "preact/hooks";
import { store, TERMINAL } from "./store.js";
import { html, label, STATE_LABELS } from "../ui.js";

const LAYER_STYLES = {
  roads: { color: "#3a4656", weight: 5, opacity: 0.9 },
  buildings: { color: "#2b3542", weight: 1, fillColor: "#222c38", fillOpacity: 0.9 },
  water: { color: "#1d4e89", weight: 1, fillColor: "#163a66", fillOpacity: 0.8 },
  green: { color: "#1f4d2b", weight: 1, fillColor: "#173d22", fillOpacity: 0.7 },
  other: { color: "#566274", weight: 1, fillOpacity: 0.2 },
};

function gridStyle(feature) {
  const warn = feature.properties.warning;
  return { color: warn ? "#f85149" : "#58a6ff", weight: warn ? 3 : 1.5, dashArray: warn ? null : "4 4",
    fillColor: warn ? "#f85149" : "#58a6ff", fillOpacity: warn ? 0.18 : 0.03,
    className: warn ? "grid warning" : "grid" };
}

function divMarker(latlng, className, data) {
  const marker = L.marker(latlng, { icon: L.divIcon({ className, iconSize: null, html: "<span></span>" }),
    keyboard: false });
  marker.on("add", () => Object.assign(marker.getElement().dataset, data));
  return marker;
}

class MapLayers {
  constructor(el) {
    const bm = store.basemap || {};
    const center = bm.center ? [bm.center.lat, bm.center.lon] : [0, 0];
    this.map = L.map(el, { zoomControl: true, attributionControl: !!bm.tile_url, preferCanvas: false })
      .setView(center, bm.center ? bm.zoom : 2);
    if (bm.tile_url) {
      L.tileLayer(bm.tile_url, { maxZoom: bm.tile_max_zoom, attribution: bm.tile_attribution }).addTo(this.map);
    }
    for (const layer of bm.layers || []) this.baseLayer(layer);
    this.grids = L.geoJSON(null, {
      style: gridStyle,
      onEachFeature: (f, l) => l.bindTooltip(() => `${f.properties.name}: ${f.properties.count} tickets`),
    }).addTo(this.map);
    this.cameras = new Map();
    this.officers = new Map();  // id -> {marker, tail}
    this.tickets = new Map();
    this.trackLayer = null;
    this.offs = [
      store.on("grids", () => this.drawGrids()),
      store.on("cameras", () => this.drawCameras()),
      store.on("officers", () => this.drawOfficers()),
      store.on("tickets", () => this.drawTickets()),
      store.on("selected", () => this.drawTickets()),
      store.on("track", () => this.drawTrack()),
    ];
    this.timer = setInterval(() => this.drawOfficers(), 5000);  // stale by age alone
    this.drawGrids();
    this.drawCameras();
    this.drawOfficers();
    this.drawTickets();
  }

  async baseLayer(layer) {
    const r = await fetch(layer.url, { credentials: "same-origin" });
    if (!r.ok) return;
    const style = LAYER_STYLES[layer.kind] || LAYER_STYLES.other;
    L.geoJSON(await r.json(), { style, interactive: false }).addTo(this.map).bringToBack();
  }

  drawGrids() {
    this.grids.clearLayers();
    if (store.grids) this.grids.addData(store.grids);
  }

  drawCameras() {
    const seen = new Set();
    for (const c of store.cameras.values()) {
      if (!c.position) continue;
      seen.add(c.id);
      const at = [c.position.lat, c.position.lon];
      let m = this.cameras.get(c.id);
      if (!m) {
        m = divMarker(at, "cam-marker", { camera: c.id }).addTo(this.map);
        m.on("click", () => store.openVideo(c.id));
        this.cameras.set(c.id, m);
      }
      m.setLatLng(at);
      m.bindTooltip(`${c.name || c.id} — click for video`);
    }
    for (const [id, m] of this.cameras) if (!seen.has(id)) { m.remove(); this.cameras.delete(id); }
  }

  drawOfficers() {
    for (const o of store.officers.values()) {
      if (o.lat == null) continue;
      const status = store.officerStatus(o);
      let e = this.officers.get(o.id);
      if (!e) {
        e = { marker: divMarker([o.lat, o.lon], "officer-marker", { officer: o.id }).addTo(this.map),
          tail: L.polyline([], { weight: 3, opacity: 0.6, interactive: false, className: "tail" }).addTo(this.map) };
        this.officers.set(o.id, e);
      }
      e.marker.setLatLng([o.lat, o.lon]);
      const el = e.marker.getElement();
      if (el) { el.dataset.status = status; el.dataset.lat = o.lat; el.dataset.lon = o.lon; }
      e.marker.bindTooltip(`${o.name || o.id} · ${label(status)}${o.tickets?.length ? ` · ${o.tickets.join(", ")}` : ""}`);
      e.tail.setLatLngs((o.tail || []).map(([lon, lat]) => [lat, lon]));
      e.tail.setStyle({ color: STATUS_COLOURS[status] });
    }
  }

  drawTickets() {
    const seen = new Set();
    for (const t of store.tickets.values()) {
      if (TERMINAL.has(t.state) && store.selected !== t.id) continue;
      seen.add(t.id);
      const at = [t.location.lat, t.location.lon];
      let m = this.tickets.get(t.id);
      if (!m) {
        m = divMarker(at, "ticket-marker", { ticket: t.id }).addTo(this.map);
        m.on("click", () => store.select(t.id));
        this.tickets.set(t.id, m);
      }
      m.setLatLng(at);
      const el = m.getElement();
      if (el) {
        el.dataset.state = t.state;
        el.dataset.overdue = t.overdue ? "1" : "0";
        el.classList.toggle("selected", store.selected === t.id);
      }
      m.bindTooltip(`${t.id} · ${label(t.category)} · ${STATE_LABELS[t.state]}${t.overdue ? " · OVERDUE" : ""}`);
    }
    for (const [id, m] of this.tickets) if (!seen.has(id)) { m.remove(); this.tickets.delete(id); }
  }

  drawTrack() {
    if (this.trackLayer) this.trackLayer.remove();
    this.trackLayer = null;
    const track = store.track;
    if (!track || !track.geometry || track.geometry.coordinates.length === 0) return;
    this.trackLayer = L.geoJSON(track, { style: { color: "#f0b400", weight: 4, className: "ticket-track" } })
      .addTo(this.map);
    const t = store.tickets.get(store.selected);
    const bounds = this.trackLayer.getBounds();
    if (t) bounds.extend([t.location.lat, t.location.lon]);
    this.map.fitBounds(bounds, { padding: [30, 30], maxZoom: 18 });
  }

  close() {
    this.offs.forEach((off) => off());
    clearInterval(this.timer);
    this.map.remove();
  }
}

const STATUS_COLOURS = { available: "#3fb950", busy: "#d29922", stale: "#8b98a9", off_duty: "#6e40c9" };

export let mapLayers = null;  // the one map, for tests that turn positions into pixels

export function MapPanel() {
  const el = useRef(null);
  useEffect(() => {
    mapLayers = new MapLayers(el.current);
    const resize = new ResizeObserver(() => mapLayers.map.invalidateSize());
    resize.observe(el.current);
    return () => { resize.disconnect(); mapLayers.close(); mapLayers = null; };
  }, []);
  return html`
    <section id="map-panel">
      <div id="map" ref=${el}></div>
      <div class="legend">
        ${Object.entries(STATUS_COLOURS).map(([s, c]) => html`<span key=${s}><i style=${{ background: c }}></i>${label(s)}</span>`)}
      </div>
    </section>`;
}
