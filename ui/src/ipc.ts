// Every call the window makes to the station core, typed. The error codes are generated
// from the Rust enum (gen/ErrorCode.ts); each command is one line here, so views never spell
// a command name or an argument key.

import { Channel, invoke } from "@tauri-apps/api/core";
import type { AlarmLogRow } from "./gen/AlarmLogRow";
import type { IpcError } from "./gen/IpcError";
import type { LimitRule } from "./gen/LimitRule";
import type { Request } from "./gen/Request";
import type { ReviewTrend } from "./gen/ReviewTrend";
import type { ReviewWave } from "./gen/ReviewWave";
import type { Session } from "./gen/Session";
import type { UserView } from "./gen/UserView";
import type { WindowSnapshot } from "./gen/WindowSnapshot";

// Every type here is generated from the Rust one (ts-rs, src/gen): a Rust IPC type cannot
// change without these changing, and `make lint` fails when the committed files are stale.
export type { BedView } from "./gen/BedView";
export type { IpcError } from "./gen/IpcError";
export type WardSnapshot = WindowSnapshot;
export type ExportRequest = Request;

/** The core's refusal or failure as {code, message}, whatever was thrown. */
export function asIpcError(e: unknown): IpcError {
  const err = e as Partial<IpcError> | null;
  return { code: err?.code ?? "internal", message: err?.message ?? String(e) };
}

export const ipc = {
  snapshot: () => invoke<WindowSnapshot>("ward_snapshot"),
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
