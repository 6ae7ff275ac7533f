//! Commands the window calls. Each is a few lines over the core handle; errors carry a stable
//! code the UI can branch on. Permissions by role arrive with the users issue; until then
//! every alarm action still names its user, checked and logged by the core.

use crate::AppState;
use serde::Serialize;
use ward_core::{AlarmCommand, AlarmLogRow, CoreError, LimitRule, StationHandle};

#[derive(Debug, Serialize)]
pub struct IpcError {
    pub code: &'static str,
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

fn stopped() -> IpcError {
    IpcError {
        code: "station_stopped",
        message: "the station is shutting down".into(),
    }
}

fn with<T>(
    state: &tauri::State<'_, AppState>,
    f: impl FnOnce(&StationHandle) -> Result<T, IpcError>,
) -> Result<T, IpcError> {
    let guard = state.station.lock().map_err(|_| stopped())?;
    guard.as_ref().ok_or_else(stopped).and_then(f)
}

/// The window polls this twice a second; each call is also its heartbeat to the alarm
/// system (a window that stops asking raises "Display not responding").
#[tauri::command]
pub fn ward_snapshot(
    state: tauri::State<'_, AppState>,
) -> Result<ward_core::WardSnapshot, IpcError> {
    with(&state, |s| {
        s.ui_heartbeat();
        Ok(s.snapshot())
    })
}

#[tauri::command]
pub fn alarm_acknowledge(
    state: tauri::State<'_, AppState>,
    id: u64,
    user: String,
) -> Result<usize, IpcError> {
    with(&state, |s| Ok(s.acknowledge(id, &user)?))
}

/// Audio pause for one bed, or for every current alarm when `bed` is null.
#[tauri::command]
pub fn alarm_audio_pause(
    state: tauri::State<'_, AppState>,
    bed: Option<String>,
    user: String,
) -> Result<usize, IpcError> {
    with(&state, |s| {
        Ok(s.alarm_command(AlarmCommand::AudioPause { bed, user })?)
    })
}

/// Audio off (indefinite, with reminders); the core refuses it unless policy allows it.
#[tauri::command]
pub fn alarm_audio_off(
    state: tauri::State<'_, AppState>,
    bed: Option<String>,
    user: String,
) -> Result<usize, IpcError> {
    with(&state, |s| {
        Ok(s.alarm_command(AlarmCommand::AudioOff { bed, user })?)
    })
}

#[tauri::command]
pub fn alarm_pause(
    state: tauri::State<'_, AppState>,
    bed: String,
    user: String,
) -> Result<usize, IpcError> {
    with(&state, |s| {
        Ok(s.alarm_command(AlarmCommand::AlarmPause { bed, user })?)
    })
}

#[tauri::command]
pub fn alarm_history(
    state: tauri::State<'_, AppState>,
    bed: Option<String>,
    limit: usize,
) -> Result<Vec<AlarmLogRow>, IpcError> {
    with(&state, |s| Ok(s.alarm_history(bed.as_deref(), limit)?))
}

#[tauri::command]
pub fn alarm_limits(
    state: tauri::State<'_, AppState>,
    bed: String,
) -> Result<Vec<LimitRule>, IpcError> {
    with(&state, |s| {
        s.limits(&bed).ok_or_else(|| IpcError {
            code: "unknown_bed",
            message: format!("no bed {bed:?}"),
        })
    })
}

#[tauri::command]
pub fn alarm_set_limits(
    state: tauri::State<'_, AppState>,
    bed: String,
    rules: Vec<LimitRule>,
    user: String,
) -> Result<usize, IpcError> {
    with(&state, |s| {
        Ok(s.alarm_command(AlarmCommand::SetRules { bed, rules, user })?)
    })
}
