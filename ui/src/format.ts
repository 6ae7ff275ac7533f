// Display formatting for numerics and connection state. Pure; tested in format.test.ts.

// The types are generated from the Rust ones (ts-rs, src/gen): they cannot drift.
import type { Connection } from "./gen/Connection";
import type { NumericView } from "./gen/NumericView";
export type Numeric = NumericView;
export type ConnectionState = Connection;

export const CODES = {
  HR: 147842,
  SPO2: 150456,
  RR: 151562,
  NIBP_SYS: 150021,
  NIBP_DIA: 150022,
  TEMP_BODY: 150364,
  TEMP: 150344,
} as const;

export function numericValue(list: readonly Numeric[], code: number): number | null {
  const n = list.find((x) => x.code === code);
  return n === undefined ? null : n.value;
}

/** Whole numbers for rates and pressures; one decimal for temperature. */
export function formatValue(value: number | null, decimals = 0): string {
  if (value === null || !Number.isFinite(value)) return "--";
  return value.toFixed(decimals);
}

export function formatNibp(list: readonly Numeric[]): string {
  const s = numericValue(list, CODES.NIBP_SYS);
  const d = numericValue(list, CODES.NIBP_DIA);
  return `${formatValue(s)}/${formatValue(d)}`;
}

export function formatTemp(list: readonly Numeric[]): string {
  const t = numericValue(list, CODES.TEMP_BODY) ?? numericValue(list, CODES.TEMP);
  return formatValue(t, 1);
}

export function formatLastSeen(nowMs: number, lastMs: number | null): string {
  if (lastMs === null) return "never seen";
  const s = Math.max(0, (nowMs - lastMs) / 1000);
  if (s < 1) return "now";
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

export function connectionLabel(c: ConnectionState): string {
  switch (c) {
    case "online":
      return "Online";
    case "silent":
      return "No data";
    case "offline":
      return "Offline";
    case "never":
      return "Not connected";
  }
}

/** The patient line of a tile, the bed panel and review: who is in the bed, or that nobody is. */
export function patientLine(a: { line: string } | null): string {
  return a === null ? "no patient admitted" : a.line;
}
