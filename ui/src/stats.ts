// Unit statistics, the pure part: durations, shares and the limit review's suggestions as
// the charge nurse reads them. Unit-tested; the view only places them.

import type { LimitReview } from "./gen/LimitReview";
import type { Spread } from "./gen/Spread";

/** 95000 -> "1 min 35 s"; null -> "—". */
export function fmtDuration(ms: number | null): string {
  if (ms === null) return "—";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 === 0 ? `${m} min` : `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtShare(x: number): string {
  return `${(x * 100).toFixed(1)} %`;
}

/** "p50 30 s · p90 2 min · max 5 min (12)" */
export function fmtSpread(s: Spread): string {
  if (s.n === 0) return "—";
  return `p50 ${fmtDuration(s.p50_ms)} · p90 ${fmtDuration(s.p90_ms)} · max ${fmtDuration(s.max_ms)} (${s.n})`;
}

export interface Suggestion {
  change: string;
  alarms: number;
  /** Against the replay of the rule as it is: "−60 %". */
  delta: string;
  /** The alternative is worth showing: fewer alarms than the rule as it is. */
  fewer: boolean;
}

/** Each alternative of a review, with its change against the unchanged rule's replay. */
export function suggestions(r: LimitReview): Suggestion[] {
  const base = r.replayed_alarms;
  return r.alternatives.map((a) => {
    const d = base === 0 ? 0 : Math.round(((a.alarms - base) / base) * 100);
    return { change: a.change, alarms: a.alarms, delta: base === 0 ? "—" : `${d > 0 ? "+" : d < 0 ? "−" : "±"}${Math.abs(d)} %`, fewer: a.alarms < base };
  });
}

/** Whether the replay can be trusted for this review, and if not why. */
export function replayCaveat(r: LimitReview): string | null {
  if (r.limits_changed) return "limits changed during the period: the live count mixes rules";
  if (r.values_from_ms === null) return "no stored values in the period";
  if (r.replayed_alarms !== r.live_alarms) return `the replay gives ${r.replayed_alarms}, the log ${r.live_alarms}`;
  return null;
}
