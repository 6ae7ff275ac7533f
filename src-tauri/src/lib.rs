//! The Wardwatch desktop shell: the only crate that depends on Tauri. It starts the core
//! station, exposes a few commands that delegate to its handle, and streams live samples to
//! the window over a Tauri Channel. Nothing clinical is decided here.

mod attention;
mod commands;
mod stream;

use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use tauri::Manager;

/// Shared with every command. The handle sits in an `Option` so exit can take it for an
/// orderly shutdown.
pub struct AppState {
    pub station: Mutex<Option<ward_core::StationHandle>>,
    /// The session token of whoever signed in at this window (never sent to the page).
    pub session: Mutex<Option<String>>,
    /// Bumped by each new live stream so a reloaded page's old stream task stops.
    pub stream_generation: Arc<std::sync::atomic::AtomicU64>,
}

pub fn run(args: Vec<OsString>) -> anyhow::Result<()> {
    ward_cli::init_logging();
    let cfg = ward_cli::gui_config(args)?;
    let station = tauri::async_runtime::block_on(ward_core::Station::start(cfg))?;
    tracing::info!(broker = %station.broker_addr(), "station window starting");
    let alarm_events = station.subscribe_alarms();

    let app = tauri::Builder::default()
        .manage(AppState {
            station: Mutex::new(Some(station)),
            session: Mutex::new(None),
            stream_generation: Arc::default(),
        })
        .invoke_handler(tauri::generate_handler![
            commands::ward_snapshot,
            commands::alarm_acknowledge,
            commands::alarm_audio_pause,
            commands::alarm_audio_off,
            commands::alarm_pause,
            commands::alarm_history,
            commands::alarm_limits,
            commands::alarm_set_limits,
            commands::session_login,
            commands::session_logout,
            commands::session_lock,
            commands::session_unlock,
            commands::session_touch,
            commands::users_list,
            commands::beds_assign,
            commands::bed_admit,
            commands::bed_discharge,
            commands::review_wave,
            commands::review_trend,
            commands::review_export,
            stream::live_stream
        ])
        .build(tauri::generate_context!())?;
    attention::spawn(app.handle().clone(), alarm_events);

    app.run(|handle, event| {
        if let tauri::RunEvent::Exit = event {
            let state = handle.state::<AppState>();
            let station = state.station.lock().ok().and_then(|mut s| s.take());
            if let Some(station) = station {
                tauri::async_runtime::block_on(station.shutdown());
            }
        }
    });
    Ok(())
}
