// The station window: a ward overview of bed tiles (DOM for text, one canvas for every
// trace), fed by snapshots (numerics, state; twice a second) and a binary live stream
// (samples; one frame per station tick over a Tauri Channel).

import type { ErrorCode } from "./gen/ErrorCode";
import { Channel, invoke } from "@tauri-apps/api/core";
import { decodeFrame, TraceKind } from "./frame";
import {
  CODES,
  connectionLabel,
  formatLastSeen,
  formatNibp,
  formatTemp,
  formatValue,
  numericValue,
  type ConnectionState,
  type Numeric,
} from "./format";
import { SweepTrace, type Damage } from "./sweep";
import {
  alarmText,
  barOrder,
  parseThreshold,
  stateText,
  tileAlarm,
  type Alarm,
  type AlarmLogRow,
  type AlarmSnapshot,
  type LimitRule,
} from "./alarms";
import { refusal, roleName, sessionText, syncText, type Session, type SyncStatus, type UserView } from "./session";
import {
  around,
  onsets,
  pan,
  tableStepMs,
  trendTable,
  valueRange,
  wavePaths,
  zoom,
  ZOOMS_S,
  TREND_HOURS,
  type ReviewTrend,
  type ReviewWave,
} from "./review";

interface BedView {
  index: number;
  id: string;
  label: string;
  device: string | null;
  connection: ConnectionState;
  last_seen_ms: number | null;
  numerics: Numeric[];
}

interface WardSnapshot {
  station: string;
  now_ms: number;
  broker: string;
  beds: BedView[];
  unassigned: { device: string; connection: ConnectionState; last_seen_ms: number | null }[];
  alarms: AlarmSnapshot;
  metrics: {
    broker: { connections_active: number; messages_in: number; messages_dropped: number; malformed_packets: number };
    ingest: Record<string, number>;
    store: { records_written: number; queue_full: number; write_errors: number };
    sync: SyncStatus;
  };
  session: Session | null;
}

const SWEEP_SECONDS = 4;
// Samples wait this long before drawing so the 30 Hz stream's jitter never shows.
const PLAYBACK_DELAY_S = 0.15;
// ECG display range in mV, top to bottom of the trace area.
const ECG_TOP_MV = 1.6;
const ECG_BOTTOM_MV = -0.6;
const ERASE_GAP = 10;

interface Tile {
  root: HTMLElement;
  trace: HTMLElement;
  fields: Record<"state" | "seen" | "hr" | "spo2" | "rr" | "nibp" | "temp" | "alarm", HTMLElement>;
  ecg: SweepTrace | null;
  rect: { x: number; y: number; h: number };
  bedId: string;
}

const grid = must<HTMLElement>("grid");
const canvas = must<HTMLCanvasElement>("traces");
const ctx = canvas.getContext("2d");
const tiles: Tile[] = [];

function must<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`missing element #${id}`);
  return el as T;
}

function el(tag: string, cls: string, text = ""): HTMLElement {
  const e = document.createElement(tag);
  e.className = cls;
  if (text !== "") e.textContent = text;
  return e;
}

function showBanner(text: string | null): void {
  const b = must<HTMLElement>("banner");
  b.hidden = text === null;
  b.textContent = text ?? "";
}

function numericBox(label: string, unit: string, testid: string, big = false): [HTMLElement, HTMLElement] {
  const box = el("div", big ? "num big" : "num");
  box.append(el("span", "num-label", label));
  const value = el("span", "num-value", "--");
  value.dataset["testid"] = testid;
  box.append(value, el("span", "num-unit", unit));
  return [box, value];
}

function buildTile(bed: BedView): Tile {
  const root = el("article", "tile");
  root.dataset["testid"] = `tile-${bed.id}`;
  const head = el("header", "tile-head");
  head.append(el("span", "bed-label", bed.label), el("span", "device", bed.device ?? "no device"));
  const state = el("span", "state");
  state.dataset["testid"] = `state-${bed.id}`;
  const seen = el("span", "seen");
  seen.dataset["testid"] = `seen-${bed.id}`;
  head.append(state, seen);
  const body = el("div", "tile-body");
  const trace = el("div", "trace");
  const nums = el("div", "nums");
  const [hrBox, hr] = numericBox("HR", "bpm", `hr-${bed.id}`, true);
  const [spo2Box, spo2] = numericBox("SpO₂", "%", `spo2-${bed.id}`, true);
  const [rrBox, rr] = numericBox("RR", "/min", `rr-${bed.id}`);
  const [nibpBox, nibp] = numericBox("NIBP", "mmHg", `nibp-${bed.id}`);
  const [tempBox, temp] = numericBox("Temp", "°C", `temp-${bed.id}`);
  nums.append(hrBox, spo2Box, rrBox, nibpBox, tempBox);
  body.append(trace, nums);
  const alarm = el("div", "tile-alarm");
  alarm.dataset["testid"] = `alarm-text-${bed.id}`;
  head.addEventListener("click", () => void openBed(bed.id, bed.label));
  head.title = "Alarm history, limits and pauses for this bed";
  root.append(head, body, alarm);
  grid.append(root);
  return {
    root,
    trace,
    fields: { state, seen, hr, spo2, rr, nibp, temp, alarm },
    bedId: bed.id,
    ecg: null,
    rect: { x: 0, y: 0, h: 0 },
  };
}

function setText(e: HTMLElement, text: string): void {
  if (e.textContent !== text) e.textContent = text;
}

function updateTile(t: Tile, bed: BedView, nowMs: number): void {
  t.root.dataset["connection"] = bed.connection;
  setText(t.fields.state, connectionLabel(bed.connection));
  setText(t.fields.seen, formatLastSeen(nowMs, bed.last_seen_ms));
  const stale = bed.connection !== "online";
  t.root.classList.toggle("stale", stale);
  setText(t.fields.hr, formatValue(numericValue(bed.numerics, CODES.HR)));
  setText(t.fields.spo2, formatValue(numericValue(bed.numerics, CODES.SPO2)));
  setText(t.fields.rr, formatValue(numericValue(bed.numerics, CODES.RR)));
  setText(t.fields.nibp, formatNibp(bed.numerics));
  setText(t.fields.temp, formatTemp(bed.numerics));
}

function updateTileAlarm(t: Tile, alarms: Alarm[]): void {
  const a = tileAlarm(alarms, t.bedId);
  if (a.priority === null) delete t.root.dataset["alarm"];
  else t.root.dataset["alarm"] = a.priority;
  t.root.classList.toggle("flashing", a.flashing);
  setText(t.fields.alarm, a.text);
}

/** Places the canvas over the grid and gives every tile its trace rectangle and sweep. */
function layout(): void {
  const dpr = window.devicePixelRatio || 1;
  const w = grid.scrollWidth;
  const h = grid.scrollHeight;
  canvas.style.width = `${w}px`;
  canvas.style.height = `${h}px`;
  canvas.width = Math.floor(w * dpr);
  canvas.height = Math.floor(h * dpr);
  ctx?.setTransform(dpr, 0, 0, dpr, 0, 0);
  const origin = grid.getBoundingClientRect();
  for (const t of tiles) {
    const r = t.trace.getBoundingClientRect();
    // Whole pixels: a fractional clearRect leaves anti-aliased residue of the previous sweep.
    t.rect = {
      x: Math.round(r.left - origin.left),
      y: Math.round(r.top - origin.top),
      h: Math.floor(r.height),
    };
    t.ecg = new SweepTrace({
      columns: Math.max(10, Math.floor(r.width)),
      windowSeconds: SWEEP_SECONDS,
      delaySeconds: PLAYBACK_DELAY_S,
    });
  }
  ctx?.clearRect(0, 0, w, h);
}

function drawDamage(t: Tile, s: SweepTrace, d: Damage): void {
  if (ctx === null) return;
  const { x, y, h } = t.rect;
  const yOf = (mv: number) => y + ((ECG_TOP_MV - mv) / (ECG_TOP_MV - ECG_BOTTOM_MV)) * h;
  const cols = s.columns;
  // Erase the swept columns and a small gap ahead of the cursor, wrapping at the edge.
  const span = Math.min(cols, d.count + ERASE_GAP);
  const firstRun = Math.min(span, cols - d.from);
  ctx.clearRect(x + d.from, y, firstRun, h);
  if (span > firstRun) ctx.clearRect(x, y, span - firstRun, h);
  ctx.strokeStyle = "#39ff88";
  ctx.lineWidth = 1.25;
  ctx.beginPath();
  for (let i = 0; i < d.count; i++) {
    const c = (d.from + i) % cols;
    const lo = s.min[c];
    const hi = s.max[c];
    if (lo === undefined || hi === undefined || Number.isNaN(lo) || Number.isNaN(hi)) continue;
    const px = x + c + 0.5;
    if (i === 0 || c === 0) ctx.moveTo(px, yOf(hi));
    ctx.lineTo(px, yOf(hi));
    ctx.lineTo(px, yOf(lo));
  }
  ctx.stroke();
}

let lastPaint = performance.now();
function paint(now: number): void {
  const dt = Math.min(0.25, Math.max(0, (now - lastPaint) / 1000));
  lastPaint = now;
  for (const t of tiles) {
    if (t.ecg === null) continue;
    const d = t.ecg.advance(dt);
    if (d !== null) drawDamage(t, t.ecg, d);
  }
  requestAnimationFrame(paint);
}

async function refresh(): Promise<void> {
  try {
    const snap = await invoke<WardSnapshot>("ward_snapshot");
    setText(must("station-name"), snap.station);
    setText(must("broker"), `broker ${snap.broker}`);
    setText(must("clock"), new Date(snap.now_ms).toLocaleTimeString());
    const m = snap.metrics;
    const refused = Object.entries(m.ingest)
      .filter(([k]) => k.startsWith("bad_") || k.startsWith("invalid"))
      .reduce((n, [, v]) => n + v, 0);
    setText(
      must("health"),
      `${m.broker.connections_active} devices · ${m.broker.messages_in} msgs · refused ${refused + m.broker.malformed_packets} · stored ${m.store.records_written}`,
    );
    if (tiles.length === 0) {
      for (const bed of snap.beds) tiles.push(buildTile(bed));
      layout();
    }
    labels.clear();
    for (const bed of snap.beds) {
      labels.set(bed.id, bed.label);
      const t = tiles[bed.index];
      if (t !== undefined) {
        updateTile(t, bed, snap.now_ms);
        updateTileAlarm(t, snap.alarms.alarms);
      }
    }
    lastAlarms = snap.alarms;
    lastSnapshot = snap;
    renderAlarmBar(snap.alarms, snap.now_ms);
    if (review !== null) placeReview();
    renderAccount(snap.session);
    const sync = syncText(m.sync, snap.now_ms);
    const syncEl = must<HTMLElement>("sync");
    syncEl.hidden = sync === null;
    if (sync !== null) {
      setText(syncEl, sync.text);
      syncEl.classList.toggle("warn", sync.warn);
      syncEl.title = m.sync.last_error ?? "";
    }
    showBanner(snap.alarms.driver_ok ? null : "ALARM SYSTEM NOT RUNNING: the station's alarm driver has stopped. Call IT.");
  } catch (e) {
    showBanner(`Station core not reachable: ${String(e)}`);
  }
}

function startStream(): void {
  const channel = new Channel<ArrayBuffer>();
  channel.onmessage = (msg) => {
    try {
      const frame = decodeFrame(msg);
      for (const tr of frame.traces) {
        if (tr.kind !== TraceKind.Ecg) continue;
        tiles[tr.bed]?.ecg?.push(tr.samples, tr.rateHz);
      }
    } catch (e) {
      console.error("bad live frame", e);
    }
  };
  invoke("live_stream", { channel }).catch((e: unknown) => showBanner(`Live stream failed: ${String(e)}`));
}

// ---- alarms: the bar, commands, the per-bed panel ----

const labels = new Map<string, string>();
let lastAlarms: AlarmSnapshot | null = null;
// Who acts: the core keeps the session (the page never holds a token) and decides every
// permission; without signing in the window still shows every bed and alarm.
let session: Session | null = null;
let lastSnapshot: WardSnapshot | null = null;

interface IpcError {
  code: ErrorCode;
  message: string;
}

let noticeTimer = 0;
function notice(text: string): void {
  const n = must<HTMLElement>("notice");
  n.textContent = text;
  n.hidden = false;
  window.clearTimeout(noticeTimer);
  noticeTimer = window.setTimeout(() => (n.hidden = true), 6000);
}

function focusFor(where: "signin" | "unlock" | null): void {
  if (where === "signin") must<HTMLInputElement>("signin-user").focus();
  if (where === "unlock") must<HTMLInputElement>("unlock-secret").focus();
}

/** Runs an alarm command as whoever is signed in; refusals are shown with the core's reason. */
async function act(cmd: string, args: Record<string, unknown>): Promise<boolean> {
  try {
    await invoke(cmd, args);
    // A refusal shown a moment ago no longer applies.
    must<HTMLElement>("notice").hidden = true;
    await refresh();
    return true;
  } catch (e) {
    const err = e as Partial<IpcError>;
    const r = refusal(err.code ?? "internal", err.message ?? String(e));
    notice(r.text);
    focusFor(r.focus);
    return false;
  }
}

function renderAccount(s: Session | null): void {
  session = s;
  setText(must("session-text"), sessionText(s));
  must<HTMLElement>("signin").hidden = s !== null;
  must<HTMLElement>("unlock").hidden = s === null || !s.locked;
  must<HTMLElement>("lock").hidden = s === null || s.locked;
  must<HTMLElement>("signout").hidden = s === null;
  document.body.classList.toggle("locked", s?.locked === true);
}

async function sessionCall(cmd: string, args: Record<string, unknown>, form: HTMLFormElement | null): Promise<void> {
  try {
    renderAccount((await invoke<Session | null>(cmd, args)) ?? null);
    form?.reset();
  } catch (e) {
    const err = e as Partial<IpcError>;
    notice(err.message ?? String(e));
  }
  await refresh();
}

must<HTMLFormElement>("signin").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget as HTMLFormElement;
  const username = must<HTMLInputElement>("signin-user").value.trim();
  const secret = must<HTMLInputElement>("signin-secret").value;
  void sessionCall("session_login", { username, secret }, form);
});
must<HTMLFormElement>("unlock").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget as HTMLFormElement;
  void sessionCall("session_unlock", { secret: must<HTMLInputElement>("unlock-secret").value }, form);
});
must("lock").addEventListener("click", () => void sessionCall("session_lock", {}, null));
must("signout").addEventListener("click", () => void sessionCall("session_logout", {}, null));

// Activity at the window postpones auto-lock; at most one call per 5 s.
let lastTouch = 0;
for (const type of ["keydown", "pointerdown"]) {
  window.addEventListener(type, () => {
    const now = Date.now();
    if (session === null || session.locked || now - lastTouch < 5000) return;
    lastTouch = now;
    void invoke("session_touch").catch(() => undefined);
  });
}

function place(bed: string | null): string {
  return bed === null ? "Station" : (labels.get(bed) ?? bed);
}

interface BarItem {
  root: HTMLElement;
  prio: HTMLElement;
  place: HTMLElement;
  label: HTMLElement;
  state: HTMLElement;
  ack: HTMLElement;
}
const barItems = new Map<number, BarItem>();
const barNone = el("div", "alarm-none", "No active alarms");

function barItem(a: Alarm): BarItem {
  const root = el("div", "alarm-item");
  root.dataset["testid"] = `alarm-${a.id}`;
  root.dataset["key"] = a.key;
  root.dataset["bed"] = a.bed ?? "";
  const item: BarItem = {
    root,
    prio: el("span", "alarm-prio"),
    place: el("span", "alarm-place"),
    label: el("span", "alarm-label"),
    state: el("span", "alarm-state"),
    ack: el("button", "ack", "Acknowledge"),
  };
  item.state.dataset["testid"] = `alarm-state-${a.id}`;
  item.ack.dataset["testid"] = `ack-${a.id}`;
  item.ack.addEventListener("click", () => void act("alarm_acknowledge", { id: a.id }));
  root.append(item.prio, item.place, item.label, item.state, item.ack);
  return item;
}

/** Updates the bar in place (keyed by alarm id), so a button never vanishes from under the
 *  pointer between two refreshes. */
function renderAlarmBar(snap: AlarmSnapshot, nowMs: number): void {
  const bar = must<HTMLElement>("alarm-bar");
  const list = barOrder(snap.alarms);
  const keep = new Set(list.map((a) => a.id));
  for (const [id, item] of barItems) {
    if (!keep.has(id)) {
      item.root.remove();
      barItems.delete(id);
    }
  }
  for (const [i, a] of list.entries()) {
    let item = barItems.get(a.id);
    if (item === undefined) {
      item = barItem(a);
      barItems.set(a.id, item);
    }
    item.root.className = `alarm-item prio-${a.priority}`;
    setText(item.prio, a.priority.toUpperCase());
    setText(item.place, place(a.bed));
    setText(item.label, alarmText(a));
    setText(item.state, stateText(a, nowMs));
    item.ack.hidden = a.inactivation.state === "acknowledged";
    if (bar.children[i] !== item.root) bar.insertBefore(item.root, bar.children[i] ?? null);
  }
  if (list.length === 0 && barNone.parentElement !== bar) bar.append(barNone);
  if (list.length > 0) barNone.remove();
  const audio = must<HTMLElement>("audio-state");
  const playing = snap.audio?.playing;
  setText(
    audio,
    snap.audio === null ? "audio: starting" : !snap.audio.ok ? "AUDIO UNAVAILABLE" : playing ? `sounding ${playing}` : "audio: quiet",
  );
  audio.classList.toggle("bad", snap.audio !== null && !snap.audio.ok);
  setText(must("audio-pause-all"), `Audio pause ${snap.audio_pause_s} s`);
}

must<HTMLElement>("audio-pause-all").addEventListener("click", () => void act("alarm_audio_pause", { bed: null }));
must<HTMLElement>("unit-history").addEventListener("click", () => void openBed(null, "Unit"));
must<HTMLElement>("panel-close").addEventListener("click", () => (must<HTMLElement>("panel").hidden = true));

function fmtTime(ms: number): string {
  return new Date(ms).toLocaleTimeString();
}

async function openBed(bed: string | null, label: string): Promise<void> {
  const panel = must<HTMLElement>("panel");
  panel.hidden = false;
  panel.dataset["bed"] = bed ?? "";
  setText(must("panel-title"), bed === null ? "Alarm history — unit" : `${label} — alarms`);
  const body = must<HTMLElement>("panel-body");
  body.replaceChildren(el("p", "muted", "Loading…"));
  const parts: HTMLElement[] = [];
  if (bed !== null) {
    const actions = el("div", "panel-actions");
    const pause = el("button", "", `Alarm pause ${lastAlarms?.alarm_pause_s ?? 120} s`);
    pause.dataset["testid"] = "alarm-pause-bed";
    pause.addEventListener("click", () => void act("alarm_pause", { bed }));
    const audio = el("button", "", `Audio pause ${lastAlarms?.audio_pause_s ?? 120} s`);
    audio.dataset["testid"] = "audio-pause-bed";
    audio.addEventListener("click", () => void act("alarm_audio_pause", { bed }));
    const review = el("button", "", "Review / trends");
    review.dataset["testid"] = "review-open";
    review.addEventListener("click", () => {
      const now = lastSnapshot?.now_ms ?? Date.now();
      void openReview(bed, label, now - 30_000, now);
    });
    actions.append(pause, audio, review);
    // AUDIO OFF only where the hospital's policy allows it (the core checks again).
    if (lastAlarms?.allow_audio_off === true) {
      const off = el("button", "", "Audio off");
      off.dataset["testid"] = "audio-off-bed";
      off.addEventListener("click", () => void act("alarm_audio_off", { bed }));
      actions.append(off);
    }
    parts.push(actions);
    if (session?.role === "charge_nurse" && !session.locked) {
      parts.push(deviceEditor(bed));
      try {
        parts.push(assignEditor(bed, await invoke<UserView[]>("users_list")));
      } catch (e) {
        parts.push(el("p", "muted", `Users unavailable: ${(e as Partial<IpcError>).message ?? String(e)}`));
      }
    }
    try {
      parts.push(limitsEditor(bed, await invoke<LimitRule[]>("alarm_limits", { bed })));
    } catch (e) {
      parts.push(el("p", "muted", `Limits unavailable: ${(e as Partial<IpcError>).message ?? String(e)}`));
    }
  }
  try {
    const rows = await invoke<AlarmLogRow[]>("alarm_history", { bed, limit: 200 });
    parts.push(historyTable(rows));
  } catch (e) {
    parts.push(el("p", "muted", `History unavailable: ${(e as Partial<IpcError>).message ?? String(e)}`));
  }
  body.replaceChildren(...parts);
}

function historyTable(rows: AlarmLogRow[]): HTMLElement {
  const table = el("table", "history");
  table.dataset["testid"] = "history";
  const head = el("tr", "");
  for (const h of ["Time", "Bed", "Event", "Priority", "Condition", "Value", "Limit", "By", ""]) head.append(el("th", "", h));
  table.append(head);
  for (const r of rows) {
    const tr = el("tr", `ev-${r.kind}`);
    tr.dataset["testid"] = "history-row";
    tr.dataset["kind"] = r.kind;
    for (const v of [
      fmtTime(r.t_ms),
      place(r.bed),
      r.kind.replace(/_/g, " "),
      r.priority ?? "",
      r.label + (r.detail !== null ? ` (${r.detail})` : ""),
      r.value === null ? "" : String(r.value),
      r.limit === null ? "" : String(r.limit),
      r.user ?? "",
    ])
      tr.append(el("td", "", v));
    tr.dataset["t"] = String(r.t_ms);
    const cell = el("td", "");
    if (r.bed !== null) {
      // From an alarm to the 30 s around it in full disclosure.
      const bed = r.bed;
      const go = el("button", "", "Review");
      go.dataset["testid"] = "review-at";
      go.addEventListener("click", () => {
        const [from, to] = around(r.t_ms);
        void openReview(bed, labels.get(bed) ?? bed, from, to);
      });
      cell.append(go);
    }
    tr.append(cell);
    table.append(tr);
  }
  if (rows.length === 0) table.append(el("tr", "", "No alarm events yet"));
  return table;
}

/** Charge nurses: the bed's monitor. Discharge ends the bed's alarms (the core logs who);
 *  admit takes a device id, offering the devices that publish without a bed. */
function deviceEditor(bed: string): HTMLElement {
  const form = el("form", "device");
  const current = lastSnapshot?.beds.find((b) => b.id === bed)?.device ?? null;
  form.append(el("h3", "", "Monitor"));
  if (current !== null) {
    const btn = el("button", "", `Discharge ${current}`);
    btn.dataset["testid"] = "discharge-bed";
    form.append(btn);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void act("bed_discharge", { bed }).then((ok) => {
        if (ok) notice(`${current} discharged from ${labels.get(bed) ?? bed}`);
      });
    });
    return form;
  }
  const input = document.createElement("input");
  input.dataset["testid"] = "admit-device";
  input.placeholder = "device id";
  input.setAttribute("list", "free-devices");
  const list = document.createElement("datalist");
  list.id = "free-devices";
  for (const d of lastSnapshot?.unassigned ?? []) {
    const o = document.createElement("option");
    o.value = d.device;
    list.append(o);
  }
  const btn = el("button", "", "Admit");
  btn.dataset["testid"] = "admit-bed";
  form.append(input, list, btn);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const device = input.value.trim();
    void act("bed_admit", { bed, device }).then((ok) => {
      if (ok) notice(`${device} admitted to ${labels.get(bed) ?? bed}`);
    });
  });
  return form;
}

/** Charge nurses: which nurse has this bed. Assigning adds the bed to the nurse's beds. */
function assignEditor(bed: string, users: UserView[]): HTMLElement {
  const form = el("form", "assign");
  const nurses = users.filter((u) => u.role === "nurse" && !u.disabled);
  const holders = nurses.filter((u) => u.beds.includes(bed)).map((u) => u.display_name);
  const select = document.createElement("select");
  select.dataset["testid"] = "assign-nurse";
  for (const u of nurses) {
    const o = document.createElement("option");
    o.value = u.username;
    o.textContent = `${u.display_name} (${u.beds.length} beds)`;
    select.append(o);
  }
  const btn = el("button", "", "Assign bed");
  btn.dataset["testid"] = "assign-bed";
  form.append(
    el("h3", "", "Nurse"),
    el("p", "muted", holders.length > 0 ? `Assigned to ${holders.join(", ")}` : `Not assigned to a ${roleName("nurse")}`),
    select,
    btn,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const u = nurses.find((n) => n.username === select.value);
    if (u === undefined) return;
    const beds = [...new Set([...u.beds, bed])];
    void act("beds_assign", { nurse: u.username, beds }).then((ok) => {
      if (ok) notice(`${labels.get(bed) ?? bed} assigned to ${u.display_name}`);
    });
  });
  return form;
}

function limitsEditor(bed: string, rules: LimitRule[]): HTMLElement {
  const form = el("form", "limits");
  const table = el("table", "");
  const inputs: HTMLInputElement[] = [];
  for (const r of rules) {
    const tr = el("tr", "");
    const input = document.createElement("input");
    input.value = String(r.threshold);
    input.size = 6;
    input.dataset["testid"] = `limit-${r.id}`;
    inputs.push(input);
    const cell = el("td", "");
    cell.append(input);
    tr.append(
      el("td", "", r.label),
      el("td", "", r.direction === "low" ? "below" : "above"),
      cell,
      el("td", "muted", `${r.priority}, delay ${r.delay_ms / 1000} s`),
    );
    table.append(tr);
  }
  const save = el("button", "", "Save limits");
  save.dataset["testid"] = "save-limits";
  form.append(el("h3", "", "Limits"), table, save);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const next: LimitRule[] = [];
    for (const [i, r] of rules.entries()) {
      const v = parseThreshold(inputs[i]?.value ?? "");
      if (v === null) {
        notice(`${r.label}: "${inputs[i]?.value ?? ""}" is not a number`);
        return;
      }
      next.push({ ...r, threshold: v });
    }
    void act("alarm_set_limits", { bed, rules: next }).then((ok) => {
      if (ok) notice("Limits saved");
    });
  });
  return form;
}

// ---- review: full disclosure and trends from the ring buffer ----

const CHANNELS: [number, string][] = [
  [131330, "ECG II"],
  [150452, "Pleth"],
  [151552, "Resp"],
];
const PRIO_COLOR: Record<string, string> = { high: "#e02020", medium: "#e0b000", low: "#20b0d0" };
const TREND_PANELS: { label: string; codes: number[] }[] = [
  { label: "HR", codes: [147842] },
  { label: "SpO2", codes: [150456] },
  { label: "RR", codes: [151562] },
  { label: "NIBP", codes: [150021, 150023, 150022] },
  { label: "Temp", codes: [150364] },
];

interface ReviewState {
  bed: string;
  label: string;
  from: number;
  to: number;
  channel: number;
  trendHours: number;
  table: boolean;
}
let review: ReviewState | null = null;
let lastTrend: ReviewTrend | null = null;

function fmtDateTime(ms: number): string {
  return new Date(ms).toLocaleString();
}

/** Keeps the review below the header and alarm bar: alarms stay in sight while reviewing. */
function placeReview(): void {
  const r = must<HTMLElement>("review");
  r.style.top = `${must<HTMLElement>("alarm-bar").getBoundingClientRect().bottom}px`;
}

async function openReview(bed: string, label: string, from: number, to: number): Promise<void> {
  must<HTMLElement>("panel").hidden = true;
  review = { bed, label, from, to, channel: review?.channel ?? 131330, trendHours: review?.trendHours ?? 1, table: false };
  const r = must<HTMLElement>("review");
  r.hidden = false;
  r.dataset["bed"] = bed;
  placeReview();
  setText(must("review-title"), `${label} — review`);
  await Promise.all([loadWave(), loadTrend()]);
}

function sizeCanvas(c: HTMLCanvasElement): CanvasRenderingContext2D | null {
  const dpr = window.devicePixelRatio || 1;
  c.width = Math.max(1, Math.floor(c.clientWidth * dpr));
  c.height = Math.max(1, Math.floor(c.clientHeight * dpr));
  return c.getContext("2d");
}

async function loadWave(): Promise<void> {
  if (review === null) return;
  const st = review;
  const r = must<HTMLElement>("review");
  r.dataset["from"] = String(st.from);
  r.dataset["to"] = String(st.to);
  setText(must("review-range"), `${fmtDateTime(st.from)} – ${new Date(st.to).toLocaleTimeString()} (${Math.round((st.to - st.from) / 1000)} s)`);
  const c = must<HTMLCanvasElement>("review-wave");
  const g = sizeCanvas(c);
  let w: ReviewWave;
  try {
    w = await invoke<ReviewWave>("review_wave", {
      bed: st.bed,
      channel: st.channel,
      fromMs: st.from,
      toMs: st.to,
      maxPoints: c.width * 2,
    });
  } catch (e) {
    notice(`Review: ${(e as Partial<IpcError>).message ?? String(e)}`);
    return;
  }
  if (review !== st || g === null) return;
  r.dataset["samples"] = String(w.samples);
  g.fillStyle = "#05090d";
  g.fillRect(0, 0, c.width, c.height);
  // One-second grid so time can be read off the screen.
  g.strokeStyle = "#17222e";
  g.lineWidth = 1;
  for (let t = Math.ceil(st.from / 1000) * 1000; t < st.to; t += 1000) {
    const x = ((t - st.from) / (st.to - st.from)) * c.width;
    g.beginPath();
    g.moveTo(x, 0);
    g.lineTo(x, c.height);
    g.stroke();
  }
  if (w.samples === 0) {
    g.fillStyle = "#8899aa";
    g.font = `${14 * (window.devicePixelRatio || 1)}px sans-serif`;
    g.fillText("No stored waveform in this window", 12, c.height / 2);
    return;
  }
  const [lo, hi] = valueRange(w.segments.flatMap((s) => s.values));
  g.strokeStyle = st.channel === 131330 ? "#3ee07a" : st.channel === 150452 ? "#4fc3f7" : "#ffd54f";
  g.lineWidth = 1.5 * (window.devicePixelRatio || 1);
  for (const path of wavePaths(w, c.width, c.height, lo, hi)) {
    g.beginPath();
    path.forEach(([x, y], i) => (i === 0 ? g.moveTo(x, y) : g.lineTo(x, y)));
    g.stroke();
  }
}

function trendWindow(st: ReviewState): [number, number] {
  const span = st.trendHours * 3_600_000;
  const now = lastSnapshot?.now_ms ?? Date.now();
  const end = Math.min(now, (st.from + st.to) / 2 + span / 2);
  return [Math.round(end - span), Math.round(end)];
}

async function loadTrend(): Promise<void> {
  if (review === null) return;
  const st = review;
  const [from, to] = trendWindow(st);
  let t: ReviewTrend;
  try {
    t = await invoke<ReviewTrend>("review_trend", { bed: st.bed, fromMs: from, toMs: to });
  } catch (e) {
    notice(`Trends: ${(e as Partial<IpcError>).message ?? String(e)}`);
    return;
  }
  if (review !== st) return;
  lastTrend = t;
  for (const b of document.querySelectorAll<HTMLElement>("#trend-ranges button"))
    b.classList.toggle("on", b.dataset["hours"] === String(st.trendHours));
  must<HTMLElement>("review").dataset["trendPoints"] = String(t.series.reduce((n, s) => n + s.points.length, 0));
  drawTrend(t);
  renderTrendTable(t, st.table);
}

function drawTrend(t: ReviewTrend): void {
  const c = must<HTMLCanvasElement>("review-trend");
  const g = sizeCanvas(c);
  if (g === null) return;
  const dpr = window.devicePixelRatio || 1;
  g.fillStyle = "#05090d";
  g.fillRect(0, 0, c.width, c.height);
  const left = 70 * dpr;
  const plotW = c.width - left - 8 * dpr;
  const panelH = c.height / TREND_PANELS.length;
  const x = (ms: number): number => left + ((ms - t.from_ms) / (t.to_ms - t.from_ms)) * plotW;
  g.font = `${11 * dpr}px sans-serif`;
  TREND_PANELS.forEach((p, i) => {
    const top = i * panelH;
    const series = t.series.filter((s) => p.codes.includes(s.code));
    const [lo, hi] = valueRange(series.flatMap((s) => s.points.flatMap((q) => [q.min, q.max])));
    const y = (v: number): number => top + panelH - 4 * dpr - ((v - lo) / (hi - lo)) * (panelH - 16 * dpr);
    g.strokeStyle = "#17222e";
    g.strokeRect(left, top + 2 * dpr, plotW, panelH - 4 * dpr);
    g.fillStyle = "#8899aa";
    const unit = series[0]?.unit ?? "";
    g.fillText(`${p.label} ${unit}`, 4 * dpr, top + 14 * dpr);
    g.fillText(hi.toFixed(0), 4 * dpr, top + 28 * dpr);
    g.fillText(lo.toFixed(0), 4 * dpr, top + panelH - 6 * dpr);
    for (const a of onsets(t)) {
      g.strokeStyle = PRIO_COLOR[a.priority ?? "low"] ?? "#20b0d0";
      g.lineWidth = 2 * dpr;
      g.beginPath();
      g.moveTo(x(a.t_ms), top + 2 * dpr);
      g.lineTo(x(a.t_ms), top + panelH - 2 * dpr);
      g.stroke();
    }
    const gap = t.resolution === "raw" ? 10_000 : 180_000;
    g.strokeStyle = "#4fc3f7";
    g.lineWidth = 1.5 * dpr;
    for (const s of series) {
      g.beginPath();
      let prev: number | null = null;
      for (const q of s.points) {
        if (prev === null || q.t_ms - prev > gap) g.moveTo(x(q.t_ms), y(q.value));
        else g.lineTo(x(q.t_ms), y(q.value));
        prev = q.t_ms;
      }
      g.stroke();
    }
  });
  // Time labels along the bottom of the last panel.
  g.fillStyle = "#8899aa";
  for (let k = 0; k <= 4; k++) {
    const ms = t.from_ms + ((t.to_ms - t.from_ms) * k) / 4;
    const label = t.to_ms - t.from_ms > 86_400_000 ? new Date(ms).toLocaleString() : new Date(ms).toLocaleTimeString();
    g.fillText(label, Math.min(x(ms), c.width - 120 * dpr), c.height - 2 * dpr);
  }
}

function renderTrendTable(t: ReviewTrend, shown: boolean): void {
  const box = must<HTMLElement>("review-table");
  box.hidden = !shown;
  must<HTMLCanvasElement>("review-trend").hidden = shown;
  if (!shown) return;
  const table = el("table", "history");
  const head = el("tr", "");
  head.append(el("th", "", "Time"));
  for (const s of t.series) head.append(el("th", "", `${s.label} (${s.unit})`));
  table.append(head);
  for (const row of trendTable(t, tableStepMs(t.to_ms - t.from_ms))) {
    const tr = el("tr", "");
    tr.dataset["testid"] = "trend-row";
    tr.append(el("td", "", fmtDateTime(row.t_ms)));
    for (const v of row.values) tr.append(el("td", "", v === null ? "—" : v.toFixed(v < 50 ? 1 : 0)));
    table.append(tr);
  }
  box.replaceChildren(table);
}

async function exportReview(kind: "strip" | "trend", format: "png" | "svg"): Promise<void> {
  if (review === null) return;
  const st = review;
  let request: Record<string, unknown>;
  if (kind === "strip") {
    // The strip is 10-30 s: the window itself, or the 30 s at its centre.
    const seconds = Math.min(30, Math.max(10, Math.round((st.to - st.from) / 1000)));
    const from = Math.round((st.from + st.to) / 2 - (seconds * 1000) / 2);
    request = { kind, bed: st.bed, from_ms: from, seconds, format };
  } else {
    const [from, to] = trendWindow(st);
    request = { kind, bed: st.bed, from_ms: from, to_ms: to, format };
  }
  try {
    const path = await invoke<string>("review_export", { request });
    notice(`Saved ${path}`);
    must<HTMLElement>("review").dataset["exported"] = path;
  } catch (e) {
    const err = e as Partial<IpcError>;
    const r = refusal(err.code ?? "internal", err.message ?? String(e));
    notice(r.text);
    focusFor(r.focus);
  }
}

function moveReview(next: [number, number]): void {
  if (review === null) return;
  [review.from, review.to] = next;
  void loadWave();
  void loadTrend();
}

{
  const zoomSel = must<HTMLSelectElement>("review-zoom");
  for (const z of ZOOMS_S) {
    const o = document.createElement("option");
    o.value = String(z);
    o.textContent = z < 60 ? `${z} s` : `${z / 60} min`;
    zoomSel.append(o);
  }
  zoomSel.value = "30";
  zoomSel.addEventListener("change", () => {
    if (review !== null) moveReview(zoom(review.from, review.to, Number(zoomSel.value), lastSnapshot?.now_ms ?? Date.now()));
  });
  const chanSel = must<HTMLSelectElement>("review-channel");
  for (const [code, name] of CHANNELS) {
    const o = document.createElement("option");
    o.value = String(code);
    o.textContent = name;
    chanSel.append(o);
  }
  chanSel.addEventListener("change", () => {
    if (review === null) return;
    review.channel = Number(chanSel.value);
    void loadWave();
  });
  const now = (): number => lastSnapshot?.now_ms ?? Date.now();
  must<HTMLElement>("review-back").addEventListener("click", () => review && moveReview(pan(review.from, review.to, -0.5, now())));
  must<HTMLElement>("review-fwd").addEventListener("click", () => review && moveReview(pan(review.from, review.to, 0.5, now())));
  must<HTMLElement>("review-now").addEventListener("click", () => review && moveReview(pan(review.from, review.to, 1e6, now())));
  must<HTMLElement>("review-close").addEventListener("click", () => {
    review = null;
    must<HTMLElement>("review").hidden = true;
  });
  const ranges = must<HTMLElement>("trend-ranges");
  for (const h of TREND_HOURS) {
    const b = el("button", "", h < 24 ? `${h} h` : h === 24 ? "24 h" : "7 d");
    b.dataset["hours"] = String(h);
    b.dataset["testid"] = `trend-${h}h`;
    b.addEventListener("click", () => {
      if (review === null) return;
      review.trendHours = h;
      void loadTrend();
    });
    ranges.append(b);
  }
  must<HTMLElement>("trend-table-toggle").addEventListener("click", () => {
    if (review === null || lastTrend === null) return;
    review.table = !review.table;
    renderTrendTable(lastTrend, review.table);
  });
  // A click on the trend moves full disclosure to that moment.
  must<HTMLCanvasElement>("review-trend").addEventListener("click", (ev) => {
    if (review === null || lastTrend === null) return;
    const c = ev.currentTarget as HTMLCanvasElement;
    const left = 70;
    const frac = (ev.offsetX - left) / (c.clientWidth - left - 8);
    if (frac < 0 || frac > 1) return;
    const t = lastTrend.from_ms + frac * (lastTrend.to_ms - lastTrend.from_ms);
    const half = (review.to - review.from) / 2;
    review.from = Math.round(t - half);
    review.to = Math.round(t + half);
    void loadWave();
  });
  for (const [id, kind, format] of [
    ["export-strip-png", "strip", "png"],
    ["export-strip-svg", "strip", "svg"],
    ["export-trend-png", "trend", "png"],
    ["export-trend-svg", "trend", "svg"],
  ] as const)
    must<HTMLElement>(id).addEventListener("click", () => void exportReview(kind, format));
}

window.addEventListener("resize", () => {
  layout();
  if (review !== null) {
    placeReview();
    void loadWave();
    if (lastTrend !== null) drawTrend(lastTrend);
  }
});
void refresh().then(() => {
  startStream();
  requestAnimationFrame(paint);
  setInterval(() => void refresh(), 500);
});
