//! ward-alarm: the station's alarm system logic, following IEC 60601-1-8.
//!
//! What it is: a pure, deterministic [`Engine`] (monotonic and wall time passed in as
//! milliseconds, no clock, no I/O): physiological alarms from limit rules with condition delay and hysteresis, mirrored
//! device alarms, technical alarms, priorities, latching by hospital policy, the inactivation
//! states (ACKNOWLEDGED, AUDIO PAUSED, ALARM PAUSED, AUDIO OFF), escalation, reminders and an
//! alarm log. And [`tone`]: the audible alarm signals synthesized as PCM from the standard's
//! burst tables.
//!
//! What it is not: it plays nothing, stores nothing and reads no clock. ward-core drives it
//! (feeds vitals, polls it, plays its annunciation, writes its log).
//!
//! Layout: `care` (other stations' alarms followed here), `command` (the one alarm action type), `rules` (limit rules and per-category
//! defaults), `engine` (the state machine),
//! `sentinel` (the watch the sentinel process keeps over the station), `tone` (burst tables
//! and synthesis), this file (policy, errors).
#![forbid(unsafe_code)]

pub mod care;
pub mod command;
pub mod engine;
pub mod rules;
pub mod sentinel;
pub mod tone;

pub use command::{AlarmCommand, PEER_ACK_SKEW_MS};
pub use engine::{
    Alarm, Annunciation, Condition, Engine, Inactivation, LogEntry, LogKind, Restore, Scope,
    Technical, CLOCK_STEP_TOLERANCE_MS,
};
pub use rules::{Category, Direction, LimitRule};
pub use ward_model::Priority;

/// Time in milliseconds. The engine only compares and adds them; the driver decides the epoch.
/// Timers take monotonic milliseconds; stamps are wall-clock (see [`Engine::set_clock`]).
pub type Ms = i64;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AlarmError {
    #[error("no alarm with id {0} (it may have ended)")]
    UnknownAlarm(u64),
    #[error("alarm {0} is already acknowledged")]
    AlreadyAcknowledged(u64),
    #[error("no bed {0:?}")]
    UnknownBed(String),
    #[error("limit rule {index}: {reason}")]
    InvalidRule { index: usize, reason: String },
    #[error("an action on alarms needs the name of the person taking it")]
    NoUser,
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
}

impl AlarmError {
    /// Stable code for the UI to branch on.
    pub fn code(&self) -> ward_model::ErrorCode {
        use ward_model::ErrorCode;
        match self {
            AlarmError::UnknownAlarm(_) => ErrorCode::UnknownAlarm,
            AlarmError::AlreadyAcknowledged(_) => ErrorCode::AlreadyAcknowledged,
            AlarmError::UnknownBed(_) => ErrorCode::UnknownBed,
            AlarmError::InvalidRule { .. } => ErrorCode::InvalidRule,
            AlarmError::NoUser => ErrorCode::NoUser,
            AlarmError::NotAllowed(_) => ErrorCode::NotAllowed,
        }
    }
}

/// "After `after_ms` unanswered at priority `from`, raise it to `to`."
#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    pub from: Priority,
    pub after_ms: Ms,
    pub to: Priority,
}

/// The hospital's alarm policy (config, not per user).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub latch_high: bool,
    pub latch_medium: bool,
    pub latch_low: bool,
    pub audio_pause_ms: Ms,
    pub alarm_pause_ms: Ms,
    pub allow_audio_off: bool,
    pub audio_off_reminder_ms: Ms,
    pub escalation: Vec<Escalation>,
    pub device_silent_ms: Ms,
    pub device_silent_priority: Priority,
    /// How long a measure may read "value not available" before it is a technical alarm.
    pub no_value_delay_ms: Ms,
    pub sensor_priority: Priority,
    pub station_technical_priority: Priority,
    pub ui_heartbeat_ms: Ms,
}

impl Default for Policy {
    /// Typical: HIGH latches, MEDIUM and LOW do not (clinical.md §1); audio pause 120 s;
    /// audio off not allowed; unanswered MEDIUM becomes HIGH after 120 s; a silent monitor
    /// is a MEDIUM technical alarm after 5 s.
    fn default() -> Self {
        Self {
            latch_high: true,
            latch_medium: false,
            latch_low: false,
            audio_pause_ms: 120_000,
            alarm_pause_ms: 120_000,
            allow_audio_off: false,
            audio_off_reminder_ms: 180_000,
            escalation: vec![Escalation {
                from: Priority::Medium,
                after_ms: 120_000,
                to: Priority::High,
            }],
            device_silent_ms: 5_000,
            device_silent_priority: Priority::Medium,
            no_value_delay_ms: 10_000,
            sensor_priority: Priority::Low,
            station_technical_priority: Priority::High,
            ui_heartbeat_ms: 5_000,
        }
    }
}

impl Policy {
    pub fn latches(&self, p: Priority) -> bool {
        match p {
            Priority::High => self.latch_high,
            Priority::Medium => self.latch_medium,
            Priority::Low => self.latch_low,
        }
    }
}
