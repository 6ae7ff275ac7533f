//! Device status (retained; also the last will), heartbeat, and device-originated alarms.

use crate::ModelError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    Online,
    Offline,
}

/// `{"state":"online","model":"SimMon 1","ts":1763701200000}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub state: DeviceState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
}

/// `{"seq":42,"ts":1763701200000}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
}

/// Alarm priority (IEC 60601-1-8). Ordered: `Low < Medium < High`, so "the highest wins" is
/// `max()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Medium,
    High,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceAlarmState {
    Active,
    Ended,
}

/// An alarm the bedside monitor raised itself, mirrored at the station:
/// `{"id":"a-17","condition":"SpO2 low","priority":"high","state":"active","code":150456,"value":84}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceAlarm {
    pub id: String,
    pub condition: String,
    pub priority: Priority,
    pub state: DeviceAlarmState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
}

fn parse_json<T: for<'de> Deserialize<'de>>(what: &'static str, b: &[u8]) -> Result<T, ModelError> {
    serde_json::from_slice(b).map_err(|e| ModelError::Json {
        what,
        detail: e.to_string(),
    })
}

impl Status {
    pub fn parse(b: &[u8]) -> Result<Self, ModelError> {
        parse_json("status", b)
    }
}
impl Heartbeat {
    pub fn parse(b: &[u8]) -> Result<Self, ModelError> {
        parse_json("heartbeat", b)
    }
}
impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }

    /// The priority [`Self::as_str`] names (as the alarm log and the config write it).
    pub fn from_name(name: &str) -> Option<Priority> {
        [Priority::Low, Priority::Medium, Priority::High]
            .into_iter()
            .find(|p| p.as_str() == name)
    }
}

impl DeviceAlarm {
    pub fn parse(b: &[u8]) -> Result<Self, ModelError> {
        let a: DeviceAlarm = parse_json("alarm", b)?;
        if a.id.is_empty() || a.id.len() > 128 || a.condition.is_empty() || a.condition.len() > 256
        {
            return Err(ModelError::Json {
                what: "alarm",
                detail: "id must be 1-128 bytes and condition 1-256 bytes".into(),
            });
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_shapes() {
        let s = Status::parse(br#"{"state":"offline"}"#).unwrap();
        assert_eq!(s.state, DeviceState::Offline);
        let h = Heartbeat::parse(br#"{"seq":42,"ts":1}"#).unwrap();
        assert_eq!(h.seq, 42);
        let a = DeviceAlarm::parse(
            br#"{"id":"a-17","condition":"SpO2 low","priority":"high","state":"active","code":150456,"value":84}"#,
        )
        .unwrap();
        assert_eq!(a.priority, Priority::High);
        assert!(DeviceAlarm::parse(
            br#"{"id":"","condition":"x","priority":"high","state":"active"}"#
        )
        .is_err());
        assert!(Status::parse(br#"{"state":"sleepy"}"#).is_err());
    }
}
