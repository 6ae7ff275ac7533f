import { describe, expect, it } from "vitest";
import { bandState, CHANNEL_TIMEOUT_MS, sameState } from "./channels";

describe("bandState", () => {
  it("is live while samples arrive from an online monitor", () => {
    expect(bandState(true, "online", 1000, 1000 + CHANNEL_TIMEOUT_MS)).toEqual({ live: true });
  });
  it("says no signal when one channel stops while the monitor stays online", () => {
    expect(bandState(true, "online", 1000, 1001 + CHANNEL_TIMEOUT_MS)).toEqual({ live: false, reason: "no signal" });
    expect(bandState(true, "online", null, 0)).toEqual({ live: false, reason: "no signal" });
  });
  it("names the monitor's state when the whole monitor is gone", () => {
    expect(bandState(true, "silent", 1000, 1000)).toEqual({ live: false, reason: "monitor silent" });
    expect(bandState(true, "offline", 1000, 1000)).toEqual({ live: false, reason: "monitor offline" });
    expect(bandState(true, "never", null, 0)).toEqual({ live: false, reason: "waiting for the monitor" });
    expect(bandState(false, "never", null, 0)).toEqual({ live: false, reason: "no monitor at this bed" });
  });
  it("compares states by liveness and reason", () => {
    expect(sameState({ live: true }, { live: true })).toBe(true);
    expect(sameState({ live: false, reason: "a" }, { live: false, reason: "a" })).toBe(true);
    expect(sameState({ live: false, reason: "a" }, { live: false, reason: "b" })).toBe(false);
    expect(sameState({ live: true }, { live: false, reason: "a" })).toBe(false);
  });
});
