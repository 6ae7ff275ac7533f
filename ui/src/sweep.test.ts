import { describe, expect, it } from "vitest";
import { SweepTrace } from "./sweep";

const ramp = (n: number, start = 0) => Float32Array.from({ length: n }, (_, i) => start + i);

describe("SweepTrace", () => {
  it("waits for the playback delay, then sweeps at the sample rate", () => {
    // 100 columns over 4 s at 250 Hz: 10 samples per column.
    const t = new SweepTrace({ columns: 100, windowSeconds: 4, delaySeconds: 0.1 });
    t.push(ramp(20), 250);
    expect(t.advance(0.04)).toBeNull(); // 20 < 25 samples of delay
    t.push(ramp(20, 20), 250);
    const d = t.advance(0.04); // 10 samples due
    expect(d).toEqual({ from: 0, count: 2 });
    expect(t.position).toBe(1);
    expect(t.min[0]).toBe(0);
    expect(t.max[0]).toBe(9);
    expect(t.queued).toBe(30);
  });

  it("keeps spikes visible by storing min and max per column", () => {
    const t = new SweepTrace({ columns: 10, windowSeconds: 1, delaySeconds: 0 });
    const s = new Float32Array(25);
    s[12] = 5; // an R wave inside column 0 (25 samples per column at 250 Hz)
    t.push(s, 250);
    t.advance(0.1);
    expect(t.max[0]).toBe(5);
  });

  it("wraps around the window and never owes a burst after running dry", () => {
    const t = new SweepTrace({ columns: 5, windowSeconds: 1, delaySeconds: 0 });
    t.push(ramp(4), 5); // 1 sample per column
    t.advance(0.8);
    expect(t.position).toBe(4);
    expect(t.advance(10)).toBeNull(); // dry: nothing is owed for the wait
    t.push(ramp(2, 100), 5);
    const d = t.advance(0.4);
    expect(d?.from).toBe(4);
    expect(t.position).toBe(1); // wrapped past the right edge
    expect(t.max[4]).toBe(100);
    expect(t.max[0]).toBe(101);
  });

  it("drops backlog beyond a window so a stalled view catches up", () => {
    const t = new SweepTrace({ columns: 10, windowSeconds: 1, delaySeconds: 0 });
    t.push(ramp(1000), 100);
    expect(t.queued).toBe(100);
  });
});

describe("SweepTrace stale columns", () => {
  it("never reports the column ahead of the cursor with the previous sweep's value", () => {
    const s = new SweepTrace({ columns: 4, windowSeconds: 4, delaySeconds: 0 });
    // One sample per column at 1 Hz: two full sweeps, the second at a different level.
    s.push(new Float32Array([1, 1, 1, 1]), 1);
    s.advance(4);
    s.push(new Float32Array([5]), 1);
    const d = s.advance(1);
    expect(d).not.toBeNull();
    // Column 0 has the new value; column 1 (the cursor, no sample yet) is blank, not 1.
    expect(s.max[0]).toBe(5);
    expect(Number.isNaN(s.max[1] ?? 0)).toBe(true);
  });
});

describe("SweepTrace on a wide trace", () => {
  it("keeps a slow channel at the sweep speed, each sample spanning its columns", () => {
    // 20 columns over 1 s at 5 Hz: each sample covers 4 columns, so the sweep crosses the
    // trace in 1 s like every other channel, with no gaps between samples.
    const t = new SweepTrace({ columns: 20, windowSeconds: 1, delaySeconds: 0 });
    t.push(ramp(3, 10), 5);
    t.advance(0.6);
    expect(t.position).toBe(12);
    expect([...t.max.slice(0, 12)]).toEqual([10, 10, 10, 10, 11, 11, 11, 11, 12, 12, 12, 12]);
    t.push(ramp(2, 13), 5);
    t.advance(0.4);
    expect(t.position).toBe(0); // a full sweep in 1 s
    expect(t.max[19]).toBe(14);
  });
});
