import { describe, expect, it } from "vitest";
import type { LimitReview } from "./gen/LimitReview";
import { fmtDuration, fmtShare, fmtSpread, replayCaveat, suggestions } from "./stats";

const review = (over: Partial<LimitReview>): LimitReview => ({
  bed: "bed-01",
  condition: "limit:spo2_low",
  rule: { id: "spo2_low", label: "SpO2 low", code: 150456, direction: "low", threshold: 90, priority: "medium", hysteresis: 1, delay_ms: 10000 },
  live_alarms: 10,
  replayed_alarms: 10,
  triggers: { n: 10, min: 84, median: 88, max: 89 },
  alternatives: [
    { change: "limit 90 → 88", rule: { id: "spo2_low", label: "SpO2 low", code: 150456, direction: "low", threshold: 88, priority: "medium", hysteresis: 1, delay_ms: 10000 }, alarms: 4 },
    { change: "delay 10 s → 15 s", rule: { id: "spo2_low", label: "SpO2 low", code: 150456, direction: "low", threshold: 90, priority: "medium", hysteresis: 1, delay_ms: 15000 }, alarms: 10 },
  ],
  values_from_ms: 1,
  limits_changed: false,
  ...over,
});

describe("unit statistics", () => {
  it("formats durations, shares and spreads", () => {
    expect(fmtDuration(null)).toBe("—");
    expect(fmtDuration(9400)).toBe("9 s");
    expect(fmtDuration(95000)).toBe("1 min 35 s");
    expect(fmtDuration(120000)).toBe("2 min");
    expect(fmtDuration(3_900_000)).toBe("1 h 5 min");
    expect(fmtShare(0.0123)).toBe("1.2 %");
    expect(fmtSpread({ n: 0, p50_ms: null, p90_ms: null, max_ms: null })).toBe("—");
    expect(fmtSpread({ n: 3, p50_ms: 30000, p90_ms: 120000, max_ms: 300000 })).toBe("p50 30 s · p90 2 min · max 5 min (3)");
  });
  it("compares each alternative with the replay of the rule as it is", () => {
    const s = suggestions(review({}));
    expect(s[0]).toEqual({ change: "limit 90 → 88", alarms: 4, delta: "−60 %", fewer: true });
    expect(s[1]).toEqual({ change: "delay 10 s → 15 s", alarms: 10, delta: "±0 %", fewer: false });
    expect(suggestions(review({ replayed_alarms: 0 }))[0]?.delta).toBe("—");
  });
  it("says when the replay cannot be trusted", () => {
    expect(replayCaveat(review({}))).toBeNull();
    expect(replayCaveat(review({ limits_changed: true }))).toContain("limits changed");
    expect(replayCaveat(review({ values_from_ms: null }))).toContain("no stored values");
    expect(replayCaveat(review({ replayed_alarms: 9 }))).toBe("the replay gives 9, the log 10");
  });
});
