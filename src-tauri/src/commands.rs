//! Commands the window calls. Each is a few lines over the core handle; errors carry a stable
//! code the UI can branch on.

use crate::AppState;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct IpcError {
    pub code: &'static str,
    pub message: String,
}

fn stopped() -> IpcError {
    IpcError {
        code: "station_stopped",
        message: "the station is shutting down".into(),
    }
}

#[tauri::command]
pub fn ward_snapshot(
    state: tauri::State<'_, AppState>,
) -> Result<ward_core::WardSnapshot, IpcError> {
    let guard = state.station.lock().map_err(|_| stopped())?;
    guard.as_ref().map(|s| s.snapshot()).ok_or_else(stopped)
}
