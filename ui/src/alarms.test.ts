import { describe, expect, it } from "vitest";
import { audioText, barOrder, countdown, otherText, parseThreshold, restartText, stateText, tileAlarm, type Alarm, type AlarmSnapshot, type OtherAlarm } from "./alarms";

const alarm = (over: Partial<Alarm>): Alarm => ({
  id: 1,
  bed: "bed-03",
  condition: { type: "limit", id: "spo2_low" },
  key: "limit:spo2_low",
  label: "SpO2 low",
  technical: false,
  priority: "medium",
  onset_ms: 1000,
  cause_active: true,
  escalated: false,
  value: 85,
  limit: 90,
  inactivation: { state: "none" },
  ...over,
});

describe("alarms", () => {
  it("orders the bar by priority, then age, and hides alarm-paused ones", () => {
    const list = [
      alarm({ id: 1, priority: "low", onset_ms: 1 }),
      alarm({ id: 2, priority: "high", onset_ms: 50 }),
      alarm({ id: 3, priority: "high", onset_ms: 10 }),
      alarm({ id: 4, priority: "medium", inactivation: { state: "alarm_paused", by: "a", until_ms: 9 } }),
    ];
    expect(barOrder(list).map((a) => a.id)).toEqual([3, 2, 1]);
  });

  it("colours a tile by its highest alarm; acknowledged and low are steady", () => {
    const list = [alarm({ id: 1 }), alarm({ id: 2, priority: "high", label: "Desaturation", value: 78 })];
    expect(tileAlarm(list, "bed-03")).toEqual({
      priority: "high",
      flashing: true,
      text: "Desaturation 78 · SpO2 low 85",
    });
    expect(tileAlarm(list, "bed-04").priority).toBeNull();
    const acked = [alarm({ priority: "high", inactivation: { state: "acknowledged", by: "ana", at_ms: 1 } })];
    expect(tileAlarm(acked, "bed-03").flashing).toBe(false);
    expect(tileAlarm([alarm({ priority: "low" })], "bed-03").flashing).toBe(false);
    expect(tileAlarm([alarm({ cause_active: false, value: 36.55 })], "bed-03").text).toBe("SpO2 low 36.5 (latched)");
  });

  it("shows inactivation states with the time left", () => {
    expect(countdown(125_000, 0)).toBe("2:05");
    expect(countdown(0, 5_000)).toBe("0:00");
    expect(stateText(alarm({ inactivation: { state: "audio_paused", by: "a", until_ms: 61_500 } }), 0)).toBe(
      "AUDIO PAUSED 1:02",
    );
    expect(stateText(alarm({ inactivation: { state: "acknowledged", by: "nurse.ana", at_ms: 0 } }), 0)).toBe(
      "ACKNOWLEDGED by nurse.ana",
    );
    expect(stateText(alarm({ cause_active: false }), 0)).toBe("LATCHED");
  });

  it("accepts only plain numbers as thresholds", () => {
    expect(parseThreshold(" 92 ")).toBe(92);
    expect(parseThreshold("36.5")).toBe(36.5);
    expect(parseThreshold("-1")).toBe(-1);
    expect(parseThreshold("")).toBeNull();
    expect(parseThreshold("9O")).toBeNull();
    expect(parseThreshold("1e400")).toBeNull();
  });
});

describe("audioText", () => {
  const bursts = { callbacks: 0, bursts_low: 0, bursts_medium: 0, bursts_high: 0 };
  const snap = (over: Partial<AlarmSnapshot>): AlarmSnapshot => ({
    alarms: [],
    audio: { ok: true, detail: "", playing: null, ...bursts },
    driver_ok: true,
    audio_pause_s: 120,
    alarm_pause_s: 120,
    allow_audio_off: false,
    restart: null,
    others: [],
    metrics: {
      active_high: 0,
      active_medium: 0,
      active_low: 0,
      log_rows: 0,
      log_rows_waiting: 0,
      inputs: 0,
      self_checks: 0,
      self_check_failures: 0,
      notifications_sent: 0,
      notifications_failed: 0,
      notifications_dropped: 0,
    },
    ...over,
  });
  it("says sounding, paused with its countdown, unavailable, or ready", () => {
    expect(audioText(snap({ audio: { ok: true, detail: "", playing: "high", ...bursts } }), 0).text).toBe("Sounding: HIGH");
    const paused = alarm({ inactivation: { state: "audio_paused", by: "n", until_ms: 65_000 } });
    expect(audioText(snap({ alarms: [paused] }), 0).text).toBe("Audio paused 1:05");
    expect(audioText(snap({ alarms: [paused] }), 70_000).text).toBe("Audio ready");
    expect(audioText(snap({ audio: { ok: false, detail: "no device", playing: null, ...bursts } }), 0)).toEqual({ text: "AUDIO UNAVAILABLE", bad: true });
    expect(audioText(snap({ audio: null }), 0).text).toBe("Audio starting");
  });
});

describe("restartText", () => {
  it("shortens the station's restart line for the header", () => {
    expect(restartText("Station restarted at 2026-12-04 03:12:04; 1 alarm restored")).toBe(
      "Restarted 03:12:04 · 1 alarm restored",
    );
    expect(restartText("Station restarted at 2026-12-04 03:12:04; no alarm was active")).toBe(
      "Restarted 03:12:04 · no alarm was active",
    );
    expect(restartText(null)).toBeNull();
    expect(restartText("something else")).toBe("something else");
  });
});

describe("otherText", () => {
  const other = (over: Partial<OtherAlarm["alarm"]>): OtherAlarm => ({
    station: "st-4w",
    station_name: "4 West",
    alarm: {
      bed: "4w-02",
      bed_label: "Bed 2",
      key: "limit:spo2_desat",
      label: "Desaturation",
      priority: "high",
      onset_ms: 0,
      silenced: false,
      acknowledged_by: null,
      latched: false,
      ...over,
    },
  });
  it("names the station and bed first, then what and its state there", () => {
    expect(otherText(other({}))).toEqual({ place: "4 West · Bed 2", what: "Desaturation", state: "sounding there" });
    expect(otherText(other({ silenced: true, acknowledged_by: "nurse.ana at station st-5e" })).state).toBe(
      "acknowledged by nurse.ana at station st-5e",
    );
    expect(otherText(other({ silenced: true, latched: true })).state).toBe("silenced there · latched");
  });
});
