import type { AlarmLogRow } from "./gen/AlarmLogRow";
import { describe, expect, it } from "vitest";
import { around, gapText, onsets, pan, tableStepMs, trendTable, valueRange, wavePaths, zoom, type ReviewTrend, type ReviewWave } from "./review";

const row: AlarmLogRow = {
  t_ms: 0,
  kind: "raised",
  alarm_id: 1,
  bed: "bed-01",
  condition: "limit:hr_high",
  label: "HR high",
  priority: "high",
  value: 130,
  limit: 120,
  user: null,
  detail: null,
  patient: null,
};

describe("review windows", () => {
  it("opens 15 s either side of an alarm", () => {
    expect(around(100_000)).toEqual([85_000, 115_000]);
  });
  it("pans by half a window and never into the future", () => {
    expect(pan(0, 30_000, -0.5, 1e9)).toEqual([-15_000, 15_000]);
    expect(pan(0, 30_000, 0.5, 40_000)).toEqual([10_000, 40_000]);
  });
  it("zooms about the centre", () => {
    expect(zoom(0, 30_000, 10, 1e9)).toEqual([10_000, 20_000]);
    expect(zoom(0, 30_000, 60, 40_000)).toEqual([-20_000, 40_000]);
  });
});

describe("wave paths", () => {
  const w: ReviewWave = {
    bed: "bed-01",
    channel: 131330,
    from_ms: 0,
    to_ms: 1000,
    gaps: [],
    samples: 4,
    reduced: false,
    patient: "no patient admitted",
    segments: [
      { t0_ms: 0, step_ms: 250, values: [0, 1] },
      { t0_ms: 750, step_ms: 250, values: [0.5, 2] },
    ],
  };
  it("keeps a gap between segments and maps time and value into the box", () => {
    const p = wavePaths(w, 100, 10, 0, 1);
    expect(p.length).toBe(2);
    expect(p[0]).toEqual([
      [0, 10],
      [25, 0],
    ]);
    // 2 is above the box: clamped to its top.
    expect(p[1]).toEqual([
      [75, 5],
      [100, 0],
    ]);
  });
  it("draws reduced min/max pairs at the same x", () => {
    const r = { ...w, reduced: true, segments: [{ t0_ms: 0, step_ms: 500, values: [0, 1, 0.2, 0.8] }] };
    const xs = wavePaths(r, 100, 10, 0, 1)[0]!.map((p) => p[0]);
    expect(xs).toEqual([0, 0, 50, 50]);
  });
  it("pads the value range", () => {
    expect(valueRange([0, 10])).toEqual([-1, 11]);
    expect(valueRange([])).toEqual([0, 1]);
  });
});

describe("trend table", () => {
  const t: ReviewTrend = {
    bed: "bed-01",
    from_ms: 0,
    to_ms: 180_000,
    resolution: "raw",
    series: [
      {
        code: 1,
        label: "HR",
        unit: "bpm",
        points: [
          { t_ms: 1_000, value: 70, min: 70, max: 70, n: 1 },
          { t_ms: 59_000, value: 72, min: 72, max: 72, n: 1 },
          { t_ms: 61_000, value: 80, min: 80, max: 80, n: 1 },
        ],
      },
      { code: 2, label: "SpO2", unit: "%", points: [{ t_ms: 2_000, value: 97, min: 97, max: 97, n: 1 }] },
    ],
    alarms: [
      { ...row, t_ms: 5_000, kind: "raised" },
      { ...row, t_ms: 9_000, kind: "acknowledged" },
    ],
  };
  it("has one row per bucket, newest first, with each series' last value", () => {
    expect(trendTable(t, 60_000)).toEqual([
      { t_ms: 60_000, values: [80, null] },
      { t_ms: 0, values: [72, 97] },
    ]);
  });
  it("picks a step for each range and marks onsets only", () => {
    expect(tableStepMs(3_600_000)).toBe(60_000);
    expect(tableStepMs(168 * 3_600_000)).toBe(3_600_000);
    expect(onsets(t).map((a) => a.t_ms)).toEqual([5_000]);
  });
});

describe("gaps in full disclosure", () => {
  it("says each gap in words with its reason", () => {
    const g = { from_ms: Date.UTC(2026, 11, 4, 10, 0, 0), to_ms: Date.UTC(2026, 11, 4, 10, 2, 0), vitals: 5, waves: 9, events: 0, reason: "database or disk is full" };
    expect(gapText([])).toBe("");
    const text = gapText([g]);
    expect(text.startsWith("Full disclosure has a gap from ")).toBe(true);
    expect(text.endsWith("(database or disk is full)")).toBe(true);
    expect(gapText([g, g]).split(" · ")).toHaveLength(2);
  });
});
