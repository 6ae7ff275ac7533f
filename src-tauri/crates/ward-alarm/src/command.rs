//! The one type for an action on the alarm system, whoever asks: the window, the console,
//! or another station of the unit through the hospital core. The permission check
//! (`ward_access`) reads it, the alarm driver hands it to [`crate::Engine::command`] with the
//! name of the person, and nothing translates it in between.

use crate::LimitRule;
use serde::{Deserialize, Serialize};

/// How far another station's clock may be ahead of ours when its acknowledgement is matched
/// to an alarm here (stations of a unit share NTP; seconds of difference are normal).
pub const PEER_ACK_SKEW_MS: i64 = 5_000;

/// An action on alarms. Bed scopes: `None` is the whole unit (pauses, audio off) or, for an
/// acknowledgement, a station-level technical alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AlarmCommand {
    Acknowledge {
        id: u64,
    },
    AudioPause {
        bed: Option<String>,
    },
    AlarmPause {
        bed: String,
    },
    AudioOff {
        bed: Option<String>,
    },
    SetRules {
        bed: String,
        rules: Vec<LimitRule>,
    },
    /// A device admitted to the bed (`monitored`), or discharged; `device` names it in the
    /// log.
    Monitor {
        bed: String,
        monitored: bool,
        device: Option<String>,
    },
    /// An acknowledgement made at another station of the unit: it applies to this station's
    /// alarm of the same bed and condition `key` that began by `acked_at_ms` (plus
    /// [`PEER_ACK_SKEW_MS`]).
    PeerAcknowledge {
        bed: String,
        key: String,
        acked_at_ms: i64,
    },
}

impl AlarmCommand {
    /// Stable name for the audit trail and denial messages.
    pub fn name(&self) -> &'static str {
        match self {
            AlarmCommand::Acknowledge { .. } => "acknowledge",
            AlarmCommand::AudioPause { .. } => "audio_pause",
            AlarmCommand::AlarmPause { .. } => "alarm_pause",
            AlarmCommand::AudioOff { .. } => "audio_off",
            AlarmCommand::SetRules { .. } => "change_limits",
            AlarmCommand::Monitor { .. } => "admit_discharge",
            AlarmCommand::PeerAcknowledge { .. } => "peer_acknowledge",
        }
    }

    /// The bed the command names itself (an acknowledgement names an alarm, whose bed the
    /// caller looks up).
    pub fn bed(&self) -> Option<&str> {
        match self {
            AlarmCommand::Acknowledge { .. } => None,
            AlarmCommand::AudioPause { bed } | AlarmCommand::AudioOff { bed } => bed.as_deref(),
            AlarmCommand::AlarmPause { bed }
            | AlarmCommand::SetRules { bed, .. }
            | AlarmCommand::Monitor { bed, .. }
            | AlarmCommand::PeerAcknowledge { bed, .. } => Some(bed),
        }
    }
}
