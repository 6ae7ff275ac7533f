//! Commands the window calls. Each is a few lines over the core's sub-handles; errors carry a
//! stable code the UI can branch on.
//!
//! Every command is async and runs its work on Tauri's blocking pool ([`off_main`]): a
//! sign-in (argon2), an export (plotters), an alarm command (which waits for the alarm
//! thread's answer) or a review query never runs on the main thread, where WebKitGTK paints
//! the window, and takes no lock the live stream needs. The stream has its own handle.
//!
//! The window never sees a session token: the shell keeps the token of whoever signed in at
//! this window and passes it to the core, which decides every permission (and audits every
//! denial). A page reload keeps the session; closing the station ends it.

use crate::{AppState, Handles};
use serde::Serialize;
use ward_core::{AlarmCommand, AlarmLogRow, CoreError, ErrorCode, LimitRule, Session, UserView};

#[derive(Debug, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct IpcError {
    /// One of `ui/src/gen/ErrorCode.ts` (generated from [`ErrorCode`]).
    pub code: ErrorCode,
    pub message: String,
}

impl From<CoreError> for IpcError {
    fn from(e: CoreError) -> Self {
        IpcError {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// Runs `f` with clones of the station's sub-handles and this window's session token on the
/// blocking pool, and awaits it.
async fn off_main<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Handles, &str) -> Result<T, IpcError> + Send + 'static,
) -> Result<T, IpcError> {
    let handles = state.station.clone();
    let t = token(state);
    tauri::async_runtime::spawn_blocking(move || f(&handles, &t))
        .await
        .map_err(|e| IpcError {
            code: ErrorCode::Internal,
            message: format!("the command stopped before answering: {e}"),
        })?
}

/// This window's session token ("" when no one is signed in: the core then answers
/// `not_signed_in`).
fn token(state: &AppState) -> String {
    state
        .session
        .lock()
        .ok()
        .and_then(|t| t.clone())
        .unwrap_or_default()
}

async fn act(state: &AppState, a: AlarmCommand) -> Result<usize, IpcError> {
    off_main(state, move |s, t| Ok(s.alarms().act(t, a)?)).await
}

/// The arguments of each command that takes any, one struct per command: the window sends
/// `{ args: {...} }` and its TypeScript type is generated from the struct (ts-rs), so a
/// command's arguments cannot change without the window's types changing with them.
macro_rules! args {
    ($($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty),* $(,)? })*) => {$(
        $(#[$doc])*
        #[derive(Debug, serde::Deserialize)]
        #[cfg_attr(test, derive(ts_rs::TS))]
        #[serde(deny_unknown_fields)]
        pub struct $name { $(pub $field: $ty,)* }
    )*};
}

args! {
    LoginArgs { username: String, secret: String }
    UnlockArgs { secret: String }
    AlarmIdArgs { id: u64 }
    /// A followed station's alarm (care group): the station, its bed, the condition key.
    FollowedArgs { station: String, bed: String, key: String }
    /// `bed: null` is every current alarm.
    BedOrUnitArgs { bed: Option<String> }
    BedArgs { bed: String }
    SetLimitsArgs { bed: String, rules: Vec<LimitRule> }
    HistoryArgs { bed: Option<String>, limit: usize }
    AssignArgs { nurse: String, beds: Vec<String> }
    AdmitArgs { bed: String, device: String }
    PatientAdmitArgs { bed: String, patient: ward_core::Patient }
    PatientTransferArgs { from: String, to: String }
    PatientUpdateArgs { patient: ward_core::Patient }
    WaveArgs { bed: String, channel: u32, from_ms: i64, to_ms: i64, max_points: usize }
    TrendArgs { bed: String, from_ms: i64, to_ms: i64 }
    ExportArgs { request: ward_core::export::Request }
    /// The last `days` days (1-90).
    StatisticsArgs { days: u32 }
}

#[derive(Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct WindowSnapshot {
    #[serde(flatten)]
    pub ward: ward_core::WardSnapshot,
    /// Who is signed in at this window, and whether the session is locked.
    pub session: Option<Session>,
}

/// The window polls this twice a second; each call is also its heartbeat to the alarm
/// system (a window that stops asking raises "Display not responding").
#[tauri::command]
pub async fn ward_snapshot(state: tauri::State<'_, AppState>) -> Result<WindowSnapshot, IpcError> {
    off_main(&state, |s, t| {
        s.alarms().ui_heartbeat();
        Ok(WindowSnapshot {
            ward: s.live().snapshot(),
            session: s.staff().session(t),
        })
    })
    .await
}

#[tauri::command]
pub async fn session_login(
    state: tauri::State<'_, AppState>,
    args: LoginArgs,
) -> Result<Session, IpcError> {
    let (t, session) = off_main(&state, move |s, old| {
        if !old.is_empty() {
            s.staff().logout(old);
        }
        Ok(s.staff().login(&args.username, &args.secret)?)
    })
    .await?;
    if let Ok(mut slot) = state.session.lock() {
        *slot = Some(t);
    }
    Ok(session)
}

#[tauri::command]
pub async fn session_logout(state: tauri::State<'_, AppState>) -> Result<(), IpcError> {
    let t = state.session.lock().ok().and_then(|mut t| t.take());
    // The token is taken out of this window's slot first (so a second sign-out finds none);
    // the closure uses the taken one.
    if let Some(t) = t {
        off_main(&state, move |s, _| {
            s.staff().logout(&t);
            Ok(())
        })
        .await?;
    }
    Ok(())
}

#[tauri::command]
pub async fn session_lock(state: tauri::State<'_, AppState>) -> Result<(), IpcError> {
    off_main(&state, |s, t| {
        s.staff().lock(t);
        Ok(())
    })
    .await
}

/// Unlock with the signed-in user's PIN or password.
#[tauri::command]
pub async fn session_unlock(
    state: tauri::State<'_, AppState>,
    args: UnlockArgs,
) -> Result<Session, IpcError> {
    off_main(&state, move |s, t| Ok(s.staff().unlock(t, &args.secret)?)).await
}

/// Keys and pointer at the window (throttled by the page): postpones auto-lock.
#[tauri::command]
pub async fn session_touch(state: tauri::State<'_, AppState>) -> Result<(), IpcError> {
    off_main(&state, |s, t| {
        s.staff().touch(t);
        Ok(())
    })
    .await
}

#[tauri::command]
pub async fn alarm_acknowledge(
    state: tauri::State<'_, AppState>,
    args: AlarmIdArgs,
) -> Result<usize, IpcError> {
    act(&state, AlarmCommand::Acknowledge { id: args.id }).await
}

/// Acknowledges a followed station's alarm from here (care group); that station applies it.
#[tauri::command]
pub async fn alarm_acknowledge_followed(
    state: tauri::State<'_, AppState>,
    args: FollowedArgs,
) -> Result<(), IpcError> {
    off_main(&state, move |s, t| {
        Ok(s.alarms()
            .acknowledge_followed(t, &args.station, &args.bed, &args.key)?)
    })
    .await
}

/// Audio pause for one bed, or for every current alarm when `bed` is null.
#[tauri::command]
pub async fn alarm_audio_pause(
    state: tauri::State<'_, AppState>,
    args: BedOrUnitArgs,
) -> Result<usize, IpcError> {
    act(&state, AlarmCommand::AudioPause { bed: args.bed }).await
}

/// Audio off (indefinite, with reminders); the core refuses it unless policy allows it.
#[tauri::command]
pub async fn alarm_audio_off(
    state: tauri::State<'_, AppState>,
    args: BedOrUnitArgs,
) -> Result<usize, IpcError> {
    act(&state, AlarmCommand::AudioOff { bed: args.bed }).await
}

#[tauri::command]
pub async fn alarm_pause(
    state: tauri::State<'_, AppState>,
    args: BedArgs,
) -> Result<usize, IpcError> {
    act(&state, AlarmCommand::AlarmPause { bed: args.bed }).await
}

#[tauri::command]
pub async fn alarm_set_limits(
    state: tauri::State<'_, AppState>,
    args: SetLimitsArgs,
) -> Result<usize, IpcError> {
    let SetLimitsArgs { bed, rules } = args;
    act(&state, AlarmCommand::SetRules { bed, rules }).await
}

#[tauri::command]
pub async fn alarm_history(
    state: tauri::State<'_, AppState>,
    args: HistoryArgs,
) -> Result<Vec<AlarmLogRow>, IpcError> {
    off_main(&state, move |s, _| {
        Ok(s.review().alarm_history(args.bed.as_deref(), args.limit)?)
    })
    .await
}

#[tauri::command]
pub async fn alarm_limits(
    state: tauri::State<'_, AppState>,
    args: BedArgs,
) -> Result<Vec<LimitRule>, IpcError> {
    off_main(&state, move |s, _| {
        s.alarms().limits(&args.bed).ok_or_else(|| IpcError {
            code: ErrorCode::UnknownBed,
            message: format!("no bed {:?}", args.bed),
        })
    })
    .await
}

/// Users and their beds (no secrets), for the charge nurse's assignment panel.
#[tauri::command]
pub async fn users_list(state: tauri::State<'_, AppState>) -> Result<Vec<UserView>, IpcError> {
    off_main(&state, |s, _| Ok(s.staff().users())).await
}

#[tauri::command]
pub async fn beds_assign(
    state: tauri::State<'_, AppState>,
    args: AssignArgs,
) -> Result<(), IpcError> {
    off_main(&state, move |s, t| {
        Ok(s.staff().assign_beds(t, &args.nurse, &args.beds)?)
    })
    .await
}

/// Admits a device to an empty bed (charge nurses; the core decides).
#[tauri::command]
pub async fn bed_admit(state: tauri::State<'_, AppState>, args: AdmitArgs) -> Result<(), IpcError> {
    off_main(&state, move |s, t| {
        Ok(s.admin().admit(t, &args.bed, &args.device)?)
    })
    .await
}

/// Discharges the bed's device: its alarms end, logged with the user.
#[tauri::command]
pub async fn bed_discharge(
    state: tauri::State<'_, AppState>,
    args: BedArgs,
) -> Result<(), IpcError> {
    off_main(&state, move |s, t| Ok(s.admin().discharge(t, &args.bed)?)).await
}

/// Admits a patient to an empty bed (charge nurses): the bed takes the category's limits.
#[tauri::command]
pub async fn patient_admit(
    state: tauri::State<'_, AppState>,
    args: PatientAdmitArgs,
) -> Result<(), IpcError> {
    off_main(&state, move |s, t| {
        Ok(s.patients().change(
            t,
            ward_core::census::Op::Admit {
                bed: args.bed,
                patient: args.patient,
            },
        )?)
    })
    .await
}

/// Moves the patient of one bed to another, empty, bed (charge nurses).
#[tauri::command]
pub async fn patient_transfer(
    state: tauri::State<'_, AppState>,
    args: PatientTransferArgs,
) -> Result<(), IpcError> {
    off_main(&state, move |s, t| {
        Ok(s.patients().change(
            t,
            ward_core::census::Op::Transfer {
                from: args.from,
                to: args.to,
            },
        )?)
    })
    .await
}

/// Discharges the bed's patient (charge nurses); the monitor stays and still alarms.
#[tauri::command]
pub async fn patient_discharge(
    state: tauri::State<'_, AppState>,
    args: BedArgs,
) -> Result<(), IpcError> {
    off_main(&state, move |s, t| {
        Ok(s.patients()
            .change(t, ward_core::census::Op::Discharge { bed: args.bed })?)
    })
    .await
}

/// New details or category for an admitted patient, matched by MRN (charge nurses).
#[tauri::command]
pub async fn patient_update(
    state: tauri::State<'_, AppState>,
    args: PatientUpdateArgs,
) -> Result<(), IpcError> {
    off_main(&state, move |s, t| {
        Ok(s.patients().change(
            t,
            ward_core::census::Op::Update {
                patient: args.patient,
            },
        )?)
    })
    .await
}

/// Stored waveform of a bed (full disclosure), reduced to about `max_points` values.
#[tauri::command]
pub async fn review_wave(
    state: tauri::State<'_, AppState>,
    args: WaveArgs,
) -> Result<ward_core::review::ReviewWave, IpcError> {
    off_main(&state, move |s, _| {
        let a = args;
        Ok(s.review()
            .wave(&a.bed, a.channel, a.from_ms, a.to_ms, a.max_points)?)
    })
    .await
}

/// A bed's trends (HR, SpO2, RR, NIBP, Temp) and its alarm log rows in the window.
#[tauri::command]
pub async fn review_trend(
    state: tauri::State<'_, AppState>,
    args: TrendArgs,
) -> Result<ward_core::review::ReviewTrend, IpcError> {
    off_main(&state, move |s, _| {
        Ok(s.review().trend(&args.bed, args.from_ms, args.to_ms)?)
    })
    .await
}

/// Writes an ECG strip or trend report into the station's exports folder (clinical staff;
/// audited) and returns the file's path for the window to show.
#[tauri::command]
pub async fn review_export(
    state: tauri::State<'_, AppState>,
    args: ExportArgs,
) -> Result<String, IpcError> {
    off_main(&state, move |s, t| {
        Ok(s.review().export(t, &args.request)?.display().to_string())
    })
    .await
}

/// The unit's alarm statistics and limit review (clinical staff), with the report drawn.
#[tauri::command]
pub async fn unit_statistics(
    state: tauri::State<'_, AppState>,
    args: StatisticsArgs,
) -> Result<ward_core::UnitStatistics, IpcError> {
    off_main(&state, move |s, t| {
        Ok(s.review().unit_statistics(t, args.days)?)
    })
    .await
}

/// Writes the TypeScript of every type the window exchanges with these commands (and all the
/// types they contain) into ui/src/gen (`TS_RS_EXPORT_DIR`). `make lint` regenerates them into
/// a scratch directory and fails when the committed files differ, so a Rust IPC type cannot
/// change without the window's types changing with it.
#[cfg(test)]
mod bindings {
    use super::*;
    use ts_rs::TS;

    #[test]
    fn export_bindings_ipc() {
        // TS_RS_EXPORT_DIR and TS_RS_LARGE_INT come from .cargo/config.toml (or the caller).
        let cfg = ts_rs::Config::from_env();
        WindowSnapshot::export_all(&cfg).unwrap();
        LoginArgs::export_all(&cfg).unwrap();
        UnlockArgs::export_all(&cfg).unwrap();
        AlarmIdArgs::export_all(&cfg).unwrap();
        FollowedArgs::export_all(&cfg).unwrap();
        BedOrUnitArgs::export_all(&cfg).unwrap();
        BedArgs::export_all(&cfg).unwrap();
        SetLimitsArgs::export_all(&cfg).unwrap();
        HistoryArgs::export_all(&cfg).unwrap();
        AssignArgs::export_all(&cfg).unwrap();
        AdmitArgs::export_all(&cfg).unwrap();
        PatientAdmitArgs::export_all(&cfg).unwrap();
        PatientTransferArgs::export_all(&cfg).unwrap();
        PatientUpdateArgs::export_all(&cfg).unwrap();
        WaveArgs::export_all(&cfg).unwrap();
        TrendArgs::export_all(&cfg).unwrap();
        ExportArgs::export_all(&cfg).unwrap();
        StatisticsArgs::export_all(&cfg).unwrap();
        ward_core::UnitStatistics::export_all(&cfg).unwrap();
        IpcError::export_all(&cfg).unwrap();
        Session::export_all(&cfg).unwrap();
        UserView::export_all(&cfg).unwrap();
        LimitRule::export_all(&cfg).unwrap();
        AlarmLogRow::export_all(&cfg).unwrap();
        ward_core::review::ReviewWave::export_all(&cfg).unwrap();
        ward_core::review::ReviewTrend::export_all(&cfg).unwrap();
        ward_core::export::Request::export_all(&cfg).unwrap();
    }
}
