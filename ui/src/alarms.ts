// Alarm views: the types the core sends (ward_alarm::Alarm, AlarmSnapshot, the log rows) and
// the pure decisions the window makes from them (what a tile shows, countdowns, the bar's
// order). Drawing is in main.ts; everything here is unit-tested.

// The types are generated from the Rust ones (ts-rs, src/gen): they cannot drift.
import type { Alarm } from "./gen/Alarm";
import type { AlarmSnapshot } from "./gen/AlarmSnapshot";
import type { OtherAlarm } from "./gen/OtherAlarm";
import type { Priority } from "./gen/Priority";
export type { Alarm, AlarmSnapshot, OtherAlarm, Priority };
export type { Inactivation } from "./gen/Inactivation";
export type { AudioStatus } from "./gen/AudioStatus";
export type { AlarmLogRow } from "./gen/AlarmLogRow";
export type { LimitRule } from "./gen/LimitRule";

const RANK: Record<Priority, number> = { high: 3, medium: 2, low: 1 };

/** Shown at all: ALARM PAUSED hides the visual signal too. */
export function visible(a: Alarm): boolean {
  return a.inactivation.state !== "alarm_paused";
}

/** The bar's order: highest priority first, then the oldest. */
export function barOrder(alarms: Alarm[]): Alarm[] {
  return alarms
    .filter(visible)
    .sort((a, b) => RANK[b.priority] - RANK[a.priority] || a.onset_ms - b.onset_ms);
}

export interface TileAlarm {
  priority: Priority | null;
  /** Flashing per IEC 60601-1-8 (HIGH fast, MEDIUM slow); LOW is steady, and so is an
   *  alarm someone has acknowledged (it stays coloured until its condition ends). */
  flashing: boolean;
  text: string;
}

/** What a bed's tile shows: the colour of its highest visible alarm, and its text. */
export function tileAlarm(alarms: Alarm[], bed: string): TileAlarm {
  const mine = barOrder(alarms.filter((a) => a.bed === bed));
  const top = mine[0];
  if (top === undefined) return { priority: null, flashing: false, text: "" };
  const flashing = top.priority !== "low" && top.inactivation.state !== "acknowledged";
  return { priority: top.priority, flashing, text: mine.map(alarmText).join(" · ") };
}

export function alarmText(a: Alarm): string {
  let t = a.label;
  if (a.value !== null) t += ` ${formatNumber(a.value)}`;
  if (!a.cause_active) t += " (latched)";
  return t;
}

function formatNumber(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/** "1:05" left until `until`, never negative. */
export function countdown(untilMs: number, nowMs: number): string {
  const s = Math.max(0, Math.ceil((untilMs - nowMs) / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** The inactivation state as the nurse reads it, with the time left where there is one. */
export function stateText(a: Alarm, nowMs: number): string {
  const i = a.inactivation;
  switch (i.state) {
    case "none":
      return a.cause_active ? "ACTIVE" : "LATCHED";
    case "acknowledged":
      return `ACKNOWLEDGED by ${i.by}`;
    case "audio_paused":
      return `AUDIO PAUSED ${countdown(i.until_ms, nowMs)}`;
    case "alarm_paused":
      return `ALARM PAUSED ${countdown(i.until_ms, nowMs)}`;
    case "audio_off":
      return `AUDIO OFF (${i.by})`;
  }
}

/** Parses a threshold typed by a user; null when it is not a finite number. */
export function parseThreshold(text: string): number | null {
  const t = text.trim();
  if (t === "" || !/^-?\d+(\.\d+)?$/.test(t)) return null;
  const v = Number(t);
  return Number.isFinite(v) ? v : null;
}

/** One followed alarm of another station (care group), as the "Other beds" bar says it:
 *  where first (station, bed), then what, then its state there. */
export function otherText(o: OtherAlarm): { place: string; what: string; state: string } {
  const a = o.alarm;
  let state = "sounding there";
  if (a.acknowledged_by !== null) state = `acknowledged by ${a.acknowledged_by}`;
  else if (a.silenced) state = "silenced there";
  if (a.latched) state += " · latched";
  return { place: `${o.station_name} · ${a.bed_label}`, what: a.label, state };
}

/** The header's short form of the restart line ("Station restarted at 2026-12-04
 *  03:12:04; 1 alarm restored" → "Restarted 03:12:04 · 1 alarm restored"); the full line is
 *  its tooltip. `null` when this run followed none. */
export function restartText(label: string | null): string | null {
  if (label === null) return null;
  const m = /^Station restarted at (?:\d{4}-\d{2}-\d{2} )?([\d:]+); (.*)$/.exec(label);
  return m === null ? label : `Restarted ${m[1]} · ${m[2]}`;
}

/** The header's audio line: what the annunciator does now, in one short phrase. */
export function audioText(snap: AlarmSnapshot, nowMs: number): { text: string; bad: boolean } {
  if (snap.audio === null) return { text: "Audio starting", bad: false };
  if (!snap.audio.ok) return { text: "AUDIO UNAVAILABLE", bad: true };
  if (snap.audio.playing !== null) return { text: `Sounding: ${snap.audio.playing.toUpperCase()}`, bad: false };
  let pausedUntil = 0;
  let off = false;
  for (const a of snap.alarms) {
    if (a.inactivation.state === "audio_paused") pausedUntil = Math.max(pausedUntil, a.inactivation.until_ms);
    if (a.inactivation.state === "audio_off") off = true;
  }
  if (pausedUntil > nowMs) return { text: `Audio paused ${countdown(pausedUntil, nowMs)}`, bad: false };
  if (off) return { text: "Audio OFF", bad: true };
  return { text: "Audio ready", bad: false };
}
