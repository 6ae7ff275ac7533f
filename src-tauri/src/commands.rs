//! Commands the window calls. Each is a few lines over the core handle; errors carry a stable
//! code the UI can branch on.
//!
//! The window never sees a session token: the shell keeps the token of whoever signed in at
//! this window and passes it to the core, which decides every permission (and audits every
//! denial). A page reload keeps the session; closing the station ends it.

use crate::{AppState, Handles};
use serde::Serialize;
use ward_core::{AlarmCommand, AlarmLogRow, CoreError, ErrorCode, LimitRule, Session, UserView};

#[derive(Debug, Serialize)]
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

/// Runs `f` on the station's sub-handles. No lock: a slow command (argon2, an export, an
/// alarm command's wait) holds up nothing else.
fn with<T>(
    state: &tauri::State<'_, AppState>,
    f: impl FnOnce(&Handles) -> Result<T, IpcError>,
) -> Result<T, IpcError> {
    f(&state.station)
}

/// This window's session token ("" when no one is signed in: the core then answers
/// `not_signed_in`).
fn token(state: &tauri::State<'_, AppState>) -> String {
    state
        .session
        .lock()
        .ok()
        .and_then(|t| t.clone())
        .unwrap_or_default()
}

fn act(state: &tauri::State<'_, AppState>, a: AlarmCommand) -> Result<usize, IpcError> {
    let t = token(state);
    with(state, |s| Ok(s.alarms().act(&t, a)?))
}

#[derive(Serialize)]
pub struct WindowSnapshot {
    #[serde(flatten)]
    pub ward: ward_core::WardSnapshot,
    /// Who is signed in at this window, and whether the session is locked.
    pub session: Option<Session>,
}

/// The window polls this twice a second; each call is also its heartbeat to the alarm
/// system (a window that stops asking raises "Display not responding").
#[tauri::command]
pub fn ward_snapshot(state: tauri::State<'_, AppState>) -> Result<WindowSnapshot, IpcError> {
    let t = token(&state);
    with(&state, |s| {
        s.alarms().ui_heartbeat();
        Ok(WindowSnapshot {
            ward: s.live().snapshot(),
            session: s.staff().session(&t),
        })
    })
}

#[tauri::command]
pub fn session_login(
    state: tauri::State<'_, AppState>,
    username: String,
    secret: String,
) -> Result<Session, IpcError> {
    let old = token(&state);
    let (t, session) = with(&state, |s| {
        if !old.is_empty() {
            s.staff().logout(&old);
        }
        Ok(s.staff().login(&username, &secret)?)
    })?;
    if let Ok(mut slot) = state.session.lock() {
        *slot = Some(t);
    }
    Ok(session)
}

#[tauri::command]
pub fn session_logout(state: tauri::State<'_, AppState>) -> Result<(), IpcError> {
    let t = state.session.lock().ok().and_then(|mut t| t.take());
    if let Some(t) = t {
        with(&state, |s| {
            s.staff().logout(&t);
            Ok(())
        })?;
    }
    Ok(())
}

#[tauri::command]
pub fn session_lock(state: tauri::State<'_, AppState>) -> Result<(), IpcError> {
    let t = token(&state);
    with(&state, |s| {
        s.staff().lock(&t);
        Ok(())
    })
}

/// Unlock with the signed-in user's PIN or password.
#[tauri::command]
pub fn session_unlock(
    state: tauri::State<'_, AppState>,
    secret: String,
) -> Result<Session, IpcError> {
    let t = token(&state);
    with(&state, |s| Ok(s.staff().unlock(&t, &secret)?))
}

/// Keys and pointer at the window (throttled by the page): postpones auto-lock.
#[tauri::command]
pub fn session_touch(state: tauri::State<'_, AppState>) -> Result<(), IpcError> {
    let t = token(&state);
    with(&state, |s| {
        s.staff().touch(&t);
        Ok(())
    })
}

#[tauri::command]
pub fn alarm_acknowledge(state: tauri::State<'_, AppState>, id: u64) -> Result<usize, IpcError> {
    act(&state, AlarmCommand::Acknowledge { id })
}

/// Audio pause for one bed, or for every current alarm when `bed` is null.
#[tauri::command]
pub fn alarm_audio_pause(
    state: tauri::State<'_, AppState>,
    bed: Option<String>,
) -> Result<usize, IpcError> {
    act(&state, AlarmCommand::AudioPause { bed })
}

/// Audio off (indefinite, with reminders); the core refuses it unless policy allows it.
#[tauri::command]
pub fn alarm_audio_off(
    state: tauri::State<'_, AppState>,
    bed: Option<String>,
) -> Result<usize, IpcError> {
    act(&state, AlarmCommand::AudioOff { bed })
}

#[tauri::command]
pub fn alarm_pause(state: tauri::State<'_, AppState>, bed: String) -> Result<usize, IpcError> {
    act(&state, AlarmCommand::AlarmPause { bed })
}

#[tauri::command]
pub fn alarm_set_limits(
    state: tauri::State<'_, AppState>,
    bed: String,
    rules: Vec<LimitRule>,
) -> Result<usize, IpcError> {
    act(&state, AlarmCommand::SetRules { bed, rules })
}

#[tauri::command]
pub fn alarm_history(
    state: tauri::State<'_, AppState>,
    bed: Option<String>,
    limit: usize,
) -> Result<Vec<AlarmLogRow>, IpcError> {
    with(&state, |s| {
        Ok(s.review().alarm_history(bed.as_deref(), limit)?)
    })
}

#[tauri::command]
pub fn alarm_limits(
    state: tauri::State<'_, AppState>,
    bed: String,
) -> Result<Vec<LimitRule>, IpcError> {
    with(&state, |s| {
        s.alarms().limits(&bed).ok_or_else(|| IpcError {
            code: ErrorCode::UnknownBed,
            message: format!("no bed {bed:?}"),
        })
    })
}

/// Users and their beds (no secrets), for the charge nurse's assignment panel.
#[tauri::command]
pub fn users_list(state: tauri::State<'_, AppState>) -> Result<Vec<UserView>, IpcError> {
    with(&state, |s| Ok(s.staff().users()))
}

#[tauri::command]
pub fn beds_assign(
    state: tauri::State<'_, AppState>,
    nurse: String,
    beds: Vec<String>,
) -> Result<(), IpcError> {
    let t = token(&state);
    with(&state, |s| Ok(s.staff().assign_beds(&t, &nurse, &beds)?))
}

/// Admits a device to an empty bed (charge nurses; the core decides).
#[tauri::command]
pub fn bed_admit(
    state: tauri::State<'_, AppState>,
    bed: String,
    device: String,
) -> Result<(), IpcError> {
    let t = token(&state);
    with(&state, |s| Ok(s.admin().admit(&t, &bed, &device)?))
}

/// Discharges the bed's device: its alarms end, logged with the user.
#[tauri::command]
pub fn bed_discharge(state: tauri::State<'_, AppState>, bed: String) -> Result<(), IpcError> {
    let t = token(&state);
    with(&state, |s| Ok(s.admin().discharge(&t, &bed)?))
}

/// Stored waveform of a bed (full disclosure), reduced to about `max_points` values.
#[tauri::command]
pub fn review_wave(
    state: tauri::State<'_, AppState>,
    bed: String,
    channel: u32,
    from_ms: i64,
    to_ms: i64,
    max_points: usize,
) -> Result<ward_core::review::ReviewWave, IpcError> {
    with(&state, |s| {
        Ok(s.review().wave(&bed, channel, from_ms, to_ms, max_points)?)
    })
}

/// A bed's trends (HR, SpO2, RR, NIBP, Temp) and its alarm log rows in the window.
#[tauri::command]
pub fn review_trend(
    state: tauri::State<'_, AppState>,
    bed: String,
    from_ms: i64,
    to_ms: i64,
) -> Result<ward_core::review::ReviewTrend, IpcError> {
    with(&state, |s| Ok(s.review().trend(&bed, from_ms, to_ms)?))
}

/// Writes an ECG strip or trend report into the station's exports folder (clinical staff;
/// audited) and returns the file's path for the window to show.
#[tauri::command]
pub fn review_export(
    state: tauri::State<'_, AppState>,
    request: ward_core::export::Request,
) -> Result<String, IpcError> {
    let t = token(&state);
    with(&state, |s| {
        Ok(s.review().export(&t, &request)?.display().to_string())
    })
}
