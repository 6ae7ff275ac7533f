// Every call the window makes to the station core, typed. The error codes are generated
// from the Rust enum (gen/ErrorCode.ts); each command is one line here, so views never spell
// a command name or an argument key.

import { Channel, invoke } from "@tauri-apps/api/core";
import type { AdmitArgs } from "./gen/AdmitArgs";
import type { AlarmIdArgs } from "./gen/AlarmIdArgs";
import type { AlarmLogRow } from "./gen/AlarmLogRow";
import type { AssignArgs } from "./gen/AssignArgs";
import type { BedArgs } from "./gen/BedArgs";
import type { BedOrUnitArgs } from "./gen/BedOrUnitArgs";
import type { ExportArgs } from "./gen/ExportArgs";
import type { FollowedArgs } from "./gen/FollowedArgs";
import type { HistoryArgs } from "./gen/HistoryArgs";
import type { LoginArgs } from "./gen/LoginArgs";
import type { Patient } from "./gen/Patient";
import type { PatientAdmitArgs } from "./gen/PatientAdmitArgs";
import type { PatientTransferArgs } from "./gen/PatientTransferArgs";
import type { PatientUpdateArgs } from "./gen/PatientUpdateArgs";
import type { SetLimitsArgs } from "./gen/SetLimitsArgs";
import type { StatisticsArgs } from "./gen/StatisticsArgs";
import type { TrendArgs } from "./gen/TrendArgs";
import type { UnitStatistics } from "./gen/UnitStatistics";
import type { UnlockArgs } from "./gen/UnlockArgs";
import type { WaveArgs } from "./gen/WaveArgs";
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
export type { Request } from "./gen/Request";
export type { WindowSnapshot } from "./gen/WindowSnapshot";

/** The core's refusal or failure as {code, message}, whatever was thrown. */
export function asIpcError(e: unknown): IpcError {
  const err = e as Partial<IpcError> | null;
  return { code: err?.code ?? "internal", message: err?.message ?? String(e) };
}

// Each command's `args` type is generated from the struct the Rust command takes (gen/*Args).
export const ipc = {
  snapshot: () => invoke<WindowSnapshot>("ward_snapshot"),
  login: (username: string, secret: string) =>
    invoke<Session>("session_login", { args: { username, secret } satisfies LoginArgs }),
  logout: () => invoke<null>("session_logout"),
  lock: () => invoke<null>("session_lock"),
  unlock: (secret: string) => invoke<Session>("session_unlock", { args: { secret } satisfies UnlockArgs }),
  touch: () => invoke<null>("session_touch"),
  acknowledge: (id: number) => invoke<number>("alarm_acknowledge", { args: { id } satisfies AlarmIdArgs }),
  acknowledgeFollowed: (station: string, bed: string, key: string) =>
    invoke<null>("alarm_acknowledge_followed", { args: { station, bed, key } satisfies FollowedArgs }),
  audioPause: (bed: string | null) => invoke<number>("alarm_audio_pause", { args: { bed } satisfies BedOrUnitArgs }),
  audioOff: (bed: string | null) => invoke<number>("alarm_audio_off", { args: { bed } satisfies BedOrUnitArgs }),
  alarmPause: (bed: string) => invoke<number>("alarm_pause", { args: { bed } satisfies BedArgs }),
  setLimits: (bed: string, rules: LimitRule[]) =>
    invoke<number>("alarm_set_limits", { args: { bed, rules } satisfies SetLimitsArgs }),
  history: (bed: string | null, limit: number) =>
    invoke<AlarmLogRow[]>("alarm_history", { args: { bed, limit } satisfies HistoryArgs }),
  limits: (bed: string) => invoke<LimitRule[]>("alarm_limits", { args: { bed } satisfies BedArgs }),
  unitStatistics: (days: number) => invoke<UnitStatistics>("unit_statistics", { args: { days } satisfies StatisticsArgs }),
  users: () => invoke<UserView[]>("users_list"),
  assignBeds: (nurse: string, beds: string[]) =>
    invoke<null>("beds_assign", { args: { nurse, beds } satisfies AssignArgs }),
  admit: (bed: string, device: string) => invoke<null>("bed_admit", { args: { bed, device } satisfies AdmitArgs }),
  discharge: (bed: string) => invoke<null>("bed_discharge", { args: { bed } satisfies BedArgs }),
  patientAdmit: (bed: string, patient: Patient) =>
    invoke<null>("patient_admit", { args: { bed, patient } satisfies PatientAdmitArgs }),
  patientTransfer: (from: string, to: string) =>
    invoke<null>("patient_transfer", { args: { from, to } satisfies PatientTransferArgs }),
  patientDischarge: (bed: string) => invoke<null>("patient_discharge", { args: { bed } satisfies BedArgs }),
  patientUpdate: (patient: Patient) =>
    invoke<null>("patient_update", { args: { patient } satisfies PatientUpdateArgs }),
  wave: (bed: string, channel: number, from_ms: number, to_ms: number, max_points: number) =>
    invoke<ReviewWave>("review_wave", { args: { bed, channel, from_ms, to_ms, max_points } satisfies WaveArgs }),
  trend: (bed: string, from_ms: number, to_ms: number) =>
    invoke<ReviewTrend>("review_trend", { args: { bed, from_ms, to_ms } satisfies TrendArgs }),
  exportReview: (request: Request) => invoke<string>("review_export", { args: { request } satisfies ExportArgs }),
  liveStream: (onFrame: (buf: ArrayBuffer) => void) => {
    const channel = new Channel<ArrayBuffer>();
    channel.onmessage = onFrame;
    return invoke<number>("live_stream", { channel });
  },
};
