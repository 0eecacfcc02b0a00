// What the centre is judged on, per grid and per category (/api/stats): open and overdue
// tickets, closure and on-time rates, median response and arrival, as Chart.js charts.
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, Tooltip } from "chart.js";
import { useEffect, useRef, useState } from "preact/hooks";
import { getJson } from "../common.js";
import { store } from "./store.js";
import { duration, html, label } from "../ui.js";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);
Chart.defaults.color = "#d8dee9";
Chart.defaults.borderColor = "#263241";
Chart.defaults.animation = false;

const WINDOWS = [[3600, "1 hour"], [86400, "24 hours"], [7 * 86400, "7 days"], [30 * 86400, "30 days"]];
const REFRESH_MS = 15000;

function BarChart({ id, title, labels, series, percent }) {
  const canvas = useRef(null);
  const chart = useRef(null);
  useEffect(() => {
    chart.current = new Chart(canvas.current, {
      type: "bar",
      data: { labels: [], datasets: [] },
      options: { responsive: true, maintainAspectRatio: false,
        plugins: { title: { display: false }, legend: { position: "bottom" } },
        scales: { y: { beginAtZero: true, max: percent ? 100 : undefined } } },
    });
    return () => chart.current.destroy();
  }, []);
  useEffect(() => {
    chart.current.data.labels = labels;
    chart.current.data.datasets = series;
    chart.current.update();
  });
  return html`<figure class="chart" data-chart=${id}><figcaption>${title}</figcaption>
    <div class="canvas"><canvas ref=${canvas}></canvas></div></figure>`;
}

const COLOURS = { open: "#58a6ff", overdue: "#f85149", closed: "#3fb950", closure: "#3fb950",
  ontime: "#d29922", response: "#a371f7", arrival: "#39c5cf" };

function charts(kind, groups) {
  const names = Object.keys(groups);
  const rows = names.map((n) => groups[n]);
  const pct = (v) => (v == null ? null : Math.round(v * 1000) / 10);
  return [
    { id: `${kind}-load`, title: `Open and overdue by ${kind}`, labels: names.map(label), series: [
      { label: "open", data: rows.map((r) => r.open), backgroundColor: COLOURS.open },
      { label: "overdue", data: rows.map((r) => r.overdue), backgroundColor: COLOURS.overdue },
      { label: "closed", data: rows.map((r) => r.closed), backgroundColor: COLOURS.closed }] },
    { id: `${kind}-rates`, title: `Closure and on-time rate by ${kind} (%)`, percent: true, labels: names.map(label), series: [
      { label: "closure", data: rows.map((r) => pct(r.closure_rate)), backgroundColor: COLOURS.closure },
      { label: "on time", data: rows.map((r) => pct(r.on_time_rate)), backgroundColor: COLOURS.ontime }] },
    { id: `${kind}-times`, title: `Median response and arrival by ${kind} (s)`, labels: names.map(label), series: [
      { label: "response (report → accepted)", data: rows.map((r) => r.median_response_s), backgroundColor: COLOURS.response },
      { label: "arrival (dispatch → on scene)", data: rows.map((r) => r.median_arrival_s), backgroundColor: COLOURS.arrival }] },
  ];
}

export function Stats() {
  const [windowS, setWindowS] = useState(86400);
  const [stats, setStats] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => {
    let current = true;
    const load = () => getJson(`/api/stats?window_s=${windowS}`)
      .then((s) => { if (current) { setStats(s); setError(""); } })
      .catch((e) => current && setError(e.message));
    load();
    const timer = setInterval(load, REFRESH_MS);
    const off = store.on("tickets", () => { clearTimeout(store.statsDebounce); store.statsDebounce = setTimeout(load, 1000); });
    return () => { current = false; clearInterval(timer); off(); };
  }, [windowS]);
  const all = stats?.all;
  const pct = (v) => (v == null ? "—" : `${(v * 100).toFixed(1)}%`);
  return html`
    <section id="stats">
      <div class="toolbar">
        <h2>Statistics</h2>
        ${WINDOWS.map(([s, name]) => html`
          <button key=${s} class=${s === windowS ? "on" : ""} onClick=${() => setWindowS(s)}>${name}</button>`)}
        <button onClick=${() => store.setView("wall")}>Back to video</button>
      </div>
      ${error ? html`<p class="error">${error}</p>` : null}
      ${all ? html`
        <div class="kpis">
          <div data-kpi="tickets"><b>${all.tickets}</b>tickets</div>
          <div data-kpi="open"><b>${all.open}</b>open</div>
          <div data-kpi="overdue"><b>${all.overdue}</b>overdue</div>
          <div data-kpi="closed"><b>${all.closed}</b>closed</div>
          <div data-kpi="closure"><b>${pct(all.closure_rate)}</b>closure rate</div>
          <div data-kpi="ontime"><b>${pct(all.on_time_rate)}</b>on time</div>
          <div data-kpi="response"><b>${duration(all.median_response_s)}</b>median response</div>
          <div data-kpi="arrival"><b>${duration(all.median_arrival_s)}</b>median arrival</div>
        </div>
        <div class="charts">
          ${[...charts("grid", stats.grids), ...charts("category", stats.categories)].map((c) => html`<${BarChart} key=${c.id} ...${c} />`)}
        </div>` : html`<p class="dim">Loading…</p>`}
    </section>`;
}
