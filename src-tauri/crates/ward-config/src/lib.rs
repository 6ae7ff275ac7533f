//! ward-config: the station's configuration, raw TOML -> validated [`Config`].
//!
//! What it is: a leaf. [`Config`] owns the type of every section (station, broker, store,
//! alarms, access, upstream, sim, beds), so the crates that use a section import it from
//! here and nothing here imports from them. What it is not: it starts nothing and reads no
//! secret (the upstream password is named by [`PasswordSource`], resolved by `ward_sync`).
//!
//! Layout: this file (raw tables, validation, merge), `sections` (the validated types of the
//! access and upstream sections).
//!
//! The defaults live in one place, assets/wardwatch.toml, compiled in. A user file is laid
//! over them table by table (arrays replace), then command-line overrides on top; only then is
//! the result deserialized and checked, so every error names the file, the key and the reason.

mod sections;

pub use sections::{AccessPolicy, MqttVersion, PasswordSource, UpstreamConfig, KEYRING_STORES};

/// A configuration that cannot be used, naming the file, the key and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {file}: {}{reason}", if key.is_empty() { String::new() } else { format!("key `{key}`: ") })]
    Invalid {
        file: String,
        key: String,
        reason: String,
    },
}

type CoreError = ConfigError;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use ward_alarm::{Category, Escalation, Policy, Priority};
use ward_model::{BedId, DeviceId};
#[cfg(feature = "sim")]
use ward_sim::Scenario;

pub const DEFAULTS: &str = include_str!("../../../../assets/wardwatch.toml");

/// Set by the test harness for every station it starts: resolving the platform's data
/// directory then fails, so no test can write into a real user's data.
pub const FORBID_DEFAULT_DATA_DIR_ENV: &str = "WARDWATCH_FORBID_DEFAULT_DATA_DIR";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    station: RawStation,
    broker: RawBroker,
    store: RawStore,
    liveness: RawLiveness,
    alarms: RawAlarms,
    access: RawAccess,
    upstream: RawUpstream,
    display: RawDisplay,
    sentinel: RawSentinel,
    care_group: RawCareGroup,
    hl7: RawHl7,
    sim: RawSim,
    beds: Vec<RawBed>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHl7 {
    adt_listen: String,
    adt_tls_cert: String,
    adt_tls_key: String,
    point_of_care: String,
    application: String,
    facility: String,
    pcd01_to: String,
    pcd01_every_s: u64,
    pcd04_to: String,
    pcd04_heartbeat_s: u64,
    pcd01_receiver: String,
    pcd04_receiver: String,
    ack_timeout_s: u64,
    keep_days: u64,
    beds: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCareGroup {
    follow: Vec<String>,
    priorities: Vec<String>,
    sound: String,
    reminder_every_s: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSentinel {
    enabled: bool,
    heartbeat_timeout_s: u64,
    min_signal_s: u64,
    startup_grace_s: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    enabled: bool,
    host: String,
    port: u64,
    endpoints: Vec<String>,
    mqtt_version: String,
    ca_file: String,
    client_cert: String,
    client_key: String,
    username: String,
    password_from: String,
    keyring_store: String,
    topic_prefix: String,
    peer_stations: Vec<String>,
    peer_timeout_s: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    nurses_all_beds: bool,
    auto_lock_s: u64,
    demo_accounts: bool,
}

/// `[alarms]` flood and self-limiting settings of the alarm statistics (docs/alarms.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatisticsConfig {
    /// At least this many alarms of one bed within `flood_window_ms` is a flood.
    pub flood_alarms: u32,
    pub flood_window_ms: i64,
    /// An alarm whose cause ends by itself within this time is self-limiting.
    pub self_limiting_ms: i64,
}

/// The upstream password with `password_from = "env"` (never the config file).
pub const UPSTREAM_PASSWORD_ENV: &str = "WARDWATCH_UPSTREAM_PASSWORD";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlarms {
    category: String,
    latch_high: bool,
    latch_medium: bool,
    latch_low: bool,
    audio_pause_s: u64,
    alarm_pause_s: u64,
    allow_audio_off: bool,
    audio_off_reminder_s: u64,
    escalate_medium_after_s: u64,
    sensor_off_s: u64,
    ui_heartbeat_s: u64,
    notifications: bool,
    flood_alarms: u64,
    flood_window_s: u64,
    self_limiting_s: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    name: String,
    id: String,
    data_dir: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    listen: String,
    max_packet_size: u64,
    connect_timeout_s: u64,
    max_connections: u64,
    allow_anonymous: bool,
    password_file: String,
    acl_file: String,
    persist: bool,
    fsync: bool,
    max_queued_messages: u64,
    max_queued_mb: u64,
    max_spill_mb: u64,
    max_keep_alive_s: u64,
    max_msg_rate: u64,
    sys_interval_s: u64,
    tls_listen: String,
    ws_listen: String,
    wss_listen: String,
    tls_cert: String,
    tls_key: String,
    tls_client_ca: String,
    tls_require_client_cert: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    waveform_hours: u64,
    vitals_days: u64,
    max_db_mb: u64,
    prune_every_s: u64,
    batch_ms: u64,
    hold_when_failing_s: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLiveness {
    device_silent_s: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisplay {
    mode: String,
    compositing: String,
}

/// How the station window opens (`[display] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayMode {
    /// Maximized on the primary screen: every bed in view, title bar kept.
    Maximized,
    /// Fullscreen (kiosk) for a PC that is only a central station.
    Fullscreen,
    /// An ordinary 1280x800 window.
    Window,
}

/// How the window's web view composites (`[display] compositing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compositing {
    /// GPU compositing where the machine has a GPU render node, software painting where it
    /// has none (a GL compositor on a software rasterizer re-composites the whole screen on
    /// every change: see docs/BENCHMARKS.md, "Frames").
    Auto,
    /// Always the GPU compositor.
    Gpu,
    /// Always software painting of only what changed.
    Software,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSim {
    beds: u64,
    scenarios: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBed {
    id: String,
    label: String,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    category: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct CareGroupConfig {
    /// Station ids followed; each is also in `upstream.peer_stations`.
    pub follow: Vec<String>,
    pub policy: ward_alarm::care::CarePolicy,
}

/// HL7 v2 interfaces (docs/hl7.md).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hl7Config {
    /// Where the ADT feed is taken; `None`: no feed.
    pub adt_listen: Option<SocketAddr>,
    /// TLS for the ADT feed (certificate, key), when set.
    pub adt_tls: Option<(PathBuf, PathBuf)>,
    /// This unit in PV1-3.1; empty: every point of care.
    pub point_of_care: String,
    pub application: String,
    pub facility: String,
    /// "room/bed" -> bed id.
    pub beds: std::collections::BTreeMap<String, BedId>,
    /// PCD-01 to the interface engine ("host:port"), when on.
    pub pcd01_to: Option<String>,
    pub pcd01_every: Duration,
    /// PCD-04 to the alarm manager ("host:port"), when on.
    pub pcd04_to: Option<String>,
    pub pcd04_heartbeat: Duration,
    pub pcd01_receiver: String,
    pub pcd04_receiver: String,
    pub ack_timeout: Duration,
    pub keep: Duration,
}

impl Hl7Config {
    /// Whether a PV1-3.1 names this unit.
    pub fn ours(&self, point_of_care: &str) -> bool {
        self.point_of_care.is_empty() || self.point_of_care == point_of_care
    }

    /// The station bed a PV1-3 room and bed name, if any (the map first, then the bed id).
    pub fn bed_for(&self, room: &str, bed: &str, beds: &[BedConfig]) -> Option<BedId> {
        if let Some(b) = self.beds.get(&format!("{room}/{bed}")) {
            return Some(b.clone());
        }
        beds.iter()
            .find(|b| b.id.as_str() == bed)
            .map(|b| b.id.clone())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SentinelConfig {
    pub enabled: bool,
    pub watch: ward_alarm::sentinel::WatchPolicy,
}

#[derive(Debug, Clone)]
pub struct BedConfig {
    pub id: BedId,
    pub label: String,
    pub device: Option<DeviceId>,
    pub category: Category,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the settings came from, for messages ("built-in defaults" or a path).
    pub source: String,
    pub station_name: String,
    /// Unique in the hospital; prefixes audit event ids.
    pub station_id: String,
    pub data_dir: PathBuf,
    pub broker: ward_broker::BrokerConfig,
    /// Password file and ACL for the broker; the station adds its simulated monitors'
    /// credentials at start and installs the result as `broker.auth`.
    pub broker_auth: ward_broker::FileAuth,
    pub retention: ward_store::Retention,
    pub prune_every: Duration,
    pub batch_interval: Duration,
    /// While the database cannot be written (disk full), waveforms, vitals and device events
    /// are held in memory this long, then dropped, counted and recorded as a gap.
    pub hold_when_failing: Duration,
    pub device_silent: Duration,
    /// Simulated monitors started with the station (0 in a build without the `sim` feature).
    pub sim_beds: usize,
    #[cfg(feature = "sim")]
    pub scenarios: Vec<Scenario>,
    pub beds: Vec<BedConfig>,
    pub alarm_policy: Policy,
    /// What the unit's alarm statistics call a flood and a self-limiting alarm.
    pub statistics: StatisticsConfig,
    pub notifications: bool,
    pub upstream: Option<UpstreamConfig>,
    pub access: AccessPolicy,
    pub display: DisplayMode,
    pub compositing: Compositing,
    /// The independent watcher of this station (`wardwatch sentinel`), started by the station
    /// when enabled.
    pub sentinel: SentinelConfig,
    /// Other stations whose alarms this one follows (a care group), and how.
    pub care_group: CareGroupConfig,
    pub hl7: Hl7Config,
}

impl Config {
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("wardwatch.sqlite")
    }
    pub fn runtime_path(&self) -> PathBuf {
        self.data_dir.join("runtime.json")
    }

    /// Built-in defaults, then `file` if given, then `overrides` (a TOML table, e.g. from
    /// command-line flags).
    pub fn load(file: Option<&Path>, overrides: toml::Table) -> Result<Self, CoreError> {
        let mut merged: toml::Table =
            DEFAULTS
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    file: "built-in defaults".into(),
                    key: String::new(),
                    reason: e.to_string(),
                })?;
        let source = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                    file: path.display().to_string(),
                    key: String::new(),
                    reason: format!("cannot read: {e}"),
                })?;
                let user: toml::Table =
                    text.parse()
                        .map_err(|e: toml::de::Error| ConfigError::Invalid {
                            file: path.display().to_string(),
                            key: String::new(),
                            reason: e.to_string().trim().to_string(),
                        })?;
                merge(&mut merged, user);
                path.display().to_string()
            }
            None => "built-in defaults".to_string(),
        };
        merge(&mut merged, overrides);
        Self::from_table(merged, &source)
    }

    fn from_table(table: toml::Table, source: &str) -> Result<Self, CoreError> {
        let err = |key: &str, reason: String| ConfigError::Invalid {
            file: source.to_string(),
            key: key.to_string(),
            reason,
        };
        let raw: Raw = Raw::deserialize(toml::Value::Table(table))
            .map_err(|e| err("", e.to_string().trim().to_string()))?;

        let listen: SocketAddr = raw.broker.listen.parse().map_err(|_| {
            err(
                "broker.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:1883",
                    raw.broker.listen
                ),
            )
        })?;
        let in_range = |key: &str, v: u64, lo: u64, hi: u64| -> Result<u64, CoreError> {
            if (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(err(key, format!("{v} is outside {lo}..={hi}")))
            }
        };
        let max_packet_size = in_range(
            "broker.max_packet_size",
            raw.broker.max_packet_size,
            1024,
            16 * 1024 * 1024,
        )?;
        let connect_timeout_s = in_range(
            "broker.connect_timeout_s",
            raw.broker.connect_timeout_s,
            1,
            300,
        )?;
        let max_connections = in_range(
            "broker.max_connections",
            raw.broker.max_connections,
            1,
            100_000,
        )?;
        let max_queued_messages = in_range(
            "broker.max_queued_messages",
            raw.broker.max_queued_messages,
            1,
            10_000_000,
        )?;
        let max_queued_mb = in_range("broker.max_queued_mb", raw.broker.max_queued_mb, 1, 65_536)?;
        let max_spill_mb = in_range(
            "broker.max_spill_mb",
            raw.broker.max_spill_mb,
            0,
            1024 * 1024,
        )?;
        // MQTT's keep-alive is a 16-bit number of seconds; 0 lets clients choose freely.
        let max_keep_alive_s = in_range(
            "broker.max_keep_alive_s",
            raw.broker.max_keep_alive_s,
            0,
            u64::from(u16::MAX),
        )?;
        let max_msg_rate = in_range("broker.max_msg_rate", raw.broker.max_msg_rate, 0, 1_000_000)?;
        let sys_interval_s = in_range(
            "broker.sys_interval_s",
            raw.broker.sys_interval_s,
            0,
            86_400,
        )?;
        let file_of = |s: &str| (!s.trim().is_empty()).then(|| PathBuf::from(s.trim()));
        let passwords = match file_of(&raw.broker.password_file) {
            Some(p) => ward_broker::Passwords::load(&p)
                .map_err(|e| err("broker.password_file", e.to_string()))?,
            None => ward_broker::Passwords::default(),
        };
        let acl = match file_of(&raw.broker.acl_file) {
            Some(p) => {
                ward_broker::Acl::load(&p).map_err(|e| err("broker.acl_file", e.to_string()))?
            }
            None => ward_broker::Acl::default(),
        };
        let broker_auth = ward_broker::FileAuth {
            allow_anonymous: raw.broker.allow_anonymous,
            passwords,
            acl,
        };
        // The optional listeners: empty means none.
        let addr_of = |key: &str, v: &str| -> Result<Option<SocketAddr>, ConfigError> {
            let v = v.trim();
            if v.is_empty() {
                return Ok(None);
            }
            v.parse()
                .map(Some)
                .map_err(|_| err(key, format!("{v:?} is not an address like 0.0.0.0:8883")))
        };
        let tls = match addr_of("broker.tls_listen", &raw.broker.tls_listen)? {
            None => None,
            Some(tls_listen) => {
                let need = |key: &str, v: &str| {
                    file_of(v)
                        .ok_or_else(|| err(key, "needed when broker.tls_listen is set".into()))
                };
                Some(ward_broker::TlsConfig {
                    listen: tls_listen,
                    cert: need("broker.tls_cert", &raw.broker.tls_cert)?,
                    key: need("broker.tls_key", &raw.broker.tls_key)?,
                    client_ca: file_of(&raw.broker.tls_client_ca),
                    require_client_cert: raw.broker.tls_require_client_cert,
                    reload_interval: Duration::from_secs(30),
                })
            }
        };
        let ws_listen = addr_of("broker.ws_listen", &raw.broker.ws_listen)?;
        let wss_listen = addr_of("broker.wss_listen", &raw.broker.wss_listen)?;
        if wss_listen.is_some() && tls.is_none() {
            return Err(err(
                "broker.wss_listen",
                "needs broker.tls_listen, tls_cert and tls_key (its certificate)".into(),
            ));
        }
        if raw.broker.tls_require_client_cert && raw.broker.tls_client_ca.trim().is_empty() {
            return Err(err(
                "broker.tls_require_client_cert",
                "needs broker.tls_client_ca".into(),
            ));
        }
        let waveform_hours =
            in_range("store.waveform_hours", raw.store.waveform_hours, 1, 24 * 30)?;
        let vitals_days = in_range("store.vitals_days", raw.store.vitals_days, 1, 3650)?;
        // 0 turns the cap off; below 16 MB the cap would be spent on the never-evicted alarm
        // log and audit trail alone.
        let max_db_mb = match raw.store.max_db_mb {
            0 => 0,
            mb => in_range("store.max_db_mb", mb, 16, 16 * 1024 * 1024)?,
        };
        let prune_every_s = in_range("store.prune_every_s", raw.store.prune_every_s, 1, 3600)?;
        let batch_ms = in_range("store.batch_ms", raw.store.batch_ms, 10, 5000)?;
        let hold_when_failing_s = in_range(
            "store.hold_when_failing_s",
            raw.store.hold_when_failing_s,
            1,
            3600,
        )?;
        let device_silent_s = in_range(
            "liveness.device_silent_s",
            raw.liveness.device_silent_s,
            1,
            600,
        )?;
        let sim_beds = in_range("sim.beds", raw.sim.beds, 0, 512)? as usize;
        // Same rules as device ids: it becomes part of MQTT topics and event ids.
        let station_id = DeviceId::new(raw.station.id.clone())
            .map_err(|e| err("station.id", e.to_string()))?
            .as_str()
            .to_string();
        let a = &raw.alarms;
        let category = |key: &str, v: &str| {
            Category::parse(v).ok_or_else(|| {
                err(
                    key,
                    format!("{v:?} is not one of adult, pediatric, neonatal"),
                )
            })
        };
        let default_category = category("alarms.category", &a.category)?;
        let secs = |key: &str, v: u64, lo: u64, hi: u64| -> Result<i64, CoreError> {
            Ok(in_range(key, v, lo, hi)? as i64 * 1000)
        };
        // Pauses: IEC 60601-1-8 allows longer, but past 10 minutes a paused alarm is a
        // forgotten alarm.
        let escalate = secs(
            "alarms.escalate_medium_after_s",
            a.escalate_medium_after_s,
            0,
            3600,
        )?;
        let alarm_policy = Policy {
            latch_high: a.latch_high,
            latch_medium: a.latch_medium,
            latch_low: a.latch_low,
            audio_pause_ms: secs("alarms.audio_pause_s", a.audio_pause_s, 10, 600)?,
            alarm_pause_ms: secs("alarms.alarm_pause_s", a.alarm_pause_s, 10, 600)?,
            allow_audio_off: a.allow_audio_off,
            audio_off_reminder_ms: secs(
                "alarms.audio_off_reminder_s",
                a.audio_off_reminder_s,
                10,
                600,
            )?,
            escalation: if escalate > 0 {
                vec![Escalation {
                    from: Priority::Medium,
                    after_ms: escalate,
                    to: Priority::High,
                }]
            } else {
                Vec::new()
            },
            device_silent_ms: device_silent_s as i64 * 1000,
            no_value_delay_ms: secs("alarms.sensor_off_s", a.sensor_off_s, 1, 600)?,
            ui_heartbeat_ms: secs("alarms.ui_heartbeat_s", a.ui_heartbeat_s, 2, 60)?,
            ..Policy::default()
        };
        let notifications = a.notifications;
        let statistics = StatisticsConfig {
            flood_alarms: in_range("alarms.flood_alarms", a.flood_alarms, 2, 1000)? as u32,
            flood_window_ms: secs("alarms.flood_window_s", a.flood_window_s, 60, 86_400)?,
            self_limiting_ms: secs("alarms.self_limiting_s", a.self_limiting_s, 1, 600)?,
        };
        let sn = &raw.sentinel;
        let sentinel = SentinelConfig {
            enabled: sn.enabled,
            watch: ward_alarm::sentinel::WatchPolicy {
                heartbeat_timeout_ms: secs(
                    "sentinel.heartbeat_timeout_s",
                    sn.heartbeat_timeout_s,
                    2,
                    60,
                )?,
                // The standard's 120 s is the default; shorter is for drills and tests.
                min_signal_ms: secs("sentinel.min_signal_s", sn.min_signal_s, 1, 3600)?,
                startup_grace_ms: secs("sentinel.startup_grace_s", sn.startup_grace_s, 5, 600)?,
            },
        };
        let upstream = upstream(&raw.upstream, &station_id, &raw.station.name, &err)?;
        let care_group = care_group(&raw.care_group, upstream.as_ref(), &err)?;
        let access = AccessPolicy {
            nurses_all_beds: raw.access.nurses_all_beds,
            // 0 turns auto-lock off; otherwise 30 s .. 12 h (a shift).
            auto_lock_ms: match raw.access.auto_lock_s {
                0 => 0,
                v => secs("access.auto_lock_s", v, 30, 12 * 3600)?,
            },
            demo_accounts: raw.access.demo_accounts,
        };

        let display = one_of(
            "display.mode",
            &raw.display.mode,
            &[
                ("maximized", DisplayMode::Maximized),
                ("fullscreen", DisplayMode::Fullscreen),
                ("window", DisplayMode::Window),
            ],
            &err,
        )?;
        let compositing = one_of(
            "display.compositing",
            &raw.display.compositing,
            &[
                ("auto", Compositing::Auto),
                ("gpu", Compositing::Gpu),
                ("software", Compositing::Software),
            ],
            &err,
        )?;

        // The shipped station has no simulator: a config that asks for one says so.
        #[cfg(not(feature = "sim"))]
        if sim_beds > 0 || !raw.sim.scenarios.is_empty() {
            return Err(err(
                if sim_beds > 0 {
                    "sim.beds"
                } else {
                    "sim.scenarios"
                },
                "this build of Wardwatch has no simulated ward (built without the `sim` feature)"
                    .into(),
            ));
        }
        #[cfg(feature = "sim")]
        let mut scenarios = Vec::new();
        #[cfg(feature = "sim")]
        for (i, text) in raw.sim.scenarios.iter().enumerate() {
            let s = Scenario::parse(text)
                .map_err(|e| err(&format!("sim.scenarios[{i}]"), e.to_string()))?;
            if s.bed > sim_beds {
                return Err(err(
                    &format!("sim.scenarios[{i}]"),
                    format!("bed {} is not among the {sim_beds} simulated beds", s.bed),
                ));
            }
            scenarios.push(s);
        }

        let mut beds = Vec::new();
        let mut ids = HashSet::new();
        let mut devices = HashSet::new();
        for (i, b) in raw.beds.into_iter().enumerate() {
            let key = |field: &str| format!("beds[{i}].{field}");
            let id = BedId::new(b.id).map_err(|e| err(&key("id"), e.to_string()))?;
            if !ids.insert(id.clone()) {
                return Err(err(&key("id"), format!("{id} is used by another bed")));
            }
            if b.label.trim().is_empty() || b.label.len() > 40 {
                return Err(err(&key("label"), "must be 1-40 characters".into()));
            }
            let device = match b.device {
                Some(d) if !d.is_empty() => {
                    let d = DeviceId::new(d).map_err(|e| err(&key("device"), e.to_string()))?;
                    if !devices.insert(d.clone()) {
                        return Err(err(
                            &key("device"),
                            format!("{d} is already at another bed"),
                        ));
                    }
                    Some(d)
                }
                _ => None,
            };
            let category = match &b.category {
                Some(c) => category(&key("category"), c)?,
                None => default_category,
            };
            beds.push(BedConfig {
                id,
                label: b.label,
                device,
                category,
            });
        }
        if beds.len() > 64 {
            return Err(err(
                "beds",
                format!("{} beds; a station serves at most 64", beds.len()),
            ));
        }

        let hl7 = {
            let h = &raw.hl7;
            let mut map = std::collections::BTreeMap::new();
            for (loc, bed) in &h.beds {
                let key = format!("hl7.beds.{loc:?}");
                if loc.split('/').count() != 2 {
                    return Err(err(
                        &key,
                        "the key must be \"room/bed\", e.g. \"401/A\"".into(),
                    ));
                }
                let Some(b) = beds.iter().find(|b| b.id.as_str() == bed) else {
                    return Err(err(
                        &key,
                        format!("{bed:?} is not one of this station's beds"),
                    ));
                };
                map.insert(loc.clone(), b.id.clone());
            }
            let text = |key: &str, v: &str| {
                if v.len() > 40 || v.chars().any(|c| c.is_control() || "|^~\\&".contains(c)) {
                    Err(err(
                        key,
                        "must be at most 40 characters, no control characters or | ^ ~ \\ &".into(),
                    ))
                } else {
                    Ok(v.to_string())
                }
            };
            let dest = |key: &str, v: &str| -> Result<Option<String>, ConfigError> {
                let v = v.trim();
                if v.is_empty() {
                    return Ok(None);
                }
                match v.rsplit_once(':') {
                    Some((host, port))
                        if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) =>
                    {
                        Ok(Some(v.to_string()))
                    }
                    _ => Err(err(
                        key,
                        format!("{v:?} is not host:port, e.g. \"engine.hospital.org:2575\""),
                    )),
                }
            };
            let secs = |key: &str, v: u64, lo: u64, hi: u64| {
                if (lo..=hi).contains(&v) {
                    Ok(Duration::from_secs(v))
                } else {
                    Err(err(key, format!("{v} is outside {lo}..={hi}")))
                }
            };
            let adt_tls = match (file_of(&h.adt_tls_cert), file_of(&h.adt_tls_key)) {
                (None, None) => None,
                (Some(c), Some(k)) => Some((c, k)),
                _ => {
                    return Err(err(
                        "hl7.adt_tls_cert",
                        "set both adt_tls_cert and adt_tls_key, or neither".into(),
                    ))
                }
            };
            Hl7Config {
                adt_tls,
                pcd01_to: dest("hl7.pcd01_to", &h.pcd01_to)?,
                pcd01_every: secs("hl7.pcd01_every_s", h.pcd01_every_s, 1, 86_400)?,
                pcd04_to: dest("hl7.pcd04_to", &h.pcd04_to)?,
                pcd04_heartbeat: secs("hl7.pcd04_heartbeat_s", h.pcd04_heartbeat_s, 1, 3600)?,
                pcd01_receiver: text("hl7.pcd01_receiver", &h.pcd01_receiver)?,
                pcd04_receiver: text("hl7.pcd04_receiver", &h.pcd04_receiver)?,
                ack_timeout: secs("hl7.ack_timeout_s", h.ack_timeout_s, 1, 600)?,
                keep: secs("hl7.keep_days", h.keep_days, 1, 3650)? * 86_400,
                adt_listen: addr_of("hl7.adt_listen", &h.adt_listen)?,
                point_of_care: text("hl7.point_of_care", &h.point_of_care)?,
                application: text("hl7.application", &h.application)?,
                facility: text("hl7.facility", &h.facility)?,
                beds: map,
            }
        };

        let data_dir = if raw.station.data_dir.trim().is_empty() {
            default_data_dir().map_err(|reason| err("station.data_dir", reason))?
        } else {
            PathBuf::from(raw.station.data_dir)
        };

        let broker_store = raw.broker.persist.then(|| data_dir.join("broker.sqlite"));
        Ok(Self {
            source: source.to_string(),
            station_name: raw.station.name,
            station_id,
            data_dir,
            broker: ward_broker::BrokerConfig {
                listen,
                tls,
                ws_listen,
                wss_listen,
                max_packet_size: max_packet_size as usize,
                connect_timeout: Duration::from_secs(connect_timeout_s),
                max_connections: max_connections as usize,
                max_queued_messages: max_queued_messages as usize,
                max_queued_bytes: (max_queued_mb * 1024 * 1024) as usize,
                max_spilled_bytes: (max_spill_mb * 1024 * 1024) as usize,
                max_keep_alive: max_keep_alive_s as u16,
                max_msg_rate: max_msg_rate as u32,
                store: broker_store,
                fsync: raw.broker.fsync,
                sys_interval: Duration::from_secs(sys_interval_s),
                auth: ward_broker::AuthHook(std::sync::Arc::new(broker_auth.clone())),
                ..ward_broker::BrokerConfig::default()
            },
            broker_auth,
            retention: ward_store::Retention {
                waveforms: Duration::from_secs(waveform_hours * 3600),
                trends: Duration::from_secs(vitals_days * 86_400),
                max_bytes: (max_db_mb > 0).then_some(max_db_mb * 1024 * 1024),
            },
            prune_every: Duration::from_secs(prune_every_s),
            batch_interval: Duration::from_millis(batch_ms),
            hold_when_failing: Duration::from_secs(hold_when_failing_s),
            device_silent: Duration::from_secs(device_silent_s),
            sim_beds,
            #[cfg(feature = "sim")]
            scenarios,
            beds,
            alarm_policy,
            statistics,
            notifications,
            upstream,
            access,
            display,
            compositing,
            sentinel,
            care_group,
            hl7,
        })
    }
}

/// A setting that is one of a few words: the value for `v`, or an error naming the choices.
fn one_of<T: Copy>(
    key: &str,
    v: &str,
    choices: &[(&str, T)],
    err: &dyn Fn(&str, String) -> CoreError,
) -> Result<T, CoreError> {
    choices
        .iter()
        .find(|(name, _)| *name == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
            err(key, format!("{v:?} is not one of {}", names.join(", ")))
        })
}

fn care_group(
    c: &RawCareGroup,
    upstream: Option<&UpstreamConfig>,
    err: &dyn Fn(&str, String) -> CoreError,
) -> Result<CareGroupConfig, CoreError> {
    for (i, f) in c.follow.iter().enumerate() {
        let key = format!("care_group.follow[{i}]");
        match upstream {
            None => return Err(err(&key, "needs [upstream] enabled: other stations' alarms come through the hospital core".into())),
            Some(u) if !u.peers.contains(f) => {
                return Err(err(&key, format!("{f:?} is not in upstream.peer_stations (add it there: its acknowledgements and liveness come the same way)")))
            }
            Some(_) => {}
        }
    }
    let mut priorities = Vec::new();
    for (i, p) in c.priorities.iter().enumerate() {
        let key = format!("care_group.priorities[{i}]");
        priorities.push(Priority::from_name(p).ok_or_else(|| {
            err(
                &key,
                format!("{p:?} is not one of \"high\", \"medium\", \"low\""),
            )
        })?);
    }
    let sound = match c.sound.as_str() {
        "reminder" => ward_alarm::care::CareSound::Reminder,
        "silent" => ward_alarm::care::CareSound::Silent,
        other => {
            return Err(err(
                "care_group.sound",
                format!("{other:?} is not one of \"reminder\", \"silent\""),
            ))
        }
    };
    if !(5..=600).contains(&c.reminder_every_s) {
        return Err(err(
            "care_group.reminder_every_s",
            format!("{} is outside 5..=600", c.reminder_every_s),
        ));
    }
    Ok(CareGroupConfig {
        follow: c.follow.clone(),
        policy: ward_alarm::care::CarePolicy {
            priorities,
            sound,
            reminder_every_ms: c.reminder_every_s as i64 * 1000,
        },
    })
}

fn upstream(
    u: &RawUpstream,
    station_id: &str,
    station_name: &str,
    err: &dyn Fn(&str, String) -> CoreError,
) -> Result<Option<UpstreamConfig>, CoreError> {
    if !u.enabled {
        return Ok(None);
    }
    let port = u16::try_from(u.port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| err("upstream.port", format!("{} is outside 1..=65535", u.port)))?;
    let endpoints = endpoints(u, port, err)?;
    let mqtt_version = match u.mqtt_version.as_str() {
        "5" => MqttVersion::V5,
        "3.1.1" => MqttVersion::V311,
        other => {
            return Err(err(
                "upstream.mqtt_version",
                format!("{other:?} is not one of \"5\", \"3.1.1\""),
            ))
        }
    };
    // The first endpoint names the upstream: its watermark, its keyring account.
    let (first_host, first_port) = endpoints[0].clone();
    let path = |s: &str| (!s.trim().is_empty()).then(|| PathBuf::from(s));
    let client_cert = match (path(&u.client_cert), path(&u.client_key)) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(err(
                "upstream.client_cert",
                "client_cert and client_key go together".into(),
            ))
        }
    };
    if client_cert.is_some() && u.ca_file.trim().is_empty() {
        return Err(err(
            "upstream.ca_file",
            "a client certificate needs TLS: set ca_file".into(),
        ));
    }
    let username = (!u.username.is_empty()).then(|| u.username.clone());
    let password = match u.password_from.as_str() {
        "none" => PasswordSource::None,
        "env" => PasswordSource::Env,
        "keyring" => {
            let store = match u.keyring_store.trim() {
                "" => sections::default_keyring_store().to_string(),
                s if KEYRING_STORES.contains(&s) => s.to_string(),
                s => {
                    return Err(err(
                        "upstream.keyring_store",
                        format!("{s:?} is not one of {}", KEYRING_STORES.join(", ")),
                    ))
                }
            };
            PasswordSource::Keyring {
                store,
                account: format!("{}@{first_host}:{first_port}", u.username),
            }
        }
        other => {
            return Err(err(
                "upstream.password_from",
                format!("{other:?} is not one of keyring, env, none"),
            ))
        }
    };
    if username.is_some() == (password == PasswordSource::None) {
        return Err(err(
            "upstream.password_from",
            if username.is_some() {
                "is \"none\" but upstream.username is set".to_string()
            } else {
                "needs upstream.username (a password without a user name is not sent)".to_string()
            },
        ));
    }
    if u.topic_prefix.is_empty() || u.topic_prefix.contains(['+', '#']) {
        return Err(err(
            "upstream.topic_prefix",
            "must be a non-empty topic without wildcards".into(),
        ));
    }
    if !(3..=300).contains(&u.peer_timeout_s) {
        return Err(err(
            "upstream.peer_timeout_s",
            format!("{} is outside 3..=300", u.peer_timeout_s),
        ));
    }
    let mut peers = Vec::new();
    for (i, p) in u.peer_stations.iter().enumerate() {
        let key = format!("upstream.peer_stations[{i}]");
        let id = DeviceId::new(p.clone()).map_err(|e| err(&key, e.to_string()))?;
        if id.as_str() == station_id {
            return Err(err(&key, "is this station's own id".into()));
        }
        peers.push(id.to_string());
    }
    Ok(Some(UpstreamConfig {
        name: format!("{first_host}:{first_port}"),
        endpoints,
        mqtt_version,
        ca_file: path(&u.ca_file),
        client_cert,
        username,
        password,
        topic_prefix: u.topic_prefix.clone(),
        client_id: format!("wardwatch-{station_id}"),
        peers,
        peer_timeout: Duration::from_secs(u.peer_timeout_s),
        station_name: station_name.to_string(),
    }))
}

/// The core's endpoints: `host` and `port`, or the list `endpoints` ("host:port", the port
/// `upstream.port` when left out), not both; at least one.
fn endpoints(
    u: &RawUpstream,
    port: u16,
    err: &dyn Fn(&str, String) -> CoreError,
) -> Result<Vec<(String, u16)>, CoreError> {
    let host = u.host.trim();
    if u.endpoints.is_empty() {
        if host.is_empty() {
            return Err(err(
                "upstream.host",
                "is empty but upstream.enabled is true (set host, or endpoints for a clustered core)"
                    .into(),
            ));
        }
        return Ok(vec![(host.to_string(), port)]);
    }
    if !host.is_empty() {
        return Err(err(
            "upstream.endpoints",
            "is set and so is upstream.host: set one of them (the host is the first endpoint)"
                .into(),
        ));
    }
    let mut out: Vec<(String, u16)> = Vec::new();
    for (i, e) in u.endpoints.iter().enumerate() {
        let key = format!("upstream.endpoints[{i}]");
        let e = e.trim();
        let bad = || {
            err(
                &key,
                format!("{e:?} is not host or host:port, e.g. \"core-2.hospital.org:8883\""),
            )
        };
        // "[v6]:port", "[v6]", "host:port" or "host"; brackets kept (the client resolves
        // "host:port" strings).
        let (h, p) = match e.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.ends_with(']')) => {
                let p = p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad)?;
                (h, p)
            }
            _ if !e.is_empty()
                && (!e.contains(':') || (e.starts_with('[') && e.ends_with(']'))) =>
            {
                (e, port)
            }
            _ => return Err(bad()),
        };
        if h.contains(char::is_whitespace) {
            return Err(bad());
        }
        if out.iter().any(|(oh, op)| oh == h && *op == p) {
            return Err(err(&key, format!("{h}:{p} is listed twice")));
        }
        out.push((h.to_string(), p));
    }
    Ok(out)
}

fn default_data_dir() -> Result<PathBuf, String> {
    if std::env::var_os(FORBID_DEFAULT_DATA_DIR_ENV).is_some() {
        return Err(format!(
            "is empty and {FORBID_DEFAULT_DATA_DIR_ENV} is set (tests must name their own data directory)"
        ));
    }
    directories::ProjectDirs::from("org", "wardwatch", "wardwatch")
        .map(|d| d.data_dir().to_path_buf())
        .ok_or_else(|| "is empty and no home directory is known; set it explicitly".to_string())
}

/// Lays `over` onto `base`: tables merge key by key, everything else (arrays too) replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_data_dir(extra: &str) -> String {
        format!("[station]\ndata_dir = \"/tmp/ww-test\"\n{extra}")
    }

    fn load_text(text: &str) -> Result<Config, CoreError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("station.toml");
        std::fs::write(&p, text).unwrap();
        Config::load(Some(&p), toml::Table::new())
    }

    #[test]
    fn defaults_load_and_map_sixteen_beds() {
        let c = load_text(&with_data_dir("")).unwrap();
        assert_eq!(c.beds.len(), 16);
        assert_eq!(c.beds[2].device.as_ref().unwrap().as_str(), "sim-03");
        assert_eq!(c.retention.waveforms, Duration::from_secs(72 * 3600));
        assert_eq!(c.broker.listen.port(), 1883);
        assert_eq!(c.db_path(), PathBuf::from("/tmp/ww-test/wardwatch.sqlite"));
    }

    #[test]
    fn broker_keep_alive_spill_and_websocket_settings_reach_the_broker() {
        let c = load_text(&with_data_dir("")).unwrap();
        assert_eq!(c.broker.max_keep_alive, 600);
        assert_eq!(c.broker.max_spilled_bytes, 1024 * 1024 * 1024);
        assert_eq!((c.broker.ws_listen, c.broker.wss_listen), (None, None));
        let c = load_text(&with_data_dir(
            "[broker]\nmax_keep_alive_s = 120\nmax_spill_mb = 8\nws_listen = \"127.0.0.1:9001\"\n",
        ))
        .unwrap();
        assert_eq!(c.broker.max_keep_alive, 120);
        assert_eq!(c.broker.max_spilled_bytes, 8 * 1024 * 1024);
        assert_eq!(c.broker.ws_listen, Some("127.0.0.1:9001".parse().unwrap()));
    }

    #[test]
    fn the_window_opens_maximized_unless_told_otherwise() {
        let c = load_text(&with_data_dir("")).unwrap();
        assert_eq!(c.display, DisplayMode::Maximized);
        let c = load_text(&with_data_dir("[display]\nmode = \"fullscreen\"\n")).unwrap();
        assert_eq!(c.display, DisplayMode::Fullscreen);
    }

    /// A clustered core: its nodes in order, the port filled in where left out; the first
    /// names the upstream (watermark, keyring account) whatever node is in use.
    #[test]
    fn a_clustered_core_is_a_list_of_endpoints() {
        let up = |extra: &str| {
            load_text(&with_data_dir(&format!(
                "[upstream]\nenabled = true\n{extra}"
            )))
            .unwrap()
            .upstream
            .unwrap()
        };
        let u = up("host = \"core\"\nport = 1883\n");
        assert_eq!(u.endpoints, vec![("core".to_string(), 1883)]);
        assert_eq!(
            (u.name.as_str(), u.mqtt_version),
            ("core:1883", MqttVersion::V5)
        );
        let u = up(
            "endpoints = [\"core-1:5001\", \"core-2\", \"[::1]:5003\", \"[fd00::4]\"]\nport = 8883\nmqtt_version = \"3.1.1\"\n",
        );
        assert_eq!(
            u.endpoints,
            vec![
                ("core-1".to_string(), 5001),
                ("core-2".to_string(), 8883),
                ("[::1]".to_string(), 5003),
                ("[fd00::4]".to_string(), 8883),
            ]
        );
        assert_eq!(
            (u.name.as_str(), u.mqtt_version),
            ("core-1:5001", MqttVersion::V311)
        );
    }

    #[test]
    fn user_file_overrides_only_what_it_names() {
        let c = load_text(&with_data_dir("[store]\nwaveform_hours = 6\n")).unwrap();
        assert_eq!(c.retention.waveforms, Duration::from_secs(6 * 3600));
        assert_eq!(c.retention.trends, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let cases = [
            (
                "[store]\nwaveform_hours = 0\n",
                "store.waveform_hours",
                "outside 1..=720",
            ),
            ("[store]\nwaveform_hours = \"lots\"\n", "", "waveform_hours"),
            (
                "[broker]\nlisten = \"everywhere\"\n",
                "broker.listen",
                "not an address",
            ),
            ("[broker]\nlistne = \"x\"\n", "", "listne"),
            (
                "[[beds]]\nid = \"a\"\nlabel = \"A\"\n[[beds]]\nid = \"a\"\nlabel = \"B\"\n",
                "beds[1].id",
                "used by another bed",
            ),
            (
                "[[beds]]\nid = \"a/b\"\nlabel = \"A\"\n",
                "beds[0].id",
                "only ASCII",
            ),
            (
                "[sim]\nbeds = 4\nscenarios = [\"bed 9 goes silent at 1 s\"]\n",
                if cfg!(feature = "sim") {
                    "sim.scenarios[0]"
                } else {
                    "sim.beds"
                },
                if cfg!(feature = "sim") {
                    "not among"
                } else {
                    "no simulated ward"
                },
            ),
            ("[store\n", "", "TOML parse error"),
            (
                "[display]\nmode = \"kiosk\"\n",
                "display.mode",
                "not one of",
            ),
            (
                "[broker]\nmax_keep_alive_s = 70000\n",
                "broker.max_keep_alive_s",
                "outside 0..=65535",
            ),
            (
                "[broker]\nws_listen = \"port 80\"\n",
                "broker.ws_listen",
                "not an address",
            ),
            (
                "[broker]\nwss_listen = \"127.0.0.1:0\"\n",
                "broker.wss_listen",
                "needs broker.tls_listen",
            ),
            (
                "[care_group]\nfollow = [\"st-b\"]\n",
                "care_group.follow[0]",
                "needs [upstream] enabled",
            ),
            (
                "[upstream]\nenabled = true\nhost = \"core\"\npeer_stations = [\"st-b\"]\n[care_group]\nfollow = [\"st-c\"]\n",
                "care_group.follow[0]",
                "not in upstream.peer_stations",
            ),
            (
                "[upstream]\nenabled = true\nhost = \"core\"\npeer_stations = [\"st-b\"]\n[care_group]\npriorities = [\"urgent\"]\n",
                "care_group.priorities[0]",
                "not one of",
            ),
            (
                "[sentinel]\nheartbeat_timeout_s = 1\n",
                "sentinel.heartbeat_timeout_s",
                "outside 2..=60",
            ),
            (
                "[upstream]\nenabled = true\nhost = \"core\"\npeer_stations = [\"st-b\"]\npeer_timeout_s = 1\n",
                "upstream.peer_timeout_s",
                "outside 3..=300",
            ),
            (
                "[hl7]\npcd01_to = \"engine\"\n",
                "hl7.pcd01_to",
                "is not host:port",
            ),
            (
                "[hl7]\npcd04_to = \"engine:0\"\n",
                "hl7.pcd04_to",
                "is not host:port",
            ),
            (
                "[hl7]\nadt_listen = \"everywhere\"\n",
                "hl7.adt_listen",
                "is not an address",
            ),
            (
                "[hl7]\nadt_tls_cert = \"/x.pem\"\n",
                "hl7.adt_tls_cert",
                "set both",
            ),
            (
                "[hl7.beds]\n\"401/A\" = \"bed-99\"\n",
                "hl7.beds.\"401/A\"",
                "not one of this station's beds",
            ),
            (
                "[hl7.beds]\n\"401\" = \"bed-01\"\n",
                "hl7.beds.\"401\"",
                "room/bed",
            ),
            (
                "[hl7]\npoint_of_care = \"4W|X\"\n",
                "hl7.point_of_care",
                "no control characters or |",
            ),
            (
                "[hl7]\npcd01_every_s = 0\n",
                "hl7.pcd01_every_s",
                "outside 1..=86400",
            ),
            (
                "[upstream]\nenabled = true\n",
                "upstream.host",
                "set host, or endpoints",
            ),
            (
                "[upstream]\nenabled = true\nhost = \"core\"\nendpoints = [\"a:1883\"]\n",
                "upstream.endpoints",
                "set one of them",
            ),
            (
                "[upstream]\nenabled = true\nendpoints = [\"a:1883\", \"b:http\"]\n",
                "upstream.endpoints[1]",
                "is not host or host:port",
            ),
            (
                "[upstream]\nenabled = true\nendpoints = [\"::1\"]\n",
                "upstream.endpoints[0]",
                "is not host or host:port",
            ),
            (
                "[upstream]\nenabled = true\nendpoints = [\"a:1883\", \"a\"]\nport = 1883\n",
                "upstream.endpoints[1]",
                "listed twice",
            ),
            (
                "[upstream]\nenabled = true\nhost = \"core\"\nmqtt_version = \"3\"\n",
                "upstream.mqtt_version",
                "not one of",
            ),
        ];
        for (text, key, reason) in cases {
            let e = load_text(&with_data_dir(text)).unwrap_err();
            let ConfigError::Invalid {
                file,
                key: k,
                reason: r,
            } = &e;
            assert!(file.ends_with("station.toml"), "{e}");
            assert_eq!(k, key, "{e}");
            assert!(r.contains(reason), "{e}");
        }
    }

    #[test]
    fn overrides_apply_last() {
        let mut o = toml::Table::new();
        let mut b = toml::Table::new();
        b.insert("listen".into(), toml::Value::String("127.0.0.1:0".into()));
        o.insert("broker".into(), toml::Value::Table(b));
        let mut s = toml::Table::new();
        s.insert("data_dir".into(), toml::Value::String("/tmp/x".into()));
        o.insert("station".into(), toml::Value::Table(s));
        let c = Config::load(None, o).unwrap();
        assert_eq!(c.broker.listen.port(), 0);
        assert_eq!(c.source, "built-in defaults");
    }
}
