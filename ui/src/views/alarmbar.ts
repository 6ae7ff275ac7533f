// The alarm bar: every visible alarm, highest priority first, each with its state and an
// acknowledge button. Updated in place (keyed by alarm id).

import { alarmText, barOrder, stateText, type Alarm, type AlarmSnapshot } from "../alarms";
import { el, must, setText } from "../dom";
import { ipc } from "../ipc";
import { place } from "../state";
import { act } from "./session";

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
let lastShape = "";
const barMore = el("button", "alarm-more");
barMore.dataset["testid"] = "alarm-more";
barMore.title = "Alarms that do not fit in the bar: open the unit's alarm list";

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
  item.ack.addEventListener("click", () => void act(() => ipc.acknowledge(a.id)));
  root.append(item.prio, item.place, item.label, item.state, item.ack);
  return item;
}

/** Updates the bar in place (keyed by alarm id), so a button never vanishes from under the
 *  pointer between two refreshes. */
export function renderAlarmBar(snap: AlarmSnapshot, nowMs: number): void {
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
  // Count the items past the bar's right edge (room kept for the counter itself). Reading
  // positions forces a layout, so only when the alarms, their states or the width changed.
  const shape = `${window.innerWidth}|${list.map((a) => `${a.id}:${a.inactivation.state}:${alarmText(a)}`).join(",")}`;
  if (shape === lastShape) return;
  lastShape = shape;
  if (barMore.parentElement !== bar) bar.append(barMore);
  const limit = bar.clientWidth - 110;
  let hidden = 0;
  for (const item of barItems.values()) {
    const past = item.root.offsetLeft + item.root.offsetWidth > limit;
    item.root.style.visibility = past ? "hidden" : "";
    if (past) hidden += 1;
  }
  barMore.hidden = hidden === 0;
  setText(barMore, `+${hidden} more`);
}

/** The "+N more" counter opens the unit's alarm list. */
export function initAlarmBar(openUnit: () => void): void {
  barMore.addEventListener("click", openUnit);
}
