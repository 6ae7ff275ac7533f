// Live waveforms: ECG II, pleth and resp in three bands per tile, each with its own sweep,
// erase bar, scale and colour, on one small opaque canvas per tile (TileSurface).
//
// Where WebKitGTK paints in software (no GPU: the shell turns the GL compositor off there), a
// frame repaints the bounding box of everything that changed in it, so the painter draws one
// group of grid rows per frame (TracePainter) and each frame repaints a band of the screen,
// not all of it. The measurements behind this are in docs/BENCHMARKS.md, "Frames".
// A band whose channel has stopped is drawn once as a flat dashed line with its reason, and
// then costs nothing per frame.

import { bandState, sameState, type BandState } from "../channels";
import type { ConnectionState } from "../format";
import { TraceKind } from "../frame";
import { SweepTrace, type Damage } from "../sweep";

const SWEEP_SECONDS = 4;
// Samples wait this long before drawing so the 30 Hz stream's jitter never shows.
const PLAYBACK_DELAY_S = 0.15;
const ERASE_GAP = 8;
/** The tile background (styles.css --tile): each canvas paints its own. */
export const TILE_BG = "#0d141d";

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

interface KindStyle {
  color: string;
  /** The initial scale (and ECG's fixed one, in mV): bottom and top of the band. */
  lo: number;
  hi: number;
  /** Pleth and resp have no physical unit: they are scaled to the last sweep's range, as a
   *  monitor's auto-size does. ECG keeps a fixed gain so ST changes and amplitude read true. */
  autoscale: boolean;
}

// Central-station convention: ECG green, SpO2/pleth cyan, resp yellow; the numerics use the
// same colours (styles.css --ecg, --spo2, --resp).
export const KIND_STYLE: Record<TraceKind, KindStyle> = {
  [TraceKind.Ecg]: { color: "#39ff88", lo: -0.6, hi: 1.6, autoscale: false },
  [TraceKind.Pleth]: { color: "#5cc8ff", lo: -0.05, hi: 1.05, autoscale: true },
  [TraceKind.Resp]: { color: "#ffd84d", lo: -0.6, hi: 0.6, autoscale: true },
};
export const KINDS: TraceKind[] = [TraceKind.Ecg, TraceKind.Pleth, TraceKind.Resp];

export class Band {
  readonly kind: TraceKind;
  rect: Rect = { x: 0, y: 0, w: 0, h: 0 };
  sweep: SweepTrace | null = null;
  /** performance.now() of the last samples received for this channel. */
  lastSampleAt: number | null = null;
  /** What the canvas shows for this band now. */
  shown: BandState = { live: false, reason: "" };
  lo: number;
  hi: number;
  /** The band's place in the DOM: its `data-state` says "live" or the reason it is flat
   *  (written only when the state changes), for assistive tech and the window tests. */
  readonly el: HTMLElement | null;

  constructor(kind: TraceKind, el: HTMLElement | null = null) {
    this.kind = kind;
    this.el = el;
    this.lo = KIND_STYLE[kind].lo;
    this.hi = KIND_STYLE[kind].hi;
  }

  push(samples: Float32Array, rateHz: number, now: number): void {
    this.lastSampleAt = now;
    this.sweep?.push(samples, rateHz);
  }

  /** Sets the band's rectangle; the canvas was cleared, so the sweep starts again. */
  place(rect: Rect): void {
    this.rect = rect;
    this.restart();
    this.shown = { live: false, reason: "" };
  }

  restart(): void {
    this.sweep = new SweepTrace({
      columns: Math.max(10, this.rect.w),
      windowSeconds: SWEEP_SECONDS,
      delaySeconds: PLAYBACK_DELAY_S,
    });
  }
}

export interface TraceTile {
  bands: Band[];
  surface: TileSurface;
  /** Which of the painter's groups draws this tile (consecutive grid rows share one). */
  group: number;
  /** performance.now() of this tile's last paint. */
  lastPaint: number | null;
  hasDevice: boolean;
  connection: ConnectionState;
}

/** One small opaque canvas per tile, behind its band labels. */
export class TileSurface {
  readonly canvas: HTMLCanvasElement;
  readonly ctx: CanvasRenderingContext2D | null;

  constructor() {
    this.canvas = document.createElement("canvas");
    this.canvas.className = "wave-canvas";
    this.canvas.setAttribute("aria-hidden", "true");
    // Opaque: composited without blending; the canvas paints the tile colour itself.
    this.ctx = this.canvas.getContext("2d", { alpha: false });
  }

  /** Sizes the canvas to `w`x`h` CSS px and clears it to the tile colour. */
  resize(w: number, h: number): void {
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.max(1, Math.floor(w * dpr));
    this.canvas.height = Math.max(1, Math.floor(h * dpr));
    const g = this.ctx;
    if (g === null) return;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = TILE_BG;
    g.fillRect(0, 0, w, h);
  }
}

/**
 * Draws the tiles in groups of consecutive grid rows, one group per frame, each tile with the
 * time since its own last paint. Software painting repaints the bounding box of a frame's
 * changes (past ten changed rectangles WebKit unites them): all tiles at once would repaint
 * the whole screen every frame; one group repaints a band of rows. With four groups each tile
 * moves at 15 Hz on a 60 Hz display, a few pixels a step at central-station sweep speeds.
 */
export class TracePainter {
  private frame = 0;
  groups = 1;
  /** Milliseconds the last paint() spent in script, for the frame benchmark. */
  lastScriptMs = 0;

  /** Tiles in `rows` grid rows: at most four groups, each of whole consecutive rows. */
  static groupsFor(rows: number): number {
    return Math.max(1, Math.min(4, rows));
  }

  static groupOf(row: number, rows: number, groups: number): number {
    return Math.min(groups - 1, Math.floor((row * groups) / Math.max(1, rows)));
  }

  /** Paints this frame's group; `before` runs first for each of its tiles (the grid applies
   *  the tile's pending numerics there, so DOM changes land in the same region too). */
  paint<T extends TraceTile>(now: number, tiles: readonly T[], before: (t: T) => void): void {
    const t0 = performance.now();
    const group = this.frame++ % this.groups;
    for (const t of tiles) {
      if (t.group !== group) continue;
      before(t);
      const g = t.surface.ctx;
      if (g === null) continue;
      const dt = t.lastPaint === null ? 0 : Math.min(0.25, Math.max(0, (now - t.lastPaint) / 1000));
      t.lastPaint = now;
      g.lineWidth = 1.25;
      for (const b of t.bands) {
        const want = bandState(t.hasDevice, t.connection, b.lastSampleAt, now);
        if (!sameState(want, b.shown)) {
          b.shown = want;
          if (b.el !== null) b.el.dataset["state"] = want.live ? "live" : want.reason;
          g.fillStyle = TILE_BG;
          g.fillRect(b.rect.x, b.rect.y, b.rect.w, b.rect.h);
          if (want.live) b.restart();
          else drawFlat(g, b, want.reason);
        }
        if (!want.live || b.sweep === null) continue;
        const d = b.sweep.advance(dt);
        if (d === null) continue;
        eraseAhead(g, b, d);
        g.strokeStyle = KIND_STYLE[b.kind].color;
        g.beginPath();
        addSegments(g, b, d);
        g.stroke();
      }
    }
    this.lastScriptMs = performance.now() - t0;
  }
}

/** Adds the swept columns and the erase bar ahead of the cursor to the frame's erase path
 *  (filled once for all bands), wrapping at the edge. */
function eraseAhead(g: CanvasRenderingContext2D, b: Band, d: Damage): void {
  const s = b.sweep;
  if (s === null) return;
  const cols = s.columns;
  const { x, y, h } = b.rect;
  const span = Math.min(cols, d.count + ERASE_GAP);
  const first = Math.min(span, cols - d.from);
  g.fillStyle = TILE_BG;
  g.fillRect(x + d.from, y, first, h);
  if (span > first) g.fillRect(x, y, span - first, h);
  // A full sweep ended: pleth and resp take the range they just showed as the next scale.
  if (KIND_STYLE[b.kind].autoscale && d.from + d.count > cols) autoscale(b, s);
}

function autoscale(b: Band, s: SweepTrace): void {
  let lo = Infinity;
  let hi = -Infinity;
  for (let c = 0; c < s.columns; c++) {
    const a = s.min[c];
    const z = s.max[c];
    if (a === undefined || z === undefined || Number.isNaN(a) || Number.isNaN(z)) continue;
    lo = Math.min(lo, a);
    hi = Math.max(hi, z);
  }
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return;
  // A flat signal keeps a minimum span, so noise is not blown up to full height.
  const span = Math.max(hi - lo, (KIND_STYLE[b.kind].hi - KIND_STYLE[b.kind].lo) * 0.1);
  b.lo = lo - span * 0.08;
  b.hi = lo + span * 1.08;
}

function addSegments(g: CanvasRenderingContext2D, b: Band, d: Damage): void {
  const s = b.sweep;
  if (s === null) return;
  const { x, y, h } = b.rect;
  const k = h / (b.hi - b.lo);
  const cols = s.columns;
  let pen = false;
  // Join the column drawn last frame to this frame's first, or every frame boundary leaves a
  // one-pixel break (a dotted trace when each frame moves a few columns).
  const prev = (d.from - 1 + cols) % cols;
  const pHi = s.max[prev];
  if (d.from > 0 && pHi !== undefined && !Number.isNaN(pHi)) {
    g.moveTo(x + prev + 0.5, Math.max(y, Math.min(y + h, y + (b.hi - pHi) * k)));
    pen = true;
  }
  for (let i = 0; i < d.count; i++) {
    const c = (d.from + i) % cols;
    const lo = s.min[c];
    const hi = s.max[c];
    if (lo === undefined || hi === undefined || Number.isNaN(lo) || Number.isNaN(hi)) {
      pen = false;
      continue;
    }
    const px = x + c + 0.5;
    const yHi = Math.max(y, Math.min(y + h, y + (b.hi - hi) * k));
    const yLo = Math.max(y, Math.min(y + h, y + (b.hi - lo) * k));
    if (!pen || (c === 0 && i > 0)) g.moveTo(px, yHi);
    else g.lineTo(px, yHi);
    g.lineTo(px, yLo);
    pen = true;
  }
}

/** A stopped channel: a flat dashed line across the band and the reason at its left. */
function drawFlat(g: CanvasRenderingContext2D, b: Band, reason: string): void {
  const { x, y, w, h } = b.rect;
  if (w <= 0 || h <= 0) return;
  const mid = Math.round(y + h / 2) + 0.5;
  g.save();
  g.strokeStyle = KIND_STYLE[b.kind].color;
  g.globalAlpha = 0.7;
  g.lineWidth = 1;
  g.setLineDash([6, 5]);
  g.beginPath();
  g.moveTo(x, mid);
  g.lineTo(x + w, mid);
  g.stroke();
  g.setLineDash([]);
  g.globalAlpha = 1;
  const size = Math.max(9, Math.min(13, Math.floor(h * 0.45)));
  g.font = `${size}px system-ui, "DejaVu Sans", sans-serif`;
  g.textBaseline = "bottom";
  const label = reason.toUpperCase();
  const tw = g.measureText(label).width;
  // The reason sits on a dark patch just above the line, right of the band's DOM label.
  const tx = x + Math.min(44, w * 0.25);
  g.fillStyle = TILE_BG;
  g.fillRect(tx - 2, mid - size - 2, tw + 4, size + 1);
  g.fillStyle = KIND_STYLE[b.kind].color;
  g.fillText(label, tx, mid - 1);
  g.restore();
}
