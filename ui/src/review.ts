// Review (full disclosure) and trends: the pure parts, tested without a window. Window math
// (around an alarm, pan, zoom), turning stored segments into canvas paths, and the tabular
// trend view.

// The types are generated from the Rust ones (ts-rs, src/gen): they cannot drift.
export type { WaveSegment } from "./gen/WaveSegment";
export type { ReviewWave } from "./gen/ReviewWave";
export type { TrendPoint } from "./gen/TrendPoint";
export type { TrendSeries } from "./gen/TrendSeries";
export type { ReviewTrend } from "./gen/ReviewTrend";
import type { AlarmLogRow } from "./gen/AlarmLogRow";
import type { ReviewTrend } from "./gen/ReviewTrend";
import type { ReviewWave } from "./gen/ReviewWave";
import type { StoreGap } from "./gen/StoreGap";
/** An alarm marker on the trend: the bed's alarm log rows. */
export type TrendAlarm = AlarmLogRow;

/** Zoom steps of the waveform view, in seconds of screen. */
export const ZOOMS_S = [10, 30, 60, 300];
/** Trend ranges, in hours. */
export const TREND_HOURS = [1, 8, 24, 168];

/** The 30 s a nurse reviews around an alarm: 15 s before, 15 s after (as the core's). */
export function around(tMs: number): [number, number] {
  return [tMs - 15_000, tMs + 15_000];
}

/** Moves a window by `fraction` of its width (negative: back in time), never past `nowMs`. */
export function pan(from: number, to: number, fraction: number, nowMs: number): [number, number] {
  const width = to - from;
  let f = from + width * fraction;
  if (f + width > nowMs) f = nowMs - width;
  return [Math.round(f), Math.round(f + width)];
}

/** A window of `seconds` centred where the current one is centred, never past `nowMs`. */
export function zoom(from: number, to: number, seconds: number, nowMs: number): [number, number] {
  const mid = (from + to) / 2;
  const half = (seconds * 1000) / 2;
  let f = mid - half;
  if (f + 2 * half > nowMs) f = nowMs - 2 * half;
  return [Math.round(f), Math.round(f + 2 * half)];
}

/** Canvas polylines for a wave in a box: one per segment, so a gap in the data stays a gap.
 *  `lo`/`hi` are the values at the bottom and top of the box. */
export function wavePaths(
  w: ReviewWave,
  width: number,
  height: number,
  lo: number,
  hi: number,
): [number, number][][] {
  const span = w.to_ms - w.from_ms;
  const range = hi - lo || 1;
  return w.segments.map((s) => {
    const out: [number, number][] = [];
    // Reduced segments hold min/max pairs per step: both at the step's x.
    const per = w.reduced ? 2 : 1;
    s.values.forEach((v, i) => {
      const t = s.t0_ms + Math.floor(i / per) * s.step_ms;
      const x = ((t - w.from_ms) / span) * width;
      const y = height - ((v - lo) / range) * height;
      out.push([x, Math.min(height, Math.max(0, y))]);
    });
    return out;
  });
}

/** The values' range with 10 % room, for scaling a wave or a trend panel. */
export function valueRange(values: number[]): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!Number.isFinite(lo)) return [0, 1];
  const pad = Math.max((hi - lo) * 0.1, 0.5);
  return [lo - pad, hi + pad];
}

export interface TableRow {
  t_ms: number;
  values: (number | null)[];
}

/** The tabular trend: one row per `stepMs` bucket (newest first), each column the series'
 *  last value in the bucket. */
export function trendTable(t: ReviewTrend, stepMs: number): TableRow[] {
  const buckets = new Map<number, (number | null)[]>();
  t.series.forEach((s, col) => {
    for (const p of s.points) {
      const b = Math.floor(p.t_ms / stepMs) * stepMs;
      let row = buckets.get(b);
      if (row === undefined) {
        row = t.series.map(() => null);
        buckets.set(b, row);
      }
      row[col] = p.value;
    }
  });
  return [...buckets.entries()].sort((a, b) => b[0] - a[0]).map(([t_ms, values]) => ({ t_ms, values }));
}

/** Table step for a trend span: a screenful of rows at each range. */
export function tableStepMs(spanMs: number): number {
  const h = spanMs / 3_600_000;
  if (h <= 1) return 60_000;
  if (h <= 8) return 5 * 60_000;
  if (h <= 24) return 15 * 60_000;
  return 60 * 60_000;
}

/** Alarm onsets in a trend, for markers. */
export function onsets(t: ReviewTrend): TrendAlarm[] {
  return t.alarms.filter((a) => a.kind === "raised");
}

/** "Full disclosure has a gap from 10:42:05 to 10:44:10 (database or disk is full)", one
 *  sentence per gap; "" for none. */
export function gapText(gaps: StoreGap[]): string {
  const t = (ms: number): string => new Date(ms).toLocaleTimeString();
  return gaps.map((g) => `Full disclosure has a gap from ${t(g.from_ms)} to ${t(g.to_ms)} (${g.reason})`).join(" · ");
}
