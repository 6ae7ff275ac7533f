import { describe, expect, it } from "vitest";
import { age, hl7Text, refusal, sessionText, syncText, type Session, type SyncStatus } from "./session";

const session = (over: Partial<Session>): Session => ({
  username: "nurse.ana",
  display_name: "Ana",
  role: "nurse",
  started_ms: 0,
  last_active_ms: 0,
  locked: false,
  has_pin: true,
  ...over,
});

const sync = (over: Partial<SyncStatus>): SyncStatus => ({
  enabled: true,
  upstream: "core:8883",
  connected: true,
  acked_seq: 0,
  last_seq: 0,
  published: 0,
  connects: 0,
  hung_left: 0,
  remote_acks: 0,
  remote_refused: 0,
  backlog: 0,
  oldest_unsynced_ms: null,
  last_error: null,
  ...over,
});

describe("session", () => {
  it("names who is signed in, their role, and a lock", () => {
    expect(sessionText(null)).toBe("Not signed in (view only)");
    expect(sessionText(session({}))).toBe("Ana (nurse)");
    expect(sessionText(session({ role: "charge_nurse", locked: true }))).toBe("Locked: Ana (charge nurse)");
  });

  it("shows the backlog and the age of the oldest unsynced event", () => {
    expect(syncText(sync({ enabled: false }), 0)).toBeNull();
    expect(syncText(undefined, 0)).toBeNull();
    expect(syncText(sync({}), 0)).toEqual({ text: "core connected · all events sent", warn: false });
    expect(syncText(sync({ connected: false, backlog: 12, oldest_unsynced_ms: 1_000 }), 181_000)).toEqual({
      text: "core NOT CONNECTED · 12 events waiting, oldest 3 min",
      warn: true,
    });
    expect(syncText(sync({ backlog: 1, oldest_unsynced_ms: 0 }), 4_500)?.text).toBe(
      "core connected · 1 event waiting, oldest 4 s",
    );
    expect(age(2 * 3600_000 + 5 * 60_000)).toBe("2 h 5 min");
  });

  it("turns refusals into what to do next", () => {
    expect(refusal("not_signed_in", "x")).toEqual({ text: "Sign in to act on alarms.", focus: "signin" });
    expect(refusal("locked", "x").focus).toBe("unlock");
    expect(refusal("not_assigned", "bed 9 is not assigned to you")).toEqual({
      text: "Refused: bed 9 is not assigned to you",
      focus: null,
    });
  });
});

describe("hl7Text", () => {
  const link = (dest: string, connected: boolean, backlog: number, failed: number) => ({
    dest,
    to: "engine:2575",
    connected,
    backlog,
    failed,
    last_error: null,
  });
  it("is absent without HL7 links and names each receiver's state", () => {
    expect(hl7Text([])).toBeNull();
    expect(hl7Text([link("pcd01", true, 0, 0), link("pcd04", true, 0, 0)])).toEqual({
      text: "EHR · alarm manager",
      warn: false,
    });
    expect(hl7Text([link("pcd01", false, 12, 1), link("pcd04", true, 0, 0)])).toEqual({
      text: "EHR NOT CONNECTED (12 waiting, 1 refused) · alarm manager",
      warn: true,
    });
  });
});
