// Whether a tile's waveform band is live, and if not, why: a channel that stops (sensor off,
// lead off, monitor silent) must show as a flat dashed line with its reason, never as a
// frozen last trace. Pure; tested in channels.test.ts.

import type { ConnectionState } from "./format";

/** A channel with no new samples for this long is shown as stopped. Monitors send every
 *  channel several times a second; 3 s rides out a hiccup without hiding a real stop for long. */
export const CHANNEL_TIMEOUT_MS = 3000;

export type BandState = { live: true } | { live: false; reason: string };

export function bandState(
  hasDevice: boolean,
  connection: ConnectionState,
  lastSampleMs: number | null,
  nowMs: number,
): BandState {
  if (!hasDevice) return { live: false, reason: "no monitor at this bed" };
  if (connection === "never") return { live: false, reason: "waiting for the monitor" };
  if (connection === "silent") return { live: false, reason: "monitor silent" };
  if (connection === "offline") return { live: false, reason: "monitor offline" };
  if (lastSampleMs === null || nowMs - lastSampleMs > CHANNEL_TIMEOUT_MS) return { live: false, reason: "no signal" };
  return { live: true };
}

export function sameState(a: BandState, b: BandState): boolean {
  return a.live === b.live && (a.live || b.live || a.reason === b.reason);
}
