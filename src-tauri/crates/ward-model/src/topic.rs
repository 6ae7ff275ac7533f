//! The topic grammar (docs/topics.md):
//!
//! ```text
//! ward/v1/dev/{device_id}/vitals     JSON numerics
//! ward/v1/dev/{device_id}/wave       compact binary waveform packet
//! ward/v1/dev/{device_id}/status     JSON, retained, also the device's last will
//! ward/v1/dev/{device_id}/hb         JSON heartbeat
//! ward/v1/dev/{device_id}/alarm      JSON device-originated alarm
//! ```
//!
//! The version is part of the topic so a later contract can run beside this one during a
//! migration of the ward's monitors.

use crate::{DeviceId, ModelError};

pub const PREFIX: &str = "ward/v1/dev";
/// The filter the station subscribes to in-process.
pub const DEVICE_FILTER: &str = "ward/v1/dev/+/+";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    Vitals,
    Wave,
    Status,
    Heartbeat,
    Alarm,
}

impl TopicKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TopicKind::Vitals => "vitals",
            TopicKind::Wave => "wave",
            TopicKind::Status => "status",
            TopicKind::Heartbeat => "hb",
            TopicKind::Alarm => "alarm",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTopic {
    pub device: DeviceId,
    pub kind: TopicKind,
}

impl DeviceTopic {
    pub fn new(device: DeviceId, kind: TopicKind) -> Self {
        Self { device, kind }
    }

    pub fn parse(topic: &str) -> Result<Self, ModelError> {
        let bad = |reason| ModelError::Topic {
            topic: topic.chars().take(120).collect(),
            reason,
        };
        let rest = topic
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| bad("must start with ward/v1/dev/"))?;
        let (device, kind) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected ward/v1/dev/{device}/{kind}"))?;
        let kind = match kind {
            "vitals" => TopicKind::Vitals,
            "wave" => TopicKind::Wave,
            "status" => TopicKind::Status,
            "hb" => TopicKind::Heartbeat,
            "alarm" => TopicKind::Alarm,
            _ => return Err(bad("unknown kind (vitals, wave, status, hb, alarm)")),
        };
        let device = DeviceId::new(device).map_err(|_| bad("device id is not a valid id"))?;
        Ok(Self { device, kind })
    }

    pub fn render(&self) -> String {
        format!("{PREFIX}/{}/{}", self.device, self.kind.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        for kind in [
            TopicKind::Vitals,
            TopicKind::Wave,
            TopicKind::Status,
            TopicKind::Heartbeat,
            TopicKind::Alarm,
        ] {
            let t = DeviceTopic::new(DeviceId::new("mon-7").unwrap(), kind);
            assert_eq!(DeviceTopic::parse(&t.render()).unwrap(), t);
        }
    }

    #[test]
    fn rejects_topics_outside_the_contract() {
        for bad in [
            "ward/v2/dev/a/vitals",
            "ward/v1/dev/a",
            "ward/v1/dev/a/b/vitals",
            "ward/v1/dev/a/pressure",
            "ward/v1/dev//vitals",
        ] {
            assert_eq!(
                DeviceTopic::parse(bad).unwrap_err().kind(),
                "bad_topic",
                "{bad}"
            );
        }
    }
}
