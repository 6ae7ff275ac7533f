//! Other beds' alarms (a care group): a station follows the alarms of other stations of the
//! unit through the hospital core. Each station publishes its current alarms
//! ([`SharedAlarms`]); a follower shows those of the priorities it follows in a bar of their
//! own and may acknowledge them (the acknowledgement travels the peer path to the station
//! that owns the alarm, which applies it).
//!
//! Followed alarms are never this station's alarms: they do not enter the [`crate::Engine`],
//! never take its sound, and a followed station's HIGH never sounds here louder than the
//! quietest signal: by policy a LOW "other bed" reminder burst, played only when nothing of
//! this station's own sounds, or silence. [`CareGroup`] decides, on time passed in.

use crate::{Ms, Priority};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One alarm as its station publishes it for followers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SharedAlarm {
    pub bed: String,
    pub bed_label: String,
    /// The condition key (`Condition::key`), what an acknowledgement names.
    pub key: String,
    pub label: String,
    pub priority: Priority,
    pub onset_ms: Ms,
    /// Silenced there in any way (acknowledged, paused, audio off).
    pub silenced: bool,
    pub acknowledged_by: Option<String>,
    /// Its cause has ended; it waits for an acknowledgement.
    pub latched: bool,
}

/// A station's current bed alarms, as it publishes them (retained) for its followers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedAlarms {
    pub station: String,
    pub name: String,
    pub t_ms: Ms,
    pub alarms: Vec<SharedAlarm>,
}

/// A followed alarm as this station shows it: the alarm and where it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct OtherAlarm {
    pub station: String,
    pub station_name: String,
    pub alarm: SharedAlarm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CareSound {
    /// One LOW burst when a followed alarm starts sounding there, and again every
    /// `reminder_every_ms` while one does (only when nothing of this station sounds).
    Reminder,
    Silent,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CarePolicy {
    /// The priorities shown (by default HIGH and MEDIUM).
    pub priorities: Vec<Priority>,
    pub sound: CareSound,
    pub reminder_every_ms: Ms,
}

impl Default for CarePolicy {
    fn default() -> Self {
        Self {
            priorities: vec![Priority::High, Priority::Medium],
            sound: CareSound::Reminder,
            reminder_every_ms: 30_000,
        }
    }
}

pub struct CareGroup {
    policy: CarePolicy,
    lists: BTreeMap<String, SharedAlarms>,
    /// When the next reminder is due, while a shown alarm sounds there.
    next_reminder: Option<Ms>,
}

impl CareGroup {
    pub fn new(policy: CarePolicy) -> Self {
        Self {
            policy,
            lists: BTreeMap::new(),
            next_reminder: None,
        }
    }

    /// A followed station's newest list replaces its previous one.
    pub fn update(&mut self, list: SharedAlarms) {
        self.lists.insert(list.station.clone(), list);
    }

    /// What the "other beds" bar shows: the followed priorities, highest first, then oldest.
    pub fn shown(&self) -> Vec<OtherAlarm> {
        let mut v: Vec<OtherAlarm> = self
            .lists
            .values()
            .flat_map(|l| {
                l.alarms
                    .iter()
                    .filter(|a| self.policy.priorities.contains(&a.priority))
                    .map(|a| OtherAlarm {
                        station: l.station.clone(),
                        station_name: l.name.clone(),
                        alarm: a.clone(),
                    })
            })
            .collect();
        v.sort_by(|a, b| {
            b.alarm
                .priority
                .cmp(&a.alarm.priority)
                .then(a.alarm.onset_ms.cmp(&b.alarm.onset_ms))
        });
        v
    }

    /// The reminder to play now, if one is due: LOW at most, never more.
    pub fn poll(&mut self, now: Ms) -> Option<Priority> {
        let sounding = self.shown().iter().any(|o| !o.alarm.silenced);
        if !sounding || self.policy.sound == CareSound::Silent {
            self.next_reminder = None;
            return None;
        }
        match self.next_reminder {
            Some(t) if now < t => None,
            _ => {
                self.next_reminder = Some(now + self.policy.reminder_every_ms);
                Some(Priority::Low)
            }
        }
    }

    /// Whether `station` has a shown alarm at `bed` with condition `key` (what a person may
    /// acknowledge from here).
    pub fn has(&self, station: &str, bed: &str, key: &str) -> bool {
        self.shown()
            .iter()
            .any(|o| o.station == station && o.alarm.bed == bed && o.alarm.key == key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(bed: &str, priority: Priority, silenced: bool) -> SharedAlarm {
        SharedAlarm {
            bed: bed.into(),
            bed_label: format!("Bed {bed}"),
            key: "limit:spo2_desat".into(),
            label: "Desaturation".into(),
            priority,
            onset_ms: 1_000,
            silenced,
            acknowledged_by: None,
            latched: false,
        }
    }

    fn list(alarms: Vec<SharedAlarm>) -> SharedAlarms {
        SharedAlarms {
            station: "st-4w".into(),
            name: "4 West".into(),
            t_ms: 0,
            alarms,
        }
    }

    #[test]
    fn shows_followed_priorities_and_reminds_at_low_while_one_sounds_there() {
        let mut c = CareGroup::new(CarePolicy::default());
        assert_eq!(c.poll(0), None);
        c.update(list(vec![
            alarm("bed-01", Priority::Low, false),
            alarm("bed-02", Priority::High, false),
        ]));
        let shown = c.shown();
        assert_eq!(shown.len(), 1, "LOW is not followed by default");
        assert_eq!(shown[0].station_name, "4 West");
        assert!(c.has("st-4w", "bed-02", "limit:spo2_desat"));
        assert!(!c.has("st-4w", "bed-01", "limit:spo2_desat"));
        // A HIGH there is a LOW reminder here, at once and every 30 s, never louder.
        assert_eq!(c.poll(1_000), Some(Priority::Low));
        assert_eq!(c.poll(30_999), None);
        assert_eq!(c.poll(31_000), Some(Priority::Low));
        // Acknowledged there: silence here.
        c.update(list(vec![alarm("bed-02", Priority::High, true)]));
        assert_eq!(c.poll(61_000), None);
        assert_eq!(c.shown().len(), 1, "still shown, silenced");
        // A new one sounding there: reminded at once.
        c.update(list(vec![alarm("bed-03", Priority::Medium, false)]));
        assert_eq!(c.poll(62_000), Some(Priority::Low));
        c.update(list(vec![]));
        assert!(c.shown().is_empty());
        assert_eq!(c.poll(63_000), None);
    }

    #[test]
    fn silent_policy_never_sounds() {
        let mut c = CareGroup::new(CarePolicy {
            sound: CareSound::Silent,
            ..CarePolicy::default()
        });
        c.update(list(vec![alarm("bed-02", Priority::High, false)]));
        assert_eq!(c.poll(0), None);
        assert_eq!(c.shown().len(), 1);
    }
}
