// Who is signed in at this window, and the hospital-core sync state, as text. Pure, so it is
// tested without a window. The core decides every permission; the window only explains.
import type { LinkStatus } from "./gen/LinkStatus";
import type { ErrorCode } from "./gen/ErrorCode";

// The types are generated from the Rust ones (ts-rs, src/gen): they cannot drift.
import type { Role } from "./gen/Role";
import type { Session } from "./gen/Session";
import type { SyncStatus } from "./gen/SyncStatus";
export type { Role, Session, SyncStatus };
export type { UserView } from "./gen/UserView";

const ROLE_NAMES: Record<Role, string> = {
  viewer: "viewer",
  nurse: "nurse",
  charge_nurse: "charge nurse",
  it_admin: "IT",
};

export function roleName(r: Role): string {
  return ROLE_NAMES[r];
}

/** The header's account line. */
export function sessionText(s: Session | null): string {
  if (s === null) return "Not signed in (view only)";
  const who = `${s.display_name} (${roleName(s.role)})`;
  return s.locked ? `Locked: ${who}` : who;
}

/** "4 s", "3 min", "2 h 5 min": how long events have waited. */
export function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** The header's hospital-core line: connection, backlog and how old the oldest event is.
 *  Returns null when sync is off (nothing to show). */
export function syncText(y: SyncStatus | undefined, nowMs: number): { text: string; warn: boolean } | null {
  if (y === undefined || !y.enabled) return null;
  const state = y.connected ? "core connected" : "core NOT CONNECTED";
  const backlog =
    y.backlog === 0
      ? "all events sent"
      : `${y.backlog} event${y.backlog === 1 ? "" : "s"} waiting` +
        (y.oldest_unsynced_ms !== null ? `, oldest ${age(nowMs - y.oldest_unsynced_ms)}` : "");
  return { text: `${state} · ${backlog}`, warn: !y.connected || y.backlog > 0 };
}

/** The HL7 links (PCD-01 to the EHR's engine, PCD-04 to the alarm manager), beside the
 *  core's state: null when none is configured. */
export function hl7Text(links: readonly LinkStatus[]): { text: string; warn: boolean } | null {
  if (links.length === 0) return null;
  const parts = links.map((l) => {
    const name = l.dest === "pcd04" ? "alarm manager" : "EHR";
    const state = l.connected ? name : `${name} NOT CONNECTED`;
    const extra = [l.backlog > 0 ? `${l.backlog} waiting` : "", l.failed > 0 ? `${l.failed} refused` : ""].filter((x) => x !== "");
    return extra.length > 0 ? `${state} (${extra.join(", ")})` : state;
  });
  return { text: parts.join(" · "), warn: links.some((l) => !l.connected || l.failed > 0 || l.backlog > 0) };
}

/** What the window says when the core refuses an action, and which field to focus. */
export function refusal(code: ErrorCode, message: string): { text: string; focus: "signin" | "unlock" | null } {
  if (code === "not_signed_in") return { text: "Sign in to act on alarms.", focus: "signin" };
  if (code === "locked") return { text: "The station is locked: unlock with your PIN or password.", focus: "unlock" };
  return { text: `Refused: ${message}`, focus: null };
}
