// The per-bed panel (and the unit's alarm history): pauses, review, the monitor and nurse
// assignment for charge nurses, the bed's limits, and its alarm log.

import { parseThreshold, type AlarmLogRow, type LimitRule } from "../alarms";
import { el, must, setText } from "../dom";
import { patientLine } from "../format";
import type { Category } from "../gen/Category";
import type { Patient } from "../gen/Patient";
import type { Sex } from "../gen/Sex";
import { asIpcError, ipc } from "../ipc";
import { around } from "../review";
import { roleName, type UserView } from "../session";
import { place, state, stationNow } from "../state";
import { notice } from "./notice";
import { openReview } from "./review";
import { act } from "./session";

export function initPanel(): void {
  must<HTMLElement>("panel-close").addEventListener("click", () => (must<HTMLElement>("panel").hidden = true));
}

function fmtTime(ms: number): string {
  return new Date(ms).toLocaleTimeString();
}

export async function openBed(bed: string | null, label: string): Promise<void> {
  const panel = must<HTMLElement>("panel");
  panel.hidden = false;
  panel.dataset["bed"] = bed ?? "";
  setText(must("panel-title"), bed === null ? "Alarm history — unit" : `${label} — alarms`);
  const body = must<HTMLElement>("panel-body");
  body.replaceChildren(el("p", "muted", "Loading…"));
  const parts: HTMLElement[] = [];
  if (bed !== null) {
    const actions = el("div", "panel-actions");
    const pause = el("button", "", `Alarm pause ${state.alarms?.alarm_pause_s ?? 120} s`);
    pause.dataset["testid"] = "alarm-pause-bed";
    pause.addEventListener("click", () => void act(() => ipc.alarmPause(bed)));
    const audio = el("button", "", `Audio pause ${state.alarms?.audio_pause_s ?? 120} s`);
    audio.dataset["testid"] = "audio-pause-bed";
    audio.addEventListener("click", () => void act(() => ipc.audioPause(bed)));
    const review = el("button", "", "Review / trends");
    review.dataset["testid"] = "review-open";
    review.addEventListener("click", () => {
      const now = stationNow();
      void openReview(bed, label, now - 30_000, now);
    });
    actions.append(pause, audio, review);
    // AUDIO OFF only where the hospital's policy allows it (the core checks again).
    if (state.alarms?.allow_audio_off === true) {
      const off = el("button", "", "Audio off");
      off.dataset["testid"] = "audio-off-bed";
      off.addEventListener("click", () => void act(() => ipc.audioOff(bed)));
      actions.append(off);
    }
    parts.push(actions);
    const admitted = state.snapshot?.beds.find((b) => b.id === bed)?.patient ?? null;
    const who = el("p", admitted === null ? "patient-line none" : "patient-line", patientLine(admitted));
    who.dataset["testid"] = "panel-patient";
    parts.push(who);
    if (state.session?.role === "charge_nurse" && !state.session.locked) {
      parts.push(patientEditor(bed, admitted?.patient ?? null));
      parts.push(deviceEditor(bed));
      try {
        parts.push(assignEditor(bed, await ipc.users()));
      } catch (e) {
        parts.push(el("p", "muted", `Users unavailable: ${asIpcError(e).message}`));
      }
    }
    try {
      parts.push(limitsEditor(bed, await ipc.limits(bed)));
    } catch (e) {
      parts.push(el("p", "muted", `Limits unavailable: ${asIpcError(e).message}`));
    }
  }
  try {
    const rows = await ipc.history(bed, 200);
    parts.push(historyTable(rows));
  } catch (e) {
    parts.push(el("p", "muted", `History unavailable: ${asIpcError(e).message}`));
  }
  body.replaceChildren(...parts);
}

function historyTable(rows: AlarmLogRow[]): HTMLElement {
  const table = el("table", "history");
  table.dataset["testid"] = "history";
  const head = el("tr", "");
  for (const h of ["Time", "Bed", "Patient", "Event", "Priority", "Condition", "Value", "Limit", "By", ""]) head.append(el("th", "", h));
  table.append(head);
  for (const r of rows) {
    const tr = el("tr", `ev-${r.kind}`);
    tr.dataset["testid"] = "history-row";
    tr.dataset["kind"] = r.kind;
    for (const v of [
      fmtTime(r.t_ms),
      place(r.bed),
      r.patient ?? "",
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
        void openReview(bed, place(bed), from, to);
      });
      cell.append(go);
    }
    tr.append(cell);
    table.append(tr);
  }
  if (rows.length === 0) table.append(el("tr", "", "No alarm events yet"));
  return table;
}

/** Charge nurses: who is in the bed. Admit (empty bed), or update, transfer and discharge
 *  the patient there. The core checks every field and refuses what would overwrite someone. */
function patientEditor(bed: string, current: Patient | null): HTMLElement {
  const form = el("form", "patient-form");
  form.append(el("h3", "", "Patient"));
  const field = (name: keyof Patient, label: string, value: string, placeholder = ""): HTMLInputElement => {
    const input = document.createElement("input");
    input.name = name;
    input.value = value;
    input.placeholder = placeholder;
    input.dataset["testid"] = `patient-${name}`;
    form.append(el("label", "", label), input);
    return input;
  };
  const choice = (name: keyof Patient, label: string, options: string[], value: string): HTMLSelectElement => {
    const select = document.createElement("select");
    select.dataset["testid"] = `patient-${name}`;
    for (const o of options) {
      const opt = document.createElement("option");
      opt.value = o;
      opt.textContent = o;
      select.append(opt);
    }
    select.value = value;
    form.append(el("label", "", label), select);
    return select;
  };
  const mrn = field("mrn", "MRN", current?.mrn ?? "");
  const authority = field("authority", "Authority", current?.authority ?? "", "e.g. CITYHOSP");
  const family = field("family", "Family name", current?.family ?? "");
  const given = field("given", "Given name", current?.given ?? "");
  const birth = field("birth_date", "Born", current?.birth_date ?? "", "YYYY-MM-DD");
  const sex = choice("sex", "Sex", ["F", "M", "O", "U"], current?.sex ?? "U");
  const category = choice("category", "Category", ["adult", "pediatric", "neonatal"], current?.category ?? "adult");
  if (current !== null) mrn.readOnly = true;
  const read = (): Patient => ({
    mrn: mrn.value.trim(),
    authority: authority.value.trim(),
    family: family.value.trim(),
    given: given.value.trim(),
    birth_date: birth.value.trim(),
    sex: sex.value as Sex,
    category: category.value as Category,
    visit: current?.visit ?? null,
  });
  const buttons = el("div", "panel-actions");
  const button = (text: string, testid: string, run: () => Promise<unknown>, done: () => string): void => {
    const b = document.createElement("button");
    b.textContent = text;
    b.type = "button";
    b.dataset["testid"] = testid;
    b.addEventListener("click", () => {
      void act(run).then((ok) => {
        if (ok) notice(done());
      });
    });
    buttons.append(b);
  };
  if (current === null) {
    button("Admit patient", "patient-admit", () => ipc.patientAdmit(bed, read()), () => `${read().family} admitted to ${place(bed)}`);
  } else {
    button("Save", "patient-update", () => ipc.patientUpdate(read()), () => `${place(bed)}: patient details saved`);
    const to = document.createElement("select");
    to.dataset["testid"] = "patient-transfer-to";
    for (const b of state.snapshot?.beds ?? []) {
      if (b.id === bed || b.patient !== null) continue;
      const o = document.createElement("option");
      o.value = b.id;
      o.textContent = b.label;
      to.append(o);
    }
    button("Transfer to", "patient-transfer", () => ipc.patientTransfer(bed, to.value), () => `${current.family} moved to ${place(to.value)}`);
    buttons.append(to);
    button("Discharge patient", "patient-discharge", () => ipc.patientDischarge(bed), () => `${current.family} discharged from ${place(bed)}`);
  }
  form.append(buttons);
  form.addEventListener("submit", (ev) => ev.preventDefault());
  return form;
}

/** Charge nurses: the bed's monitor. Discharge ends the bed's alarms (the core logs who);
 *  admit takes a device id, offering the devices that publish without a bed. */
function deviceEditor(bed: string): HTMLElement {
  const form = el("form", "device");
  const current = state.snapshot?.beds.find((b) => b.id === bed)?.device ?? null;
  form.append(el("h3", "", "Monitor"));
  if (current !== null) {
    const btn = el("button", "", `Discharge ${current}`);
    btn.dataset["testid"] = "discharge-bed";
    form.append(btn);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void act(() => ipc.discharge(bed)).then((ok) => {
        if (ok) notice(`${current} discharged from ${place(bed)}`);
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
  for (const d of state.snapshot?.unassigned ?? []) {
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
    void act(() => ipc.admit(bed, device)).then((ok) => {
      if (ok) notice(`${device} admitted to ${place(bed)}`);
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
    void act(() => ipc.assignBeds(u.username, beds)).then((ok) => {
      if (ok) notice(`${place(bed)} assigned to ${u.display_name}`);
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
    void act(() => ipc.setLimits(bed, next)).then((ok) => {
      if (ok) notice("Limits saved");
    });
  });
  return form;
}
