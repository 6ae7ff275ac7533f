//! ward-core: the station service, with no window. The Tauri shell and the `wardwatch` CLI
//! both start a [`Station`] and talk to its [`StationHandle`].
//!
//! What it is: configuration, the embedded broker, in-process ingest, the store writer, the
//! live view (numerics, connection state, trace rings, binary frames for the UI), the
//! optional simulated ward, the runtime file, and an orderly shutdown that loses nothing the
//! broker accepted.
//!
//! The alarm system runs here too: the driver thread around the pure `ward_alarm` engine, the
//! annunciator that plays its tones, and OS notifications, none of them depending on a window.
//!
//! Users, sessions and permissions are decided here too (`access`, `staff`): every action
//! arrives with a session token and is checked before it reaches the alarm driver. Upstream
//! sync (`sync`) sends the audit trail to the hospital core and applies peer stations'
//! acknowledgements; its password comes from the OS credential store (`secrets`).
//!
//! What it is not: no UI, no Tauri. Export grows here in a later issue, in its own module.
//!
//! Layout: `config`, `ingest`, `live`, `writer`, `alarms` (driver), `audio` (annunciator),
//! `notify` (OS notifications), `summary` (headless text view), `access` (permission table,
//! sessions; pure), `staff` (users and sessions at run time), `secrets`, `sync`, this file
//! (start, handle, shutdown).

pub mod access;
pub mod alarms;
pub mod audio;
pub mod config;
pub mod export;
mod ingest;
pub mod live;
mod notify;
pub mod review;
pub mod secrets;
pub mod staff;
pub mod summary;
pub mod sync;
mod writer;

pub use writer::percentile;

pub use access::{Action, Denial, Session};
pub use alarms::{AlarmSnapshot, Command as AlarmCommand};
pub use config::Config;
pub use live::{BedView, Connection, FrameCursor};
pub use staff::{UserChange, UserView};
pub use ward_alarm::{Alarm, AlarmError, LimitRule, LogEntry};
pub use ward_store::AlarmLogRow;
pub use writer::StoreMetrics;

use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("config {file}: {}{reason}", if key.is_empty() { String::new() } else { format!("key `{key}`: ") })]
    Config {
        file: String,
        key: String,
        reason: String,
    },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Broker(#[from] ward_broker::BrokerError),
    #[error(transparent)]
    Store(#[from] ward_store::StoreError),
    #[error("simulator: {0}")]
    Sim(#[from] ward_sim::SimError),
    #[error("station start-up failed: {0}")]
    Start(String),
    #[error(transparent)]
    Alarm(#[from] AlarmError),
    #[error("the alarm system is not answering: {0}")]
    AlarmDriver(&'static str),
    /// A user may not do this (or is not signed in, or the session is locked). Audited.
    #[error("{reason}")]
    Denied { code: &'static str, reason: String },
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    /// A review or export request that cannot be answered as asked (bad window, unknown bed).
    #[error("{0}")]
    Review(String),
    /// Rendering or writing an exported strip or report failed.
    #[error("export: {0}")]
    Export(String),
}

impl CoreError {
    /// Stable code for the window to branch on.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::Alarm(e) => e.code(),
            CoreError::AlarmDriver(_) => "alarm_driver",
            CoreError::Denied { code, .. } => code,
            CoreError::Secret(_) => "credential_store",
            CoreError::Review(_) => "review",
            CoreError::Export(_) => "export",
            CoreError::Config { .. } => "config",
            CoreError::Store(_) => "store",
            _ => "internal",
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Everything the station counts, for the window, the summary and tests.
#[derive(Debug, Clone, Serialize)]
pub struct StationMetrics {
    pub broker: ward_broker::MetricsSnapshot,
    /// Accepted messages by topic kind, refused ones by reason (bad_json, bad_wave, ...).
    pub ingest: BTreeMap<String, u64>,
    pub store: StoreMetrics,
    pub alarms: alarms::AlarmMetrics,
    /// Store-and-forward to the hospital core: backlog and the oldest unsynced event.
    pub sync: sync::SyncStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct WardSnapshot {
    pub station: String,
    pub now_ms: i64,
    pub broker: String,
    pub beds: Vec<BedView>,
    pub unassigned: Vec<live::DeviceView>,
    pub alarms: AlarmSnapshot,
    pub metrics: StationMetrics,
}

/// What a running station writes to `runtime.json` in its data directory, so operators and
/// tests can find the port it actually bound.
#[derive(Debug, Serialize)]
struct RuntimeInfo<'a> {
    pid: u32,
    broker: String,
    /// The TLS listener, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_tls: Option<String>,
    database: String,
    started_ms: i64,
    station: &'a str,
}

pub struct Station;

/// An audit event about the station itself.
fn station_event(cfg: &Config, kind: &str, detail: serde_json::Value) -> ward_store::AuditEvent {
    ward_store::AuditEvent {
        origin: cfg.station_id.clone(),
        t_ms: now_ms(),
        actor: "system".into(),
        kind: kind.into(),
        bed: None,
        detail: detail.to_string(),
    }
}

/// Each configured bed's limit rules: edited ones from the database, else the defaults of
/// its patient category.
fn bed_setups(cfg: &Config) -> Result<Vec<alarms::BedSetup>, CoreError> {
    let stored: BTreeMap<String, String> = ward_store::Store::open_read_only(&cfg.db_path())?
        .bed_rules()?
        .into_iter()
        .collect();
    Ok(cfg
        .beds
        .iter()
        .map(|b| {
            let id = b.id.to_string();
            let rules = stored
                .get(&id)
                .and_then(|json| match serde_json::from_str::<Vec<LimitRule>>(json) {
                    Ok(r) if ward_alarm::rules::validate(&r).is_ok() => Some(r),
                    _ => {
                        tracing::error!(bed = %id, "stored limits are unreadable; using the category defaults");
                        None
                    }
                })
                .unwrap_or_else(|| ward_alarm::rules::defaults(b.category));
            alarms::BedSetup {
                id,
                label: b.label.clone(),
                rules,
                monitored: b.device.is_some(),
            }
        })
        .collect())
}

/// The config's device-to-bed map with the admissions and discharges made at the station
/// laid over it (the station's decisions are newer than the file). A device admitted to a
/// bed leaves the bed the file had it at.
fn with_admitted_devices(mut cfg: Config) -> Result<Config, CoreError> {
    let stored = ward_store::Store::open_read_only(&cfg.db_path())?.bed_devices()?;
    for (bed, device) in stored {
        let device = match device.map(ward_model::DeviceId::new).transpose() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(%bed, error = %e, "stored admission unreadable; keeping the config's");
                continue;
            }
        };
        if let Some(d) = &device {
            for b in cfg.beds.iter_mut().filter(|b| b.device.as_ref() == Some(d)) {
                b.device = None;
            }
        }
        if let Some(b) = cfg.beds.iter_mut().find(|b| b.id.as_str() == bed) {
            b.device = device;
        }
    }
    Ok(cfg)
}

/// The simulated ward started with the station: its stop signal and its task.
type SimRun = (
    watch::Sender<bool>,
    JoinHandle<Result<ward_sim::SimStats, ward_sim::SimError>>,
);

pub struct StationHandle {
    cfg: Config,
    broker: Option<ward_broker::BrokerHandle>,
    broker_addr: SocketAddr,
    broker_tls: Option<SocketAddr>,
    live: Arc<Mutex<live::LiveState>>,
    writer: Arc<writer::Writer>,
    counters: ingest::IngestCounters,
    ingest_stop: watch::Sender<bool>,
    ingest: Option<JoinHandle<()>>,
    sim: Option<SimRun>,
    alarm_tx: std::sync::mpsc::Sender<alarms::Input>,
    alarm_shared: Arc<alarms::Shared>,
    alarm_thread: Option<std::thread::JoinHandle<()>>,
    alarm_events: tokio::sync::broadcast::Sender<LogEntry>,
    notify_counters: Arc<notify::NotifyCounters>,
    sync_status: sync::SharedStatus,
    sync: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    staff: staff::Staff,
}

/// An alarm action as a signed-in user asks for it; the core fills in who.
#[derive(Debug, Clone)]
pub enum AlarmAction {
    Acknowledge { id: u64 },
    AudioPause { bed: Option<String> },
    AlarmPause { bed: String },
    AudioOff { bed: Option<String> },
    SetRules { bed: String, rules: Vec<LimitRule> },
}

/// Capacity of the in-process queue from broker to ingest. QoS 1/2 publishers wait when it
/// is full; QoS 0 messages are dropped and counted by the broker.
const INGEST_QUEUE: usize = 65_536;

impl Station {
    pub async fn start(cfg: Config) -> Result<StationHandle, CoreError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|source| CoreError::DataDir {
            path: cfg.data_dir.display().to_string(),
            source,
        })?;
        let writer = Arc::new(writer::Writer::start(
            cfg.db_path(),
            cfg.batch_interval,
            cfg.prune_every,
            cfg.retention,
        )?);
        let cfg = with_admitted_devices(cfg)?;
        // The alarm system starts before the broker accepts anyone, so the first value a
        // monitor sends is already judged.
        let (alarm_tx, alarm_rx) = std::sync::mpsc::channel();
        let alarm_shared = Arc::new(alarms::Shared::default());
        let (alarm_events, _) = tokio::sync::broadcast::channel(4096);
        let driver = alarms::Driver::new(
            cfg.station_id.clone(),
            cfg.alarm_policy.clone(),
            bed_setups(&cfg)?,
            writer.clone(),
            cfg.notifications,
            alarm_events.clone(),
            alarm_shared.clone(),
        )?;
        let notify_counters = driver.notify_counters();
        let _ = alarm_tx.send(alarms::Input::Audit(station_event(
            &cfg,
            "station.start",
            serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "config": cfg.source }),
        )));
        let staff = staff::Staff::start(
            cfg.access.clone(),
            cfg.db_path(),
            cfg.station_id.clone(),
            alarm_tx.clone(),
        )?;
        let alarm_thread = std::thread::Builder::new()
            .name("ward-alarms".into())
            .spawn(move || driver.run(alarm_rx))
            .map_err(|e| CoreError::Start(format!("cannot start the alarm driver: {e}")))?;

        // Simulated monitors authenticate like real ones when anonymous access is off: each
        // device id gets this run's random password (hashed once, in memory only).
        let mut broker_cfg = cfg.broker.clone();
        let mut auth = cfg.broker_auth.clone();
        let sim_password = if cfg.sim_beds > 0 && !auth.allow_anonymous {
            let secret = staff::new_token()?;
            let hash = ward_broker::auth::hash_password(&secret).map_err(|e| {
                CoreError::Start(format!("cannot hash the simulator's password: {e}"))
            })?;
            for bed in 1..=cfg.sim_beds {
                auth.passwords
                    .insert(&ward_sim::device_id("sim", bed), hash.clone());
            }
            Some(secret)
        } else {
            None
        };
        broker_cfg.auth = ward_broker::AuthHook(Arc::new(auth));
        let broker = ward_broker::start(broker_cfg).await?;
        let broker_addr = broker.local_addr();
        let broker_tls = broker.tls_addr();
        let rx = broker.subscribe_local(ward_model::topic::DEVICE_FILTER, INGEST_QUEUE)?;

        let live = Arc::new(Mutex::new(live::LiveState::new(&cfg)));
        let counters: ingest::IngestCounters = Arc::default();
        let (ingest_stop, stop_rx) = watch::channel(false);
        let ingest = ingest::Ingest::new(
            live.clone(),
            writer.clone(),
            counters.clone(),
            alarm_tx.clone(),
            cfg.station_id.clone(),
        );
        let ingest = tokio::spawn(ingest.run(rx, stop_rx));

        let sync_status = sync::SharedStatus::default();
        let sync = match &cfg.upstream {
            Some(up) => {
                if let Ok(mut s) = sync_status.lock() {
                    s.enabled = true;
                    s.upstream = up.name.clone();
                }
                let (stop, stop_rx) = watch::channel(false);
                let worker = sync::Worker {
                    cfg: up.clone(),
                    origin: cfg.station_id.clone(),
                    db: cfg.db_path(),
                    writer: writer.clone(),
                    status: sync_status.clone(),
                };
                let peers = sync::PeerListener {
                    cfg: up.clone(),
                    status: sync_status.clone(),
                    alarms: alarm_tx.clone(),
                };
                tracing::info!(upstream = %up.name, tls = up.ca_file.is_some(), "store-and-forward to the hospital core");
                let outbox = worker.run(stop_rx.clone());
                let peers = peers.run(stop_rx);
                Some((
                    stop,
                    tokio::spawn(async move {
                        tokio::join!(outbox, peers);
                    }),
                ))
            }
            None => None,
        };

        let sim = if cfg.sim_beds > 0 {
            let mut sim_cfg = ward_sim::SimConfig::new(broker_addr, cfg.sim_beds);
            sim_cfg.scenarios = cfg.scenarios.clone();
            sim_cfg.password = sim_password;
            let (stop, stop_rx) = watch::channel(false);
            tracing::info!(beds = cfg.sim_beds, "starting simulated ward");
            Some((stop, tokio::spawn(ward_sim::run_ward(sim_cfg, stop_rx))))
        } else {
            None
        };

        let handle = StationHandle {
            cfg,
            broker: Some(broker),
            broker_addr,
            broker_tls,
            live,
            writer,
            counters,
            ingest_stop,
            ingest: Some(ingest),
            sim,
            alarm_tx,
            alarm_shared,
            alarm_thread: Some(alarm_thread),
            alarm_events,
            notify_counters,
            sync_status,
            sync,
            staff,
        };
        handle.write_runtime_file();
        tracing::info!(broker = %broker_addr, db = %handle.cfg.db_path().display(), "station started");
        Ok(handle)
    }
}

impl StationHandle {
    pub fn broker_addr(&self) -> SocketAddr {
        self.broker_addr
    }

    fn write_runtime_file(&self) {
        let info = RuntimeInfo {
            pid: std::process::id(),
            broker: self.broker_addr.to_string(),
            broker_tls: self.broker_tls.map(|a| a.to_string()),
            database: self.cfg.db_path().display().to_string(),
            started_ms: now_ms(),
            station: &self.cfg.station_name,
        };
        let path = self.cfg.runtime_path();
        // Write then rename, so a reader never sees half a file.
        let tmp = path.with_extension("json.tmp");
        let result = serde_json::to_vec_pretty(&info)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot write runtime file");
        }
    }

    pub fn metrics(&self) -> StationMetrics {
        let broker = self
            .broker
            .as_ref()
            .map(|b| b.metrics())
            .unwrap_or_default();
        let ingest = self
            .counters
            .lock()
            .map(|c| c.iter().map(|(k, v)| (k.to_string(), *v)).collect())
            .unwrap_or_default();
        StationMetrics {
            broker,
            ingest,
            store: self.writer.counters.snapshot(),
            alarms: self.alarm_shared.metrics(Some(&self.notify_counters)),
            sync: self
                .sync_status
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default(),
        }
    }

    pub fn alarm_snapshot(&self) -> AlarmSnapshot {
        let s = &self.alarm_shared;
        let p = &self.cfg.alarm_policy;
        let hb = s.heartbeat_ms.load(std::sync::atomic::Ordering::Relaxed);
        AlarmSnapshot {
            alarms: s.alarms.lock().map(|a| a.clone()).unwrap_or_default(),
            audio: s.audio.lock().ok().and_then(|a| a.clone()),
            driver_ok: now_ms() - hb < 2_000,
            audio_pause_s: p.audio_pause_ms / 1000,
            alarm_pause_s: p.alarm_pause_ms / 1000,
            allow_audio_off: p.allow_audio_off,
            metrics: s.metrics(Some(&self.notify_counters)),
        }
    }

    /// Every alarm log entry as it happens (window attention, benchmarks, later: sync).
    pub fn subscribe_alarms(&self) -> tokio::sync::broadcast::Receiver<LogEntry> {
        self.alarm_events.subscribe()
    }

    /// Runs a command in the alarm driver and waits (briefly) for its answer. Returns how
    /// many alarms it applied to. No permission check: callers are [`Self::act`] and the
    /// station itself (acknowledgements from other stations).
    pub(crate) fn alarm_command(&self, c: AlarmCommand) -> Result<usize, CoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.alarm_tx
            .send(alarms::Input::Command(c, tx))
            .map_err(|_| CoreError::AlarmDriver("it has stopped"))?;
        rx.recv_timeout(std::time::Duration::from_secs(2))
            .map_err(|_| CoreError::AlarmDriver("no answer within 2 s"))?
            .map_err(CoreError::Alarm)
    }

    /// An alarm action by the user signed in with `token`, if their role and beds allow it.
    /// Denials are answered with a reason and audited. Returns how many alarms it applied to.
    pub fn act(&self, token: &str, action: AlarmAction) -> Result<usize, CoreError> {
        let bed_of = |id: u64| {
            self.alarm_shared
                .alarms
                .lock()
                .ok()
                .and_then(|a| a.iter().find(|x| x.id == id).and_then(|x| x.bed.clone()))
        };
        let check = match &action {
            AlarmAction::Acknowledge { id } => Action::Acknowledge { bed: bed_of(*id) },
            AlarmAction::AudioPause { bed } => Action::AudioPause { bed: bed.clone() },
            AlarmAction::AlarmPause { bed } => Action::AlarmPause { bed: bed.clone() },
            AlarmAction::AudioOff { bed } => Action::AudioOff { bed: bed.clone() },
            AlarmAction::SetRules { bed, .. } => Action::ChangeLimits { bed: bed.clone() },
        };
        let user = self.staff.authorize(token, &check, now_ms())?.username;
        self.alarm_command(match action {
            AlarmAction::Acknowledge { id } => AlarmCommand::Acknowledge { id, user },
            AlarmAction::AudioPause { bed } => AlarmCommand::AudioPause { bed, user },
            AlarmAction::AlarmPause { bed } => AlarmCommand::AlarmPause { bed, user },
            AlarmAction::AudioOff { bed } => AlarmCommand::AudioOff { bed, user },
            AlarmAction::SetRules { bed, rules } => AlarmCommand::SetRules { bed, rules, user },
        })
    }

    /// Signs a user in at a window. The token stays with the caller (the shell keeps it on
    /// the Rust side). Every failure is audited and answered with the same message.
    pub fn login(&self, username: &str, secret: &str) -> Result<(String, Session), CoreError> {
        self.staff.login(username, secret, now_ms())
    }

    /// Unlocks a locked session with the user's PIN or password.
    pub fn unlock(&self, token: &str, secret: &str) -> Result<Session, CoreError> {
        self.staff.unlock(token, secret, now_ms())
    }

    pub fn lock_session(&self, token: &str) {
        self.staff.lock(token)
    }

    pub fn logout(&self, token: &str) {
        self.staff.logout(token)
    }

    /// Activity at the window: postpones auto-lock.
    pub fn touch(&self, token: &str) {
        self.staff.touch(token, now_ms())
    }

    pub fn session(&self, token: &str) -> Option<Session> {
        self.staff.session(token, now_ms())
    }

    pub fn users(&self) -> Vec<UserView> {
        self.staff.users()
    }

    /// Creates or changes a user (IT administrators).
    pub fn change_user(&self, token: &str, change: &UserChange) -> Result<UserView, CoreError> {
        self.staff.change_user(token, change, now_ms())
    }

    /// Gives a nurse their beds for the shift (charge nurses).
    pub fn assign_beds(&self, token: &str, nurse: &str, beds: &[String]) -> Result<(), CoreError> {
        let known = self.cfg.beds.iter().map(|b| b.id.to_string()).collect();
        self.staff.assign(token, nurse, beds, &known, now_ms())
    }

    /// Admits `device` to an empty bed (charge nurses). Its liveness budget starts now: a
    /// monitor that does not speak within it raises "No data".
    pub fn admit(&self, token: &str, bed: &str, device: &str) -> Result<(), CoreError> {
        let d = ward_model::DeviceId::new(device).map_err(|e| CoreError::Denied {
            code: "bad_device",
            reason: e.to_string(),
        })?;
        self.set_bed_device(token, bed, Some(d))
    }

    /// Discharges the bed's device (charge nurses): the bed's alarms end, logged with the
    /// user, and the device's data is kept without a bed.
    pub fn discharge(&self, token: &str, bed: &str) -> Result<(), CoreError> {
        self.set_bed_device(token, bed, None)
    }

    fn set_bed_device(
        &self,
        token: &str,
        bed: &str,
        device: Option<ward_model::DeviceId>,
    ) -> Result<(), CoreError> {
        let user = self
            .staff
            .authorize(token, &Action::AdmitDischarge, now_ms())?
            .username;
        let bad = |reason: String| CoreError::Denied {
            code: "bad_admission",
            reason,
        };
        let left = {
            let mut live = self
                .live
                .lock()
                .map_err(|_| CoreError::Start("the live view lock is poisoned".into()))?;
            live.set_device(bed, device.clone()).map_err(bad)?
        };
        if device.is_none() && left.is_none() {
            return Err(bad(format!("{bed} has no device to discharge")));
        }
        let named = device.as_ref().or(left.as_ref()).map(|d| d.to_string());
        let _ = self.alarm_tx.send(alarms::Input::Records(vec![
            ward_store::Record::BedDevice {
                bed: bed.to_string(),
                device: device.as_ref().map(|d| d.to_string()),
                t_ms: now_ms(),
                user: user.clone(),
            },
        ]));
        // The alarm log entry (admitted / discharged, with the device) is also the audit event.
        self.alarm_command(AlarmCommand::Monitor {
            bed: bed.to_string(),
            monitored: device.is_some(),
            device: named,
            user,
        })?;
        Ok(())
    }

    /// The window's heartbeat; once one has arrived, its absence is a technical alarm.
    pub fn ui_heartbeat(&self) {
        let _ = self.alarm_tx.send(alarms::Input::UiHeartbeat);
    }

    /// A bed's current limit rules.
    pub fn limits(&self, bed: &str) -> Option<Vec<LimitRule>> {
        self.alarm_shared
            .rules
            .lock()
            .ok()
            .and_then(|r| r.get(bed).cloned())
    }

    fn bed_label(&self, bed: &str) -> Result<String, CoreError> {
        self.cfg
            .beds
            .iter()
            .find(|b| b.id.as_str() == bed)
            .map(|b| b.label.clone())
            .ok_or_else(|| CoreError::Review(format!("there is no bed {bed:?} in this unit")))
    }

    /// Stored waveform of a bed for review (full disclosure). Viewing needs no sign-in, as
    /// the live screen does not.
    pub fn review_wave(
        &self,
        bed: &str,
        channel: u32,
        from_ms: i64,
        to_ms: i64,
        max_points: usize,
    ) -> Result<review::ReviewWave, CoreError> {
        self.bed_label(bed)?;
        let store = ward_store::Store::open_read_only(&self.cfg.db_path())?;
        review::wave(&store, bed, channel, from_ms, to_ms, max_points)
    }

    /// A bed's trends with its alarm log rows in the window.
    pub fn review_trend(
        &self,
        bed: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<review::ReviewTrend, CoreError> {
        self.bed_label(bed)?;
        let store = ward_store::Store::open_read_only(&self.cfg.db_path())?;
        review::trend(&store, bed, from_ms, to_ms)
    }

    /// Writes an ECG strip or trend report into `{data_dir}/exports` and returns its path.
    /// Clinical staff only; audited as `export.strip` / `export.trend` with the file name.
    pub fn export(
        &self,
        token: &str,
        req: &export::Request,
    ) -> Result<std::path::PathBuf, CoreError> {
        let bed = req.bed();
        let label = self.bed_label(bed)?;
        let user = self
            .staff
            .authorize(
                token,
                &access::Action::Export {
                    bed: bed.to_string(),
                },
                now_ms(),
            )?
            .username;
        let store = ward_store::Store::open_read_only(&self.cfg.db_path())?;
        let rendered = req.render(&store, &self.cfg.station_name, &label)?;
        let dir = self.cfg.data_dir.join("exports");
        std::fs::create_dir_all(&dir)
            .map_err(|e| CoreError::Export(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(req.file_name());
        rendered.write(&path)?;
        self.staff.audit(
            &user,
            req.audit_kind(),
            Some(bed),
            serde_json::json!({
                "file": req.file_name(),
                "from_ms": req.from_ms(),
                "to_ms": req.to_ms(),
            }),
        );
        Ok(path)
    }

    /// The alarm log from the database, newest first (one bed, or the unit).
    pub fn alarm_history(
        &self,
        bed: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AlarmLogRow>, CoreError> {
        let store = ward_store::Store::open_read_only(&self.cfg.db_path())?;
        Ok(store.alarm_log(bed, limit.min(10_000))?)
    }

    pub fn snapshot(&self) -> WardSnapshot {
        let now = now_ms();
        let (beds, unassigned) = match self.live.lock() {
            Ok(l) => (l.beds(now), l.unassigned(now)),
            Err(_) => (Vec::new(), Vec::new()),
        };
        WardSnapshot {
            station: self.cfg.station_name.clone(),
            now_ms: now,
            broker: self.broker_addr.to_string(),
            beds,
            unassigned,
            alarms: self.alarm_snapshot(),
            metrics: self.metrics(),
        }
    }

    /// One binary live frame for a viewer (see `live` for the layout).
    pub fn frame(&self, cursor: &mut FrameCursor) -> Vec<u8> {
        match self.live.lock() {
            Ok(l) => l.frame(cursor, now_ms()),
            Err(_) => Vec::new(),
        }
    }

    /// Orderly stop: simulator (it disconnects cleanly after sending everything), broker,
    /// ingest (drains what the broker handed over), then the store writer (writes all queued).
    pub async fn shutdown(mut self) -> Option<ward_sim::SimStats> {
        let mut sim_stats = None;
        if let Some((stop, task)) = self.sim.take() {
            let before = self
                .broker
                .as_ref()
                .map(|b| b.metrics().connections_active)
                .unwrap_or(0);
            let _ = stop.send(true);
            match task.await {
                Ok(Ok(s)) => sim_stats = Some(s),
                Ok(Err(e)) => tracing::error!(error = %e, "simulator ended with an error"),
                Err(e) => tracing::error!(error = %e, "simulator task failed"),
            }
            // The simulated monitors have sent DISCONNECT; their connection tasks end only
            // after routing every packet before it. Wait for that (bounded) so stopping the
            // broker below cannot cut off what they already sent.
            let target = before.saturating_sub(self.cfg.sim_beds as u64);
            for _ in 0..250 {
                let active = self
                    .broker
                    .as_ref()
                    .map(|b| b.metrics().connections_active)
                    .unwrap_or(0);
                if active <= target {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        if let Some(b) = self.broker.take() {
            b.shutdown().await;
        }
        let _ = self.ingest_stop.send(true);
        if let Some(t) = self.ingest.take() {
            let _ = t.await;
        }
        // The alarm driver goes after ingest (it judged everything ingest handed over) and
        // before the writer (its last log rows are written).
        let stop = station_event(&self.cfg, "station.stop", serde_json::json!({}));
        let _ = self.alarm_tx.send(alarms::Input::Audit(stop));
        let _ = self.alarm_tx.send(alarms::Input::Stop);
        if let Some(t) = self.alarm_thread.take() {
            if t.join().is_err() {
                tracing::error!("alarm driver thread panicked");
            }
        }
        // Sync stops before the writer: its last watermark is written.
        if let Some((stop, task)) = self.sync.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
        match Arc::try_unwrap(self.writer) {
            Ok(mut w) => w.finish(),
            Err(_) => tracing::error!(
                "store writer still shared at shutdown; queued records may be unwritten"
            ),
        }
        let _ = std::fs::remove_file(self.cfg.runtime_path());
        tracing::info!("station stopped");
        sim_stats
    }
}
