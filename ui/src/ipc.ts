// Every call the window makes to the station core, typed. The error codes are generated
// from the Rust enum (gen/ErrorCode.ts); each command is one line here, so views never spell
// a command name or an argument key.

import { Channel, invoke } from "@tauri-apps/api/core";
import type { ErrorCode } from "./gen/ErrorCode";
import type { AlarmLogRow, AlarmSnapshot, LimitRule } from "./alarms";
import type { ConnectionState, Numeric } from "./format";
import type { ReviewTrend, ReviewWave } from "./review";
import type { Session, SyncStatus, UserView } from "./session";

export interface BedView {
  index: number;
  id: string;
  label: string;
  device: string | null;
  connection: ConnectionState;
  last_seen_ms: number | null;
  numerics: Numeric[];
}

export interface WardSnapshot {
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

export type ExportRequest =
  | { kind: "strip"; bed: string; from_ms: number; seconds: number; format: "png" | "svg" }
  | { kind: "trend"; bed: string; from_ms: number; to_ms: number; format: "png" | "svg" };

export interface IpcError {
  code: ErrorCode;
  message: string;
}

/** The core's refusal or failure as {code, message}, whatever was thrown. */
export function asIpcError(e: unknown): IpcError {
  const err = e as Partial<IpcError> | null;
  return { code: err?.code ?? "internal", message: err?.message ?? String(e) };
}

export const ipc = {
  snapshot: () => invoke<WardSnapshot>("ward_snapshot"),
  login: (username: string, secret: string) => invoke<Session>("session_login", { username, secret }),
  logout: () => invoke<null>("session_logout"),
  lock: () => invoke<null>("session_lock"),
  unlock: (secret: string) => invoke<Session>("session_unlock", { secret }),
  touch: () => invoke<null>("session_touch"),
  acknowledge: (id: number) => invoke<number>("alarm_acknowledge", { id }),
  audioPause: (bed: string | null) => invoke<number>("alarm_audio_pause", { bed }),
  audioOff: (bed: string | null) => invoke<number>("alarm_audio_off", { bed }),
  alarmPause: (bed: string) => invoke<number>("alarm_pause", { bed }),
  setLimits: (bed: string, rules: LimitRule[]) => invoke<number>("alarm_set_limits", { bed, rules }),
  history: (bed: string | null, limit: number) => invoke<AlarmLogRow[]>("alarm_history", { bed, limit }),
  limits: (bed: string) => invoke<LimitRule[]>("alarm_limits", { bed }),
  users: () => invoke<UserView[]>("users_list"),
  assignBeds: (nurse: string, beds: string[]) => invoke<null>("beds_assign", { nurse, beds }),
  admit: (bed: string, device: string) => invoke<null>("bed_admit", { bed, device }),
  discharge: (bed: string) => invoke<null>("bed_discharge", { bed }),
  wave: (bed: string, channel: number, fromMs: number, toMs: number, maxPoints: number) =>
    invoke<ReviewWave>("review_wave", { bed, channel, fromMs, toMs, maxPoints }),
  trend: (bed: string, fromMs: number, toMs: number) => invoke<ReviewTrend>("review_trend", { bed, fromMs, toMs }),
  exportReview: (request: ExportRequest) => invoke<string>("review_export", { request }),
  liveStream: (onFrame: (buf: ArrayBuffer) => void) => {
    const channel = new Channel<ArrayBuffer>();
    channel.onmessage = onFrame;
    return invoke<number>("live_stream", { channel });
  },
};
