//! The Wardwatch desktop shell: the only crate that depends on Tauri. It starts the core
//! station, exposes a few commands that delegate to its handle, and streams live samples to
//! the window over a Tauri Channel. Nothing clinical is decided here.

mod attention;
mod commands;
mod stream;

use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use tauri::Manager;

/// The station's sub-handles, cloned once at start: commands and the live stream each use
/// what they need, with no lock between them.
#[derive(Clone)]
pub struct Handles {
    alarms: ward_core::AlarmsHandle,
    staff: ward_core::StaffHandle,
    review: ward_core::ReviewHandle,
    live: ward_core::LiveHandle,
    admin: ward_core::AdminHandle,
}

impl Handles {
    fn of(s: &ward_core::StationHandle) -> Self {
        Self {
            alarms: s.alarms().clone(),
            staff: s.staff().clone(),
            review: s.review().clone(),
            live: s.live().clone(),
            admin: s.admin().clone(),
        }
    }
    pub fn alarms(&self) -> &ward_core::AlarmsHandle {
        &self.alarms
    }
    pub fn staff(&self) -> &ward_core::StaffHandle {
        &self.staff
    }
    pub fn review(&self) -> &ward_core::ReviewHandle {
        &self.review
    }
    pub fn live(&self) -> &ward_core::LiveHandle {
        &self.live
    }
    pub fn admin(&self) -> &ward_core::AdminHandle {
        &self.admin
    }
}

/// Shared with every command.
pub struct AppState {
    pub station: Handles,
    /// The station itself, taken at exit for the orderly shutdown (nothing else locks it).
    pub lifecycle: Mutex<Option<ward_core::StationHandle>>,
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
    let alarm_events = station.alarms().subscribe();

    let app = tauri::Builder::default()
        .manage(AppState {
            station: Handles::of(&station),
            lifecycle: Mutex::new(Some(station)),
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
            let station = state.lifecycle.lock().ok().and_then(|mut s| s.take());
            if let Some(station) = station {
                tauri::async_runtime::block_on(station.shutdown());
            }
        }
    });
    Ok(())
}
