// The window's one state object: what the last snapshot said, who is signed in, what is open.
// Views read it and write only their own part; main.ts wires the refresh loop.

import type { AlarmSnapshot } from "./alarms";
import type { WindowSnapshot } from "./ipc";
import type { ReviewTrend } from "./review";
import type { Session } from "./session";

export interface ReviewState {
  bed: string;
  label: string;
  from: number;
  to: number;
  channel: number;
  trendHours: number;
  table: boolean;
}

export interface State {
  snapshot: WindowSnapshot | null;
  alarms: AlarmSnapshot | null;
  /** Bed id to label, for the alarm bar and messages. */
  labels: Map<string, string>;
  /** Who is signed in at this window (the core keeps the token; the page never holds it). */
  session: Session | null;
  review: ReviewState | null;
  lastTrend: ReviewTrend | null;
  /** Set by main.ts: fetch a snapshot now (after a command) instead of at the next tick. */
  refresh: () => Promise<void>;
}

export const state: State = {
  snapshot: null,
  alarms: null,
  labels: new Map(),
  session: null,
  review: null,
  lastTrend: null,
  refresh: async () => undefined,
};

export function place(bed: string | null): string {
  return bed === null ? "Station" : (state.labels.get(bed) ?? bed);
}

export function stationNow(): number {
  return state.snapshot?.now_ms ?? Date.now();
}
