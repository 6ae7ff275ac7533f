// The station window: a ward overview of bed tiles (DOM for text, one canvas for every
// trace), fed by snapshots (numerics, state; twice a second) and a binary live stream
// (samples; one frame per station tick over a Tauri Channel).

import { Channel, invoke } from "@tauri-apps/api/core";
import { decodeFrame, TraceKind } from "./frame";
import {
  CODES,
  connectionLabel,
  formatLastSeen,
  formatNibp,
  formatTemp,
  formatValue,
  numericValue,
  type ConnectionState,
  type Numeric,
} from "./format";
import { SweepTrace, type Damage } from "./sweep";

interface DeviceAlarmView {
  id: string;
  condition: string;
  priority: string;
  since_ms: number;
}

interface BedView {
  index: number;
  id: string;
  label: string;
  device: string | null;
  connection: ConnectionState;
  last_seen_ms: number | null;
  numerics: Numeric[];
  device_alarms: DeviceAlarmView[];
}

interface WardSnapshot {
  station: string;
  now_ms: number;
  broker: string;
  beds: BedView[];
  unassigned: { device: string; connection: ConnectionState; last_seen_ms: number | null }[];
  metrics: {
    broker: { connections_active: number; messages_in: number; messages_dropped: number; malformed_packets: number };
    ingest: Record<string, number>;
    store: { records_written: number; queue_full: number; write_errors: number };
  };
}

const SWEEP_SECONDS = 4;
// Samples wait this long before drawing so the 30 Hz stream's jitter never shows.
const PLAYBACK_DELAY_S = 0.15;
// ECG display range in mV, top to bottom of the trace area.
const ECG_TOP_MV = 1.6;
const ECG_BOTTOM_MV = -0.6;
const ERASE_GAP = 10;

interface Tile {
  root: HTMLElement;
  trace: HTMLElement;
  fields: Record<"state" | "seen" | "hr" | "spo2" | "rr" | "nibp" | "temp" | "alarm", HTMLElement>;
  ecg: SweepTrace | null;
  rect: { x: number; y: number; h: number };
}

const grid = must<HTMLElement>("grid");
const canvas = must<HTMLCanvasElement>("traces");
const ctx = canvas.getContext("2d");
const tiles: Tile[] = [];

function must<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`missing element #${id}`);
  return el as T;
}

function el(tag: string, cls: string, text = ""): HTMLElement {
  const e = document.createElement(tag);
  e.className = cls;
  if (text !== "") e.textContent = text;
  return e;
}

function showBanner(text: string | null): void {
  const b = must<HTMLElement>("banner");
  b.hidden = text === null;
  b.textContent = text ?? "";
}

function numericBox(label: string, unit: string, testid: string, big = false): [HTMLElement, HTMLElement] {
  const box = el("div", big ? "num big" : "num");
  box.append(el("span", "num-label", label));
  const value = el("span", "num-value", "--");
  value.dataset["testid"] = testid;
  box.append(value, el("span", "num-unit", unit));
  return [box, value];
}

function buildTile(bed: BedView): Tile {
  const root = el("article", "tile");
  root.dataset["testid"] = `tile-${bed.id}`;
  const head = el("header", "tile-head");
  head.append(el("span", "bed-label", bed.label), el("span", "device", bed.device ?? "no device"));
  const state = el("span", "state");
  state.dataset["testid"] = `state-${bed.id}`;
  const seen = el("span", "seen");
  seen.dataset["testid"] = `seen-${bed.id}`;
  head.append(state, seen);
  const body = el("div", "tile-body");
  const trace = el("div", "trace");
  const nums = el("div", "nums");
  const [hrBox, hr] = numericBox("HR", "bpm", `hr-${bed.id}`, true);
  const [spo2Box, spo2] = numericBox("SpO₂", "%", `spo2-${bed.id}`, true);
  const [rrBox, rr] = numericBox("RR", "/min", `rr-${bed.id}`);
  const [nibpBox, nibp] = numericBox("NIBP", "mmHg", `nibp-${bed.id}`);
  const [tempBox, temp] = numericBox("Temp", "°C", `temp-${bed.id}`);
  nums.append(hrBox, spo2Box, rrBox, nibpBox, tempBox);
  body.append(trace, nums);
  const alarm = el("div", "device-alarm");
  alarm.dataset["testid"] = `device-alarm-${bed.id}`;
  root.append(head, body, alarm);
  grid.append(root);
  return {
    root,
    trace,
    fields: { state, seen, hr, spo2, rr, nibp, temp, alarm },
    ecg: null,
    rect: { x: 0, y: 0, h: 0 },
  };
}

function setText(e: HTMLElement, text: string): void {
  if (e.textContent !== text) e.textContent = text;
}

function updateTile(t: Tile, bed: BedView, nowMs: number): void {
  t.root.dataset["connection"] = bed.connection;
  setText(t.fields.state, connectionLabel(bed.connection));
  setText(t.fields.seen, formatLastSeen(nowMs, bed.last_seen_ms));
  const stale = bed.connection !== "online";
  t.root.classList.toggle("stale", stale);
  setText(t.fields.hr, formatValue(numericValue(bed.numerics, CODES.HR)));
  setText(t.fields.spo2, formatValue(numericValue(bed.numerics, CODES.SPO2)));
  setText(t.fields.rr, formatValue(numericValue(bed.numerics, CODES.RR)));
  setText(t.fields.nibp, formatNibp(bed.numerics));
  setText(t.fields.temp, formatTemp(bed.numerics));
  setText(t.fields.alarm, bed.device_alarms.map((a) => `${a.condition} (${a.priority})`).join(" · "));
}

/** Places the canvas over the grid and gives every tile its trace rectangle and sweep. */
function layout(): void {
  const dpr = window.devicePixelRatio || 1;
  const w = grid.scrollWidth;
  const h = grid.scrollHeight;
  canvas.style.width = `${w}px`;
  canvas.style.height = `${h}px`;
  canvas.width = Math.floor(w * dpr);
  canvas.height = Math.floor(h * dpr);
  ctx?.setTransform(dpr, 0, 0, dpr, 0, 0);
  const origin = grid.getBoundingClientRect();
  for (const t of tiles) {
    const r = t.trace.getBoundingClientRect();
    // Whole pixels: a fractional clearRect leaves anti-aliased residue of the previous sweep.
    t.rect = {
      x: Math.round(r.left - origin.left),
      y: Math.round(r.top - origin.top),
      h: Math.floor(r.height),
    };
    t.ecg = new SweepTrace({
      columns: Math.max(10, Math.floor(r.width)),
      windowSeconds: SWEEP_SECONDS,
      delaySeconds: PLAYBACK_DELAY_S,
    });
  }
  ctx?.clearRect(0, 0, w, h);
}

function drawDamage(t: Tile, s: SweepTrace, d: Damage): void {
  if (ctx === null) return;
  const { x, y, h } = t.rect;
  const yOf = (mv: number) => y + ((ECG_TOP_MV - mv) / (ECG_TOP_MV - ECG_BOTTOM_MV)) * h;
  const cols = s.columns;
  // Erase the swept columns and a small gap ahead of the cursor, wrapping at the edge.
  const span = Math.min(cols, d.count + ERASE_GAP);
  const firstRun = Math.min(span, cols - d.from);
  ctx.clearRect(x + d.from, y, firstRun, h);
  if (span > firstRun) ctx.clearRect(x, y, span - firstRun, h);
  ctx.strokeStyle = "#39ff88";
  ctx.lineWidth = 1.25;
  ctx.beginPath();
  for (let i = 0; i < d.count; i++) {
    const c = (d.from + i) % cols;
    const lo = s.min[c];
    const hi = s.max[c];
    if (lo === undefined || hi === undefined || Number.isNaN(lo) || Number.isNaN(hi)) continue;
    const px = x + c + 0.5;
    if (i === 0 || c === 0) ctx.moveTo(px, yOf(hi));
    ctx.lineTo(px, yOf(hi));
    ctx.lineTo(px, yOf(lo));
  }
  ctx.stroke();
}

let lastPaint = performance.now();
function paint(now: number): void {
  const dt = Math.min(0.25, Math.max(0, (now - lastPaint) / 1000));
  lastPaint = now;
  for (const t of tiles) {
    if (t.ecg === null) continue;
    const d = t.ecg.advance(dt);
    if (d !== null) drawDamage(t, t.ecg, d);
  }
  requestAnimationFrame(paint);
}

async function refresh(): Promise<void> {
  try {
    const snap = await invoke<WardSnapshot>("ward_snapshot");
    setText(must("station-name"), snap.station);
    setText(must("broker"), `broker ${snap.broker}`);
    setText(must("clock"), new Date(snap.now_ms).toLocaleTimeString());
    const m = snap.metrics;
    const refused = Object.entries(m.ingest)
      .filter(([k]) => k.startsWith("bad_") || k.startsWith("invalid"))
      .reduce((n, [, v]) => n + v, 0);
    setText(
      must("health"),
      `${m.broker.connections_active} devices · ${m.broker.messages_in} msgs · refused ${refused + m.broker.malformed_packets} · stored ${m.store.records_written}`,
    );
    if (tiles.length === 0) {
      for (const bed of snap.beds) tiles.push(buildTile(bed));
      layout();
    }
    for (const bed of snap.beds) {
      const t = tiles[bed.index];
      if (t !== undefined) updateTile(t, bed, snap.now_ms);
    }
    showBanner(null);
  } catch (e) {
    showBanner(`Station core not reachable: ${String(e)}`);
  }
}

function startStream(): void {
  const channel = new Channel<ArrayBuffer>();
  channel.onmessage = (msg) => {
    try {
      const frame = decodeFrame(msg);
      for (const tr of frame.traces) {
        if (tr.kind !== TraceKind.Ecg) continue;
        tiles[tr.bed]?.ecg?.push(tr.samples, tr.rateHz);
      }
    } catch (e) {
      console.error("bad live frame", e);
    }
  };
  invoke("live_stream", { channel }).catch((e: unknown) => showBanner(`Live stream failed: ${String(e)}`));
}

window.addEventListener("resize", () => layout());
void refresh().then(() => {
  startStream();
  requestAnimationFrame(paint);
  setInterval(() => void refresh(), 500);
});
