// The "Other beds" bar: alarms of the stations this one follows (care group), apart from this
// station's own alarm bar, outlined rather than filled and never flashing: they are another
// station's to answer, and a nurse here may acknowledge them for it. Hidden when there are
// none. Updated in place, keyed by station, bed and condition.

import { otherText, type OtherAlarm } from "../alarms";
import { el, must, setHidden, setText } from "../dom";
import { ipc } from "../ipc";
import { act } from "./session";

interface Item {
  root: HTMLElement;
  prio: HTMLElement;
  place: HTMLElement;
  what: HTMLElement;
  state: HTMLElement;
  ack: HTMLElement;
}
const items = new Map<string, Item>();

const keyOf = (o: OtherAlarm): string => `${o.station}|${o.alarm.bed}|${o.alarm.key}`;

function item(o: OtherAlarm): Item {
  const root = el("div", "other-item");
  root.dataset["testid"] = `other-${o.station}-${o.alarm.bed}-${o.alarm.key}`;
  const it: Item = {
    root,
    prio: el("span", "other-prio"),
    place: el("span", "other-place"),
    what: el("span", "other-what"),
    state: el("span", "other-state"),
    ack: el("button", "ack", "Acknowledge"),
  };
  it.ack.dataset["testid"] = `other-ack-${o.station}-${o.alarm.bed}-${o.alarm.key}`;
  it.ack.title = `Acknowledge for ${o.station_name}: the station that owns the alarm applies it`;
  const { station, alarm } = o;
  it.ack.addEventListener("click", () => void act(() => ipc.acknowledgeFollowed(station, alarm.bed, alarm.key)));
  root.append(it.prio, it.place, it.what, it.state, it.ack);
  return it;
}

export function renderOtherBar(others: OtherAlarm[]): void {
  const bar = must<HTMLElement>("other-bar");
  setHidden(bar, others.length === 0);
  const keep = new Set(others.map(keyOf));
  for (const [k, it] of items) {
    if (!keep.has(k)) {
      it.root.remove();
      items.delete(k);
    }
  }
  for (const [i, o] of others.entries()) {
    const k = keyOf(o);
    let it = items.get(k);
    if (it === undefined) {
      it = item(o);
      items.set(k, it);
    }
    const t = otherText(o);
    it.root.className = `other-item prio-${o.alarm.priority}`;
    setText(it.prio, o.alarm.priority.toUpperCase());
    setText(it.place, t.place);
    setText(it.what, t.what);
    setText(it.state, t.state);
    it.ack.hidden = o.alarm.acknowledged_by !== null;
    // The first child is the bar's title.
    if (bar.children[i + 1] !== it.root) bar.insertBefore(it.root, bar.children[i + 1] ?? null);
  }
}
