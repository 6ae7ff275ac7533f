// The header, one line at 1280 px: station name, clock, the hospital core's sync state, the
// audio state, the unit-wide buttons and who is signed in. Counters for IT sit in a tooltip.

import { audioText, restartText, type AlarmSnapshot } from "../alarms";
import { must, setHidden, setText } from "../dom";
import { ipc, type WindowSnapshot } from "../ipc";
import { hl7Text, syncText } from "../session";
import { act } from "./session";

let lastTip = 0;

export function renderHeader(snap: WindowSnapshot): void {
  const name = must<HTMLElement>("station-name");
  setText(name, snap.station);
  if (name.title !== snap.station) name.title = snap.station;
  setText(must("clock"), new Date(snap.now_ms).toLocaleTimeString());
  const m = snap.metrics;
  const refused = Object.entries(m.ingest)
    .filter(([k]) => k.startsWith("bad_") || k.startsWith("invalid"))
    .reduce((n, [, v]) => n + v, 0);
  const health = must<HTMLElement>("health");
  setText(health, `${m.broker.connections_active} devices`);
  const tip =
    `broker ${snap.broker} · ${m.broker.messages_in} messages · refused ${refused + m.broker.malformed_packets}` +
    ` · stored ${m.store.records_written}`;
  // The counters change every refresh; a tooltip is only read when hovered, so it is
  // written at most every few seconds rather than invalidating style twice a second.
  if (Date.now() - lastTip > 5000) {
    health.title = tip;
    lastTip = Date.now();
  }
  const sync = syncText(m.sync, snap.now_ms);
  const syncEl = must<HTMLElement>("sync");
  setHidden(syncEl, sync === null);
  if (sync !== null) {
    setText(syncEl, sync.text);
    syncEl.classList.toggle("warn", sync.warn);
    const syncTip = sync.text + (m.sync.last_error !== null ? `\n${m.sync.last_error}` : "");
    if (syncEl.title !== syncTip) syncEl.title = syncTip;
  }
  const hl7 = hl7Text(m.hl7_links);
  const hl7El = must<HTMLElement>("hl7");
  setHidden(hl7El, hl7 === null);
  if (hl7 !== null) {
    setText(hl7El, hl7.text);
    hl7El.classList.toggle("warn", hl7.warn);
    const tip = hl7.text + m.hl7_links.map((l) => (l.last_error !== null ? `\n${l.dest}: ${l.last_error}` : "")).join("");
    if (hl7El.title !== tip) hl7El.title = tip;
  }
  renderAudio(snap.alarms, snap.now_ms);
  const restart = restartText(snap.alarms.restart);
  const restartEl = must<HTMLElement>("restart");
  setHidden(restartEl, restart === null);
  if (restart !== null) {
    setText(restartEl, restart);
    const full = snap.alarms.restart ?? "";
    if (restartEl.title !== full) restartEl.title = full;
  }
}

function renderAudio(alarms: AlarmSnapshot, nowMs: number): void {
  const audio = must<HTMLElement>("audio-state");
  const a = audioText(alarms, nowMs);
  setText(audio, a.text);
  audio.classList.toggle("bad", a.bad);
  const detail = alarms.audio?.detail ?? "";
  if (audio.title !== detail) audio.title = detail;
  setText(must("audio-pause-all"), `Audio pause ${alarms.audio_pause_s} s`);
}

export function initHeader(openUnitHistory: () => void): void {
  must("audio-pause-all").addEventListener("click", () => void act(() => ipc.audioPause(null)));
  must("unit-history").addEventListener("click", openUnitHistory);
}
