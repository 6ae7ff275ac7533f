// The header, one line at 1280 px: station name, clock, the hospital core's sync state, the
// audio state, the unit-wide buttons and who is signed in. Counters for IT sit in a tooltip.

import { audioText, type AlarmSnapshot } from "../alarms";
import { must, setText } from "../dom";
import { ipc, type WardSnapshot } from "../ipc";
import { syncText } from "../session";
import { act } from "./session";

export function renderHeader(snap: WardSnapshot): void {
  const name = must<HTMLElement>("station-name");
  setText(name, snap.station);
  name.title = snap.station;
  setText(must("clock"), new Date(snap.now_ms).toLocaleTimeString());
  const m = snap.metrics;
  const refused = Object.entries(m.ingest)
    .filter(([k]) => k.startsWith("bad_") || k.startsWith("invalid"))
    .reduce((n, [, v]) => n + v, 0);
  const health = must<HTMLElement>("health");
  setText(health, `${m.broker.connections_active} devices`);
  health.title =
    `broker ${snap.broker} · ${m.broker.messages_in} messages · refused ${refused + m.broker.malformed_packets}` +
    ` · stored ${m.store.records_written}`;
  const sync = syncText(m.sync, snap.now_ms);
  const syncEl = must<HTMLElement>("sync");
  syncEl.hidden = sync === null;
  if (sync !== null) {
    setText(syncEl, sync.text);
    syncEl.classList.toggle("warn", sync.warn);
    syncEl.title = sync.text + (m.sync.last_error !== null ? `\n${m.sync.last_error}` : "");
  }
  renderAudio(snap.alarms, snap.now_ms);
}

function renderAudio(alarms: AlarmSnapshot, nowMs: number): void {
  const audio = must<HTMLElement>("audio-state");
  const a = audioText(alarms, nowMs);
  setText(audio, a.text);
  audio.classList.toggle("bad", a.bad);
  audio.title = alarms.audio?.detail ?? "";
  setText(must("audio-pause-all"), `Audio pause ${alarms.audio_pause_s} s`);
}

export function initHeader(openUnitHistory: () => void): void {
  must("audio-pause-all").addEventListener("click", () => void act(() => ipc.audioPause(null)));
  must("unit-history").addEventListener("click", openUnitHistory);
}
