// Sweep-style trace state, as on a bedside monitor: a write cursor moves left to right
// across a fixed window, overwriting the oldest trace, with a small erase gap ahead of it.
// Pure: it turns samples and elapsed time into per-pixel-column min/max values; the canvas
// code only draws the columns this reports as changed.

export interface SweepOptions {
  /** Trace width in pixel columns. */
  columns: number;
  /** Seconds of signal across the full width. */
  windowSeconds: number;
  /** Playback delay: samples wait this long in the queue so frame jitter never shows. */
  delaySeconds: number;
}

export interface Damage {
  /** First changed column (inclusive). */
  from: number;
  /** Number of changed columns, possibly wrapping past the right edge. */
  count: number;
}

export class SweepTrace {
  readonly columns: number;
  readonly min: Float32Array;
  readonly max: Float32Array;
  private queue: number[] = [];
  private head = 0;
  private rateHz = 0;
  private cursor = 0;
  private colSamples = 0; // samples already folded into the current column
  private sweepSample = 0; // samples since the sweep last started at column 0
  private due = 0; // fractional samples owed to the display
  private started = false;
  private readonly opts: SweepOptions;

  constructor(opts: SweepOptions) {
    this.opts = opts;
    this.columns = Math.max(1, Math.floor(opts.columns));
    this.min = new Float32Array(this.columns).fill(Number.NaN);
    this.max = new Float32Array(this.columns).fill(Number.NaN);
  }

  get position(): number {
    return this.cursor;
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  push(samples: Float32Array, rateHz: number): void {
    if (rateHz !== this.rateHz) {
      this.rateHz = rateHz;
      this.queue = [];
      this.head = 0;
      this.started = false;
      this.cursor = 0;
      this.colSamples = 0;
      this.sweepSample = 0;
    }
    for (const s of samples) this.queue.push(s);
    // Never hold more than a window of backlog: a stalled window catches up, not lags.
    const cap = Math.ceil(rateHz * (this.opts.windowSeconds + this.opts.delaySeconds));
    if (this.queued > cap) this.head = this.queue.length - cap;
    if (this.head > 4096) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }

  /** Advances the sweep by `dtSeconds`; returns the changed columns or null. */
  advance(dtSeconds: number): Damage | null {
    if (this.rateHz <= 0) return null;
    if (!this.started) {
      // Buffer the playback delay once; from then on the queue absorbs frame jitter.
      if (this.queued < Math.floor(this.rateHz * this.opts.delaySeconds)) return null;
      this.started = true;
    }
    this.due += dtSeconds * this.rateHz;
    const whole = Math.floor(this.due);
    this.due -= whole;
    const take = Math.min(whole, this.queued);
    // Ran dry: wait for data instead of owing a burst that would jump the trace later.
    if (take < whole) this.due = 0;
    if (take <= 0) return null;
    // Sample k of a sweep lands in column floor(k * columns / samplesPerSweep): several
    // samples share a column on a narrow trace (min and max kept), and on a wide one a
    // slow channel's sample spans several columns (filled with its value, so the line is
    // continuous and the sweep keeps the same speed as the other channels).
    const perSweep = this.rateHz * this.opts.windowSeconds;
    const columnOf = (k: number): number => Math.floor((k * this.columns) / perSweep + 1e-9);
    const from = this.cursor;
    for (let i = 0; i < take; i++) {
      const v = this.queue[this.head++] ?? 0;
      const c = this.cursor;
      if (this.colSamples === 0) {
        this.min[c] = v;
        this.max[c] = v;
      } else {
        this.min[c] = Math.min(this.min[c] ?? v, v);
        this.max[c] = Math.max(this.max[c] ?? v, v);
      }
      this.colSamples += 1;
      this.sweepSample += 1;
      const next = columnOf(this.sweepSample);
      if (next > columnOf(this.sweepSample - 1)) {
        for (let k = columnOf(this.sweepSample - 1) + 1; k < next && k < this.columns; k++) {
          this.min[k] = v;
          this.max[k] = v;
        }
        if (this.sweepSample >= perSweep - 1e-9) this.sweepSample = 0;
        this.cursor = columnOf(this.sweepSample) % this.columns;
        this.colSamples = 0;
        // The new column holds the previous sweep's value until a sample lands in it; blank
        // it now so it is never drawn (and joined to its neighbour) with stale data.
        this.min[this.cursor] = Number.NaN;
        this.max[this.cursor] = Number.NaN;
      }
    }
    const moved = (this.cursor - from + this.columns) % this.columns;
    return { from, count: Math.min(moved + 1, this.columns) };
  }
}
