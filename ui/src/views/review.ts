// Review: full disclosure and trends from the ring buffer, below the header and the alarm bar
// (alarms stay in sight while reviewing), with strip and report exports.

import { el, must, setText } from "../dom";
import { asIpcError, ipc, type Request } from "../ipc";
import {
  gapText,
  onsets,
  pan,
  tableStepMs,
  trendTable,
  valueRange,
  wavePaths,
  zoom,
  ZOOMS_S,
  TREND_HOURS,
  type ReviewTrend,
  type ReviewWave,
} from "../review";
import { refusal } from "../session";
import { state, stationNow, type ReviewState } from "../state";
import { notice } from "./notice";
import { openSessionDialog } from "./session";

// ---- review: full disclosure and trends from the ring buffer ----

const CHANNELS: [number, string][] = [
  [131330, "ECG II"],
  [150452, "Pleth"],
  [151552, "Resp"],
];
const PRIO_COLOR: Record<string, string> = { high: "#e02020", medium: "#e0b000", low: "#20b0d0" };
const TREND_PANELS: { label: string; codes: number[] }[] = [
  { label: "HR", codes: [147842] },
  { label: "SpO2", codes: [150456] },
  { label: "RR", codes: [151562] },
  { label: "NIBP", codes: [150021, 150023, 150022] },
  { label: "Temp", codes: [150364] },
];


function fmtDateTime(ms: number): string {
  return new Date(ms).toLocaleString();
}

/** Keeps the review below the header and alarm bar: alarms stay in sight while reviewing. */
export function placeReview(): void {
  const r = must<HTMLElement>("review");
  r.style.top = `${must<HTMLElement>("alarm-bar").getBoundingClientRect().bottom}px`;
}

export async function openReview(bed: string, label: string, from: number, to: number): Promise<void> {
  must<HTMLElement>("panel").hidden = true;
  state.review = { bed, label, from, to, channel: state.review?.channel ?? 131330, trendHours: state.review?.trendHours ?? 1, table: false };
  const r = must<HTMLElement>("review");
  r.hidden = false;
  r.dataset["bed"] = bed;
  placeReview();
  setText(must("review-title"), `${label} — review`);
  await Promise.all([loadWave(), loadTrend()]);
}

function sizeCanvas(c: HTMLCanvasElement): CanvasRenderingContext2D | null {
  const dpr = window.devicePixelRatio || 1;
  c.width = Math.max(1, Math.floor(c.clientWidth * dpr));
  c.height = Math.max(1, Math.floor(c.clientHeight * dpr));
  return c.getContext("2d");
}

async function loadWave(): Promise<void> {
  if (state.review === null) return;
  const st = state.review;
  const r = must<HTMLElement>("review");
  r.dataset["from"] = String(st.from);
  r.dataset["to"] = String(st.to);
  setText(must("review-range"), `${fmtDateTime(st.from)} – ${new Date(st.to).toLocaleTimeString()} (${Math.round((st.to - st.from) / 1000)} s)`);
  const c = must<HTMLCanvasElement>("review-wave");
  const g = sizeCanvas(c);
  let w: ReviewWave;
  try {
    w = await ipc.wave(st.bed, st.channel, st.from, st.to, c.width * 2);
  } catch (e) {
    notice(`Review: ${asIpcError(e).message}`);
    return;
  }
  if (state.review !== st || g === null) return;
  r.dataset["samples"] = String(w.samples);
  // Who was in the bed in this window (from the admission history, not today's census).
  setText(must("review-patient"), w.patient);
  // What the station could not write (a full disk): said in words, not left as a flat line.
  const gap = must<HTMLElement>("review-gap");
  gap.hidden = w.gaps.length === 0;
  setText(gap, gapText(w.gaps));
  g.fillStyle = "#05090d";
  g.fillRect(0, 0, c.width, c.height);
  // One-second grid so time can be read off the screen.
  g.strokeStyle = "#17222e";
  g.lineWidth = 1;
  for (let t = Math.ceil(st.from / 1000) * 1000; t < st.to; t += 1000) {
    const x = ((t - st.from) / (st.to - st.from)) * c.width;
    g.beginPath();
    g.moveTo(x, 0);
    g.lineTo(x, c.height);
    g.stroke();
  }
  if (w.samples === 0) {
    g.fillStyle = "#8899aa";
    g.font = `${14 * (window.devicePixelRatio || 1)}px sans-serif`;
    g.fillText("No stored waveform in this window", 12, c.height / 2);
    return;
  }
  const [lo, hi] = valueRange(w.segments.flatMap((s) => s.values));
  g.strokeStyle = st.channel === 131330 ? "#3ee07a" : st.channel === 150452 ? "#4fc3f7" : "#ffd54f";
  g.lineWidth = 1.5 * (window.devicePixelRatio || 1);
  for (const path of wavePaths(w, c.width, c.height, lo, hi)) {
    g.beginPath();
    path.forEach(([x, y], i) => (i === 0 ? g.moveTo(x, y) : g.lineTo(x, y)));
    g.stroke();
  }
}

function trendWindow(st: ReviewState): [number, number] {
  const span = st.trendHours * 3_600_000;
  const now = stationNow();
  const end = Math.min(now, (st.from + st.to) / 2 + span / 2);
  return [Math.round(end - span), Math.round(end)];
}

async function loadTrend(): Promise<void> {
  if (state.review === null) return;
  const st = state.review;
  const [from, to] = trendWindow(st);
  let t: ReviewTrend;
  try {
    t = await ipc.trend(st.bed, from, to);
  } catch (e) {
    notice(`Trends: ${asIpcError(e).message}`);
    return;
  }
  if (state.review !== st) return;
  state.lastTrend = t;
  for (const b of document.querySelectorAll<HTMLElement>("#trend-ranges button"))
    b.classList.toggle("on", b.dataset["hours"] === String(st.trendHours));
  must<HTMLElement>("review").dataset["trendPoints"] = String(t.series.reduce((n, s) => n + s.points.length, 0));
  drawTrend(t);
  renderTrendTable(t, st.table);
}

export function drawTrend(t: ReviewTrend): void {
  const c = must<HTMLCanvasElement>("review-trend");
  const g = sizeCanvas(c);
  if (g === null) return;
  const dpr = window.devicePixelRatio || 1;
  g.fillStyle = "#05090d";
  g.fillRect(0, 0, c.width, c.height);
  const left = 70 * dpr;
  const plotW = c.width - left - 8 * dpr;
  const panelH = c.height / TREND_PANELS.length;
  const x = (ms: number): number => left + ((ms - t.from_ms) / (t.to_ms - t.from_ms)) * plotW;
  g.font = `${11 * dpr}px sans-serif`;
  TREND_PANELS.forEach((p, i) => {
    const top = i * panelH;
    const series = t.series.filter((s) => p.codes.includes(s.code));
    const [lo, hi] = valueRange(series.flatMap((s) => s.points.flatMap((q) => [q.min, q.max])));
    const y = (v: number): number => top + panelH - 4 * dpr - ((v - lo) / (hi - lo)) * (panelH - 16 * dpr);
    g.strokeStyle = "#17222e";
    g.strokeRect(left, top + 2 * dpr, plotW, panelH - 4 * dpr);
    g.fillStyle = "#8899aa";
    const unit = series[0]?.unit ?? "";
    g.fillText(`${p.label} ${unit}`, 4 * dpr, top + 14 * dpr);
    g.fillText(hi.toFixed(0), 4 * dpr, top + 28 * dpr);
    g.fillText(lo.toFixed(0), 4 * dpr, top + panelH - 6 * dpr);
    for (const a of onsets(t)) {
      g.strokeStyle = PRIO_COLOR[a.priority ?? "low"] ?? "#20b0d0";
      g.lineWidth = 2 * dpr;
      g.beginPath();
      g.moveTo(x(a.t_ms), top + 2 * dpr);
      g.lineTo(x(a.t_ms), top + panelH - 2 * dpr);
      g.stroke();
    }
    const gap = t.resolution === "raw" ? 10_000 : 180_000;
    g.strokeStyle = "#4fc3f7";
    g.lineWidth = 1.5 * dpr;
    for (const s of series) {
      g.beginPath();
      let prev: number | null = null;
      for (const q of s.points) {
        if (prev === null || q.t_ms - prev > gap) g.moveTo(x(q.t_ms), y(q.value));
        else g.lineTo(x(q.t_ms), y(q.value));
        prev = q.t_ms;
      }
      g.stroke();
    }
  });
  // Time labels along the bottom of the last panel.
  g.fillStyle = "#8899aa";
  for (let k = 0; k <= 4; k++) {
    const ms = t.from_ms + ((t.to_ms - t.from_ms) * k) / 4;
    const label = t.to_ms - t.from_ms > 86_400_000 ? new Date(ms).toLocaleString() : new Date(ms).toLocaleTimeString();
    g.fillText(label, Math.min(x(ms), c.width - 120 * dpr), c.height - 2 * dpr);
  }
}

function renderTrendTable(t: ReviewTrend, shown: boolean): void {
  const box = must<HTMLElement>("review-table");
  box.hidden = !shown;
  must<HTMLCanvasElement>("review-trend").hidden = shown;
  if (!shown) return;
  const table = el("table", "history");
  const head = el("tr", "");
  head.append(el("th", "", "Time"));
  for (const s of t.series) head.append(el("th", "", `${s.label} (${s.unit})`));
  table.append(head);
  for (const row of trendTable(t, tableStepMs(t.to_ms - t.from_ms))) {
    const tr = el("tr", "");
    tr.dataset["testid"] = "trend-row";
    tr.append(el("td", "", fmtDateTime(row.t_ms)));
    for (const v of row.values) tr.append(el("td", "", v === null ? "—" : v.toFixed(v < 50 ? 1 : 0)));
    table.append(tr);
  }
  box.replaceChildren(table);
}

async function exportReview(kind: "strip" | "trend" | "fhir" | "edf", format: "png" | "svg"): Promise<void> {
  if (state.review === null) return;
  const st = state.review;
  let request: Request;
  if (kind === "fhir" || kind === "edf") {
    // The data of the window on screen, open formats for the EHR and research tools.
    request = { kind, bed: st.bed, from_ms: Math.round(st.from), to_ms: Math.round(st.to) };
  } else if (kind === "strip") {
    // The strip is 10-30 s: the window itself, or the 30 s at its centre.
    const seconds = Math.min(30, Math.max(10, Math.round((st.to - st.from) / 1000)));
    const from = Math.round((st.from + st.to) / 2 - (seconds * 1000) / 2);
    request = { kind, bed: st.bed, from_ms: from, seconds, format };
  } else {
    const [from, to] = trendWindow(st);
    request = { kind, bed: st.bed, from_ms: from, to_ms: to, format };
  }
  try {
    const path = await ipc.exportReview(request);
    notice(`Saved ${path}`);
    must<HTMLElement>("review").dataset["exported"] = path;
  } catch (e) {
    const err = asIpcError(e);
    const r = refusal(err.code, err.message);
    notice(r.text);
    if (r.focus !== null) openSessionDialog(r.focus);
  }
}

function moveReview(next: [number, number]): void {
  if (state.review === null) return;
  [state.review.from, state.review.to] = next;
  void loadWave();
  void loadTrend();
}

export function initReview(): void {
  const zoomSel = must<HTMLSelectElement>("review-zoom");
  for (const z of ZOOMS_S) {
    const o = document.createElement("option");
    o.value = String(z);
    o.textContent = z < 60 ? `${z} s` : `${z / 60} min`;
    zoomSel.append(o);
  }
  zoomSel.value = "30";
  zoomSel.addEventListener("change", () => {
    if (state.review !== null) moveReview(zoom(state.review.from, state.review.to, Number(zoomSel.value), stationNow()));
  });
  const chanSel = must<HTMLSelectElement>("review-channel");
  for (const [code, name] of CHANNELS) {
    const o = document.createElement("option");
    o.value = String(code);
    o.textContent = name;
    chanSel.append(o);
  }
  chanSel.addEventListener("change", () => {
    if (state.review === null) return;
    state.review.channel = Number(chanSel.value);
    void loadWave();
  });
  const now = (): number => stationNow();
  must<HTMLElement>("review-back").addEventListener("click", () => state.review && moveReview(pan(state.review.from, state.review.to, -0.5, now())));
  must<HTMLElement>("review-fwd").addEventListener("click", () => state.review && moveReview(pan(state.review.from, state.review.to, 0.5, now())));
  must<HTMLElement>("review-now").addEventListener("click", () => state.review && moveReview(pan(state.review.from, state.review.to, 1e6, now())));
  must<HTMLElement>("review-close").addEventListener("click", () => {
    state.review = null;
    must<HTMLElement>("review").hidden = true;
  });
  const ranges = must<HTMLElement>("trend-ranges");
  for (const h of TREND_HOURS) {
    const b = el("button", "", h < 24 ? `${h} h` : h === 24 ? "24 h" : "7 d");
    b.dataset["hours"] = String(h);
    b.dataset["testid"] = `trend-${h}h`;
    b.addEventListener("click", () => {
      if (state.review === null) return;
      state.review.trendHours = h;
      void loadTrend();
    });
    ranges.append(b);
  }
  must<HTMLElement>("trend-table-toggle").addEventListener("click", () => {
    if (state.review === null || state.lastTrend === null) return;
    state.review.table = !state.review.table;
    renderTrendTable(state.lastTrend, state.review.table);
  });
  // A click on the trend moves full disclosure to that moment.
  must<HTMLCanvasElement>("review-trend").addEventListener("click", (ev) => {
    if (state.review === null || state.lastTrend === null) return;
    const c = ev.currentTarget as HTMLCanvasElement;
    const left = 70;
    const frac = (ev.offsetX - left) / (c.clientWidth - left - 8);
    if (frac < 0 || frac > 1) return;
    const t = state.lastTrend.from_ms + frac * (state.lastTrend.to_ms - state.lastTrend.from_ms);
    const half = (state.review.to - state.review.from) / 2;
    state.review.from = Math.round(t - half);
    state.review.to = Math.round(t + half);
    void loadWave();
  });
  for (const [id, kind, format] of [
    ["export-strip-png", "strip", "png"],
    ["export-strip-svg", "strip", "svg"],
    ["export-trend-png", "trend", "png"],
    ["export-trend-svg", "trend", "svg"],
    ["export-fhir", "fhir", "png"],
    ["export-edf", "edf", "png"],
  ] as const)
    must<HTMLElement>(id).addEventListener("click", () => void exportReview(kind, format));
}

/** The window changed size: redraw the open review to the new canvas sizes. */
export function resizeReview(): void {
  if (state.review === null) return;
  placeReview();
  void loadWave();
  if (state.lastTrend !== null) drawTrend(state.lastTrend);
}
