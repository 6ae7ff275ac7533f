//! Plain data for Wardwatch: device and bed ids, IEEE 11073 codes, the topic contract, and the
//! payloads bedside monitors publish (vitals JSON, compact waveform packets, status, heartbeat,
//! device alarms).
//!
//! What it is not: no I/O, no clocks, no MQTT. Everything here parses bytes into typed values
//! ("parse, don't validate") and encodes them back, so the broker, the store, the simulator and
//! the tests share one definition of the wire contract (docs/topics.md).
//!
//! Layout: `ids` (newtypes), `codes` (11073 numbers), `topic` (topic grammar), `vitals`,
//! `wave` (binary waveform packet), `device` (status, heartbeat, device alarm), `users` (roles), `patient` (who is in a bed),
//! `errors` (the stable error codes every crate answers with).
#![forbid(unsafe_code)]

pub mod codes;
pub mod device;
pub mod errors;
pub mod ids;
pub mod patient;
pub mod topic;
pub mod users;
pub mod vitals;
pub mod wave;

pub use device::{DeviceAlarm, DeviceAlarmState, DeviceState, Heartbeat, Priority, Status};
pub use errors::{ErrorCode, ErrorKind};
pub use ids::{BedId, DeviceId, Username};
pub use patient::{Category, Patient, Sex};
pub use topic::{DeviceTopic, TopicKind};
pub use users::Role;
pub use vitals::{Observation, VitalsMessage};
pub use wave::WavePacket;

/// Everything that can be wrong with a message a device sent. Each variant names what was
/// wrong so the station can log it and count it by kind.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("invalid id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    #[error("topic {topic:?} is not in the contract: {reason}")]
    Topic { topic: String, reason: &'static str },
    #[error("payload is not valid JSON for {what}: {detail}")]
    Json { what: &'static str, detail: String },
    #[error("observation {index}: {reason}")]
    Observation { index: usize, reason: String },
    #[error("waveform packet: {0}")]
    Wave(String),
    #[error("{0:?} is not a role (viewer, nurse, charge_nurse, it_admin)")]
    Role(String),
    #[error("patient {field} {reason}")]
    Patient { field: &'static str, reason: String },
}

impl ModelError {
    /// A short stable name for counters and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            ModelError::InvalidId { .. } => "invalid_id",
            ModelError::Topic { .. } => "bad_topic",
            ModelError::Json { .. } => "bad_json",
            ModelError::Observation { .. } => "bad_observation",
            ModelError::Wave(_) => "bad_wave",
            ModelError::Role(_) => "bad_role",
            ModelError::Patient { .. } => "bad_patient",
        }
    }
}
