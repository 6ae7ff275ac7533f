// The ward grid: one tile per configured bed, all in view. The grid's columns and the tiles'
// size come from fitGrid (layout.ts) for the number of beds and the space below the header;
// it re-lays out when the window is resized or the beds change. Empty beds keep their place
// (a nurse finds a patient by position), so admitting a monitor never moves other tiles.

import { tileAlarm, type Alarm } from "../alarms";
import { el, must, setData, setText, testid } from "../dom";
import { TraceKind } from "../frame";
import {
  CODES,
  connectionLabel,
  formatLastSeen,
  formatNibp,
  formatTemp,
  patientLine,
  formatValue,
  numericValue,
} from "../format";
import type { BedView } from "../ipc";
import { fitGrid } from "../layout";
import { Band, KINDS, TileSurface, TracePainter, type TraceTile } from "./traces";

const GAP = 6;
const BAND_NAMES: Record<TraceKind, string> = {
  [TraceKind.Ecg]: "II",
  [TraceKind.Pleth]: "Pleth",
  [TraceKind.Resp]: "Resp",
};
/** Band names in test ids and CSS classes. */
const BAND_KEYS: Record<TraceKind, string> = {
  [TraceKind.Ecg]: "ecg",
  [TraceKind.Pleth]: "pleth",
  [TraceKind.Resp]: "resp",
};

type Field = "label" | "patient" | "device" | "state" | "seen" | "hr" | "spo2" | "rr" | "nibp" | "temp" | "alarm";

interface Tile extends TraceTile {
  /** The snapshot's latest for this bed, applied when the tile's group paints. */
  pending: { bed: BedView; alarms: Alarm[]; nowMs: number } | null;
  root: HTMLElement;
  bandEls: HTMLElement[];
  fields: Record<Field, HTMLElement>;
  bedId: string;
}

function numericBox(cls: string, label: string, unit: string, id: string): [HTMLElement, HTMLElement] {
  const box = el("div", `num ${cls}`);
  const value = testid(el("span", "num-value", "--"), id);
  box.append(el("span", "num-label", label), value, el("span", "num-unit", unit));
  return [box, value];
}

export class WardGrid {
  private readonly ward = must<HTMLElement>("ward");
  private readonly grid = must<HTMLElement>("grid");
  private readonly traces = new TracePainter();
  private tiles: Tile[] = [];
  /** Bed ids and labels the tiles were built for: a change rebuilds and re-lays out. */
  private shape = "";
  private readonly onOpenBed: (bed: string, label: string) => void;

  constructor(onOpenBed: (bed: string, label: string) => void) {
    this.onOpenBed = onOpenBed;
    window.addEventListener("resize", () => this.layout());
  }

  get scriptMs(): number {
    return this.traces.lastScriptMs;
  }

  /** Applies a snapshot's beds: builds tiles when the beds changed, then updates them. */
  update(beds: BedView[], alarms: Alarm[], nowMs: number): void {
    // Admitting or discharging a monitor updates its tile in place (no other sweep restarts).
    const shape = beds.map((b) => `${b.id}=${b.label}`).join(",");
    if (shape !== this.shape) {
      this.shape = shape;
      this.tiles = beds.map((b) => this.buildTile(b));
      this.grid.replaceChildren(...this.tiles.map((t) => t.root));
      this.layout();
    }
    // Applied per tile when its group paints (paint below), not all at once: 64 tiles'
    // numerics changing in one frame would repaint the whole screen in that frame.
    for (const bed of beds) {
      const t = this.tiles[bed.index];
      if (t === undefined) continue;
      t.pending = { bed, alarms, nowMs };
      t.hasDevice = bed.device !== null;
      t.connection = bed.connection;
    }
  }

  private apply(t: Tile): void {
    const p = t.pending;
    if (p === null) return;
    t.pending = null;
    this.updateTile(t, p.bed, p.nowMs);
    const a = tileAlarm(p.alarms, p.bed.id);
    setData(t.root, "alarm", a.priority);
    t.root.classList.toggle("flashing", a.flashing);
    setText(t.fields.alarm, a.text);
  }

  /** New samples from the live stream for bed index `bed`. */
  push(bed: number, kind: TraceKind, samples: Float32Array, rateHz: number, now: number): void {
    this.tiles[bed]?.bands[kind]?.push(samples, rateHz, now);
  }

  paint(now: number): void {
    this.traces.paint(now, this.tiles, (t) => this.apply(t));
  }

  /** Columns and tile size for the beds and the space; then every band's rectangle. */
  layout(): void {
    const w = this.ward.clientWidth;
    const h = this.ward.clientHeight;
    const fit = fitGrid(Math.max(1, this.tiles.length), w, h, GAP);
    const s = this.grid.style;
    s.gridTemplateColumns = `repeat(${fit.columns}, ${fit.tileWidth}px)`;
    s.gridAutoRows = `${fit.tileHeight}px`;
    s.gap = `${GAP}px`;
    s.padding = `${GAP}px`;
    s.setProperty("--big", `${fit.bigNumeric}px`);
    s.setProperty("--small", `${Math.max(10, Math.min(16, Math.round(fit.bigNumeric * 0.42)))}px`);
    this.grid.dataset["columns"] = String(fit.columns);
    this.traces.groups = TracePainter.groupsFor(fit.rows);
    for (const [i, t] of this.tiles.entries()) {
      t.group = TracePainter.groupOf(Math.floor(i / fit.columns), fit.rows, this.traces.groups);
      t.lastPaint = null;
      const origin = t.surface.canvas.parentElement?.getBoundingClientRect();
      if (origin === undefined) continue;
      t.surface.resize(Math.round(origin.width), Math.round(origin.height));
      for (const [i, b] of t.bands.entries()) {
        const r = t.bandEls[i]?.getBoundingClientRect();
        if (r === undefined) continue;
        // Whole pixels: a fractional fill leaves anti-aliased residue of the last sweep.
        b.place({
          x: Math.round(r.left - origin.left),
          y: Math.round(r.top - origin.top),
          w: Math.floor(r.width),
          h: Math.floor(r.height),
        });
      }
    }
  }

  private buildTile(bed: BedView): Tile {
    const root = testid(el("article", "tile"), `tile-${bed.id}`);
    const head = el("header", "tile-head");
    // The bed, then who is in it (name, MRN, sex, birth date, category), or "no patient
    // admitted": a bed without a patient still monitors and alarms.
    const label = testid(el("span", "bed-label", bed.label), `label-${bed.id}`);
    const patient = testid(el("span", "patient"), `patient-${bed.id}`);
    const device = testid(el("span", "device", bed.device ?? "no monitor"), `device-${bed.id}`);
    // The device id is shown whole or not at all (see .device-slot in styles.css).
    const deviceSlot = el("span", "device-slot");
    deviceSlot.append(device);
    const state = testid(el("span", "state"), `state-${bed.id}`);
    const seen = testid(el("span", "seen"), `seen-${bed.id}`);
    head.append(label, patient, deviceSlot, state, seen);
    head.addEventListener("click", () => this.onOpenBed(bed.id, bed.label));
    head.title = "Alarm history, limits, pauses and review for this bed";
    const body = el("div", "tile-body");
    const waves = el("div", "waves");
    const bandEls = KINDS.map((k) => {
      const band = testid(el("div", `band band-${BAND_KEYS[k]}`), `band-${bed.id}-${BAND_KEYS[k]}`);
      band.append(el("span", "band-label", BAND_NAMES[k]));
      waves.append(band);
      return band;
    });
    const surface = new TileSurface();
    waves.prepend(surface.canvas);
    const nums = el("div", "nums");
    const [hrBox, hr] = numericBox("big hr", "HR", "bpm", `hr-${bed.id}`);
    const [spo2Box, spo2] = numericBox("big spo2", "SpO₂", "%", `spo2-${bed.id}`);
    const small = el("div", "small-nums");
    const [rrBox, rr] = numericBox("rr", "RR", "/min", `rr-${bed.id}`);
    const [nibpBox, nibp] = numericBox("nibp", "NIBP", "", `nibp-${bed.id}`);
    const [tempBox, temp] = numericBox("temp", "T", "°C", `temp-${bed.id}`);
    small.append(rrBox, nibpBox, tempBox);
    nums.append(hrBox, spo2Box, small);
    body.append(waves, nums);
    const alarm = testid(el("div", "tile-alarm"), `alarm-text-${bed.id}`);
    root.append(head, alarm, body);
    return {
      root,
      bandEls,
      bands: KINDS.map((k, i) => new Band(k, bandEls[i] ?? null)),
      surface,
      group: 0,
      lastPaint: null,
      pending: null,
      hasDevice: bed.device !== null,
      connection: bed.connection,
      fields: { label, patient, device, state, seen, hr, spo2, rr, nibp, temp, alarm },
      bedId: bed.id,
    };
  }

  private updateTile(t: Tile, bed: BedView, nowMs: number): void {
    t.hasDevice = bed.device !== null;
    t.connection = bed.connection;
    setData(t.root, "connection", bed.connection);
    t.root.classList.toggle("stale", bed.connection !== "online");
    const line = patientLine(bed.patient);
    setText(t.fields.patient, line);
    t.fields.patient.title = line;
    t.fields.patient.classList.toggle("none", bed.patient === null);
    setText(t.fields.device, bed.device ?? "no monitor");
    setText(t.fields.state, connectionLabel(bed.connection));
    setText(t.fields.seen, bed.connection === "online" ? "" : formatLastSeen(nowMs, bed.last_seen_ms));
    setText(t.fields.hr, formatValue(numericValue(bed.numerics, CODES.HR)));
    setText(t.fields.spo2, formatValue(numericValue(bed.numerics, CODES.SPO2)));
    setText(t.fields.rr, formatValue(numericValue(bed.numerics, CODES.RR)));
    setText(t.fields.nibp, formatNibp(bed.numerics));
    setText(t.fields.temp, formatTemp(bed.numerics));
  }
}
