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
    patients: ward_core::PatientsHandle,
}

impl Handles {
    fn of(s: &ward_core::StationHandle) -> Self {
        Self {
            alarms: s.alarms().clone(),
            staff: s.staff().clone(),
            review: s.review().clone(),
            live: s.live().clone(),
            admin: s.admin().clone(),
            patients: s.patients().clone(),
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
    pub fn patients(&self) -> &ward_core::PatientsHandle {
        &self.patients
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

/// Opens the station window as `[display] mode` says. It is built here rather than in
/// tauri.conf.json so its size can come from the primary monitor before it is shown:
/// maximizing is only a request to the window manager, and a kiosk PC may run none (nor
/// does Xvfb), so the window also starts at the monitor's full work area. Every bed is in
/// view either way.
fn open_window(
    app: &tauri::App,
    mode: ward_core::config::DisplayMode,
    compositing: ward_core::config::Compositing,
) -> tauri::Result<()> {
    use ward_core::config::DisplayMode;
    let mut b = tauri::WebviewWindowBuilder::new(app, "main", tauri::WebviewUrl::default())
        .title("Wardwatch \u{2014} Central Station")
        .resizable(true)
        .inner_size(1280.0, 800.0);
    if mode != DisplayMode::Window {
        match app.primary_monitor() {
            Ok(Some(m)) => {
                let scale = m.scale_factor();
                let area = m.work_area();
                let pos = area.position.to_logical::<f64>(scale);
                let size = area.size.to_logical::<f64>(scale);
                b = b
                    .position(pos.x, pos.y)
                    .inner_size(size.width, size.height)
                    .maximized(true);
            }
            Ok(None) => tracing::warn!("no primary monitor reported; the window opens at 1280x800"),
            Err(e) => tracing::warn!(error = %e, "cannot read the primary monitor"),
        }
    }
    if mode == DisplayMode::Fullscreen {
        b = b.fullscreen(true);
    }
    let window = b.build()?;
    set_compositing(&window, compositing)?;
    Ok(())
}

/// `[display] compositing`. WebKitGTK's GPU compositor re-composites the whole window on every
/// change; on a software rasterizer (llvmpipe: no GPU, or a VM) that costs tens of ms a frame
/// at 1080p whatever changed, while software painting repaints only the changed region. So
/// `auto` asks for the GPU only where a render node exists.
fn set_compositing(
    window: &tauri::WebviewWindow,
    c: ward_core::config::Compositing,
) -> tauri::Result<()> {
    use ward_core::config::Compositing;
    let software = match c {
        Compositing::Software => true,
        Compositing::Gpu => false,
        Compositing::Auto => !has_render_node(),
    };
    tracing::info!(software, "window compositing");
    #[cfg(target_os = "linux")]
    window.with_webview(move |wv| {
        use webkit2gtk::{HardwareAccelerationPolicy, SettingsExt, WebViewExt};
        if let Some(s) = wv.inner().settings() {
            s.set_hardware_acceleration_policy(if software {
                HardwareAccelerationPolicy::Never
            } else {
                HardwareAccelerationPolicy::OnDemand
            });
        }
    })?;
    #[cfg(not(target_os = "linux"))]
    let _ = (window, software);
    Ok(())
}

/// A DRM render node (/dev/dri/renderD*) is how Mesa and the GPU drivers reach a GPU on Linux.
fn has_render_node() -> bool {
    std::fs::read_dir("/dev/dri")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
        })
        .unwrap_or(false)
}

pub fn run(args: Vec<OsString>) -> anyhow::Result<()> {
    ward_cli::init_logging();
    let cfg = ward_cli::gui_config(args)?;
    let station = tauri::async_runtime::block_on(ward_core::Station::start(cfg.clone()))?;
    tracing::info!(broker = %station.broker_addr(), "station window starting");
    // The sentinel that sounds if this process dies or hangs (docs/alarms.md).
    let sentinel = Mutex::new(if cfg.sentinel.enabled {
        ward_cli::start_sentinel(&cfg, &station)
    } else {
        None
    });
    let alarm_events = station.alarms().subscribe();
    let display = station.config().display;
    let compositing = station.config().compositing;

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
            commands::alarm_acknowledge_followed,
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
            commands::patient_admit,
            commands::patient_transfer,
            commands::patient_discharge,
            commands::patient_update,
            commands::review_wave,
            commands::review_trend,
            commands::review_export,
            commands::unit_statistics,
            stream::live_stream
        ])
        .setup(move |app| Ok(open_window(app, display, compositing)?))
        .build(tauri::generate_context!())?;
    attention::spawn(app.handle().clone(), alarm_events);

    app.run(move |handle, event| {
        if let tauri::RunEvent::Exit = event {
            // Goodbye to the sentinel first, so the orderly stop is not taken for a failure.
            if let Some(link) = sentinel.lock().ok().and_then(|mut l| l.take()) {
                link.stop();
            }
            let state = handle.state::<AppState>();
            let station = state.lifecycle.lock().ok().and_then(|mut s| s.take());
            if let Some(station) = station {
                tauri::async_runtime::block_on(station.shutdown());
            }
        }
    });
    Ok(())
}
