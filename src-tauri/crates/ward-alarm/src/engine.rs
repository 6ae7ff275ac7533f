//! The alarm engine: inputs in (`handle_*`, commands), time passed in as milliseconds, state
//! and log out (`poll`, `alarms`, `annunciation`, `drain_log`). No clock, no I/O, no threads,
//! so every transition can be tested on explicit time.
//!
//! Two clocks, both passed in. Every `now` is monotonic (it never jumps): condition delays,
//! liveness budgets, pauses, reminders and escalation count on it, so an NTP step or a person
//! setting the time moves none of them. The wall clock, given by [`Engine::set_clock`], only
//! stamps what leaves the engine (log rows, onset, the pause ends shown in `alarms()`); its
//! steps are logged.
//!
//! One alarm exists per (bed, condition) at a time. Its life:
//!
//! ```text
//!  condition seen --(delay)--> RAISED --cause ends--> ENDED            (not latching)
//!                                |     --cause ends--> LATCHED --ack--> RESET (latching)
//!                                |--ack--> ACKNOWLEDGED --cause ends--> ENDED
//!                                |--unanswered for escalate_after--> ESCALATED (sounds again)
//! ```
//!
//! Inactivation (who silenced what, and until when) is per alarm, so a new condition arising
//! during an audio pause still sounds: pausing what you have seen never mutes what you have not.

use crate::rules::{Direction, LimitRule};
use crate::{AlarmError, Ms, Policy};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use ward_model::Priority;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Technical {
    /// No message, heartbeat or will from the bed's device within its liveness budget, or
    /// the device said it is offline.
    DeviceSilent,
    /// The device sends "value not available" for a measure (sensor off, probe off).
    NoValue(u32),
    StorageFailing,
    /// A database was found damaged at start-up, moved aside and replaced by a new one
    /// (the log's detail names the file kept). Active for the whole run: the history before
    /// it is only in the old file until `wardwatch store salvage` copies it back.
    DatabaseReplaced,
    /// The full check run in the background after start-up found a database damaged. The
    /// station keeps monitoring on it (stopping would be worse); the next start moves it
    /// aside. Active for the rest of the run.
    DatabaseDamaged,
    AudioUnavailable,
    UiHeartbeatMissing,
    SelfCheckFailed,
    /// The sentinel process that would sound if this station died is not running (the
    /// station restarts it). LOW: the station itself still alarms; its safety net is gone.
    SentinelDown,
}

impl Technical {
    pub fn label(self) -> String {
        match self {
            Technical::DeviceSilent => "No data from monitor".into(),
            Technical::NoValue(code) => match ward_model::codes::known_vital(code) {
                Some(k) => format!("{} sensor off / no value", k.label),
                None => format!("Code {code}: no value"),
            },
            Technical::StorageFailing => "Station storage failing".into(),
            Technical::DatabaseReplaced => "Station database damaged: a new one was started".into(),
            Technical::DatabaseDamaged => {
                "Station database damaged: restart the station to replace it".into()
            }
            Technical::AudioUnavailable => "Alarm audio unavailable".into(),
            Technical::UiHeartbeatMissing => "Display not responding".into(),
            Technical::SelfCheckFailed => "Alarm system self-check failed".into(),
            Technical::SentinelDown => "Alarm sentinel not running".into(),
        }
    }
}

/// What an alarm is about, within its bed (or the station when `bed` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Condition {
    /// A limit rule, by its id.
    Limit(String),
    /// An alarm the bedside device raised itself, by the device's alarm id.
    Device(String),
    Technical(Technical),
    /// A peer station of the unit, by its station id, is not monitoring (a technical
    /// alarm of this station: that station's beds are unwatched).
    Peer(String),
}

impl Condition {
    /// Stable text key for the log and the UI.
    pub fn key(&self) -> String {
        match self {
            Condition::Limit(id) => format!("limit:{id}"),
            Condition::Device(id) => format!("device:{id}"),
            Condition::Peer(id) => format!("peer:{id}"),
            Condition::Technical(Technical::NoValue(code)) => format!("tech:no_value:{code}"),
            Condition::Technical(t) => format!(
                "tech:{}",
                serde_json::to_value(t)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            ),
        }
    }
    pub fn is_technical(&self) -> bool {
        matches!(self, Condition::Technical(_) | Condition::Peer(_))
    }

    /// The condition a [`Condition::key`] names (the alarm log's `condition` column).
    pub fn from_key(key: &str) -> Option<Condition> {
        let (kind, rest) = key.split_once(':')?;
        match kind {
            "limit" if !rest.is_empty() => Some(Condition::Limit(rest.to_string())),
            "device" if !rest.is_empty() => Some(Condition::Device(rest.to_string())),
            "peer" if !rest.is_empty() => Some(Condition::Peer(rest.to_string())),
            "tech" => {
                let t = match rest.split_once(':') {
                    Some(("no_value", code)) => Technical::NoValue(code.parse().ok()?),
                    Some(_) => return None,
                    None => serde_json::from_value(serde_json::Value::String(rest.into())).ok()?,
                };
                Some(Condition::Technical(t))
            }
            _ => None,
        }
    }
}

/// An alarm that had not ended when the station last stopped, as its log tells it: what
/// [`Engine::restore`] brings back after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Restore {
    pub bed: String,
    pub condition: Condition,
    pub label: String,
    /// Its priority when the log stopped (after any escalation).
    pub priority: Priority,
    pub escalated: bool,
    pub onset_wall_ms: Ms,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    /// False for a latched alarm whose cause had ended.
    pub cause_active: bool,
    /// Who acknowledged it, and when (wall clock).
    pub acknowledged: Option<(String, Ms)>,
    /// Its id in the log before the restart.
    pub previous_id: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "state", rename_all = "snake_case")]
/// Inside the engine `until_ms` and `next_reminder_ms` are monotonic; [`Engine::alarms`] hands
/// them out as wall-clock times. `at_ms` is a wall-clock stamp.
pub enum Inactivation {
    None,
    /// Sound off for this condition only, until it ends (IEC 60601-1-8 AMD2 ACKNOWLEDGED).
    Acknowledged {
        by: String,
        at_ms: Ms,
    },
    AudioPaused {
        by: String,
        until_ms: Ms,
    },
    /// Sound and visual off for a limited time (physiological alarms of one bed).
    AlarmPaused {
        by: String,
        until_ms: Ms,
    },
    /// Sound off indefinitely, only where policy allows; a reminder sounds periodically.
    AudioOff {
        by: String,
        next_reminder_ms: Ms,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Alarm {
    pub id: u64,
    pub bed: Option<String>,
    pub condition: Condition,
    pub key: String,
    pub label: String,
    pub technical: bool,
    /// Current priority (after escalation).
    pub priority: Priority,
    /// When it began, on the wall clock (what people and other stations read).
    pub onset_ms: Ms,
    /// When it began, on the engine's monotonic clock (what escalation counts from).
    #[serde(skip)]
    #[cfg_attr(feature = "ts", ts(skip))]
    pub onset_mono_ms: Ms,
    /// False once the cause has ended but the alarm is latched.
    pub cause_active: bool,
    pub escalated: bool,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    pub inactivation: Inactivation,
}

impl Alarm {
    /// Sounding now: not silenced in any way.
    pub fn audible(&self) -> bool {
        matches!(self.inactivation, Inactivation::None)
    }
    /// Shown now (ALARM PAUSED hides the visual signal too).
    pub fn visible(&self) -> bool {
        !matches!(self.inactivation, Inactivation::AlarmPaused { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    Raised,
    Escalated,
    /// Cause gone, alarm kept because its priority latches.
    Latched,
    Ended,
    Acknowledged,
    /// A latched alarm acknowledged after its cause ended: gone.
    Reset,
    AudioPaused,
    AudioPauseEnded,
    AlarmPaused,
    AlarmPauseEnded,
    AudioOff,
    Reminder,
    LimitsChanged,
    /// A device was admitted to the bed: its liveness budget starts.
    Admitted,
    /// The bed's device was discharged: the bed's alarms end with it.
    Discharged,
    /// The wall clock moved against the monotonic clock by more than
    /// [`CLOCK_STEP_TOLERANCE_MS`] (an NTP step, a person setting the time). A technical
    /// event for the log: no timer moves with it.
    ClockStepped,
    /// An alarm active when the station last stopped, brought back from the log.
    Restored,
    /// The station started again over an earlier run's log.
    Restarted,
}

/// A wall clock that drifts against the monotonic one by less than this between two
/// readings is slewing (NTP's normal correction), not stepping: it is followed silently.
pub const CLOCK_STEP_TOLERANCE_MS: Ms = 1_000;

/// One line of the alarm log (IEC 60601-1-8 6.12): every state change with time, bed,
/// condition, value, limit and who acted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEntry {
    pub t_ms: Ms,
    pub kind: LogKind,
    pub alarm_id: Option<u64>,
    pub bed: Option<String>,
    pub condition: String,
    pub label: String,
    pub priority: Option<Priority>,
    pub value: Option<f64>,
    pub limit: Option<f64>,
    pub user: Option<String>,
    pub detail: Option<String>,
}

/// What the annunciator should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Annunciation {
    /// The highest priority among sounding alarms; `None` is silence.
    pub sound: Option<Priority>,
    /// Play one reminder burst of this priority (AUDIO OFF reminder), once.
    pub reminder: Option<Priority>,
}

/// Which alarms an audio pause or audio off applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Bed(String),
}

impl Scope {
    fn covers(&self, bed: &Option<String>) -> bool {
        match self {
            Scope::All => true,
            Scope::Bed(b) => bed.as_deref() == Some(b.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
struct BedState {
    rules: Vec<LimitRule>,
    /// Monitored beds have a device and a liveness budget.
    monitored: bool,
    last_seen: Ms,
    /// Rule id → when the condition was first seen and the last value seen, while waiting
    /// out its delay (the last value is the alarm's value when it starts).
    pending: HashMap<String, (Ms, f64)>,
    no_value_since: HashMap<u32, Ms>,
    alarm_paused: Option<(String, Ms)>,
}

pub struct Engine {
    policy: Policy,
    beds: BTreeMap<String, BedState>,
    alarms: BTreeMap<u64, Alarm>,
    index: HashMap<(Option<String>, Condition), u64>,
    next_id: u64,
    log: Vec<LogEntry>,
    ui_last: Option<Ms>,
    reminder: Option<Priority>,
    /// Wall-clock minus monotonic milliseconds, as of the last [`Engine::set_clock`]. Every
    /// timer runs on the monotonic `now` the caller passes; only stamps (log rows, onset,
    /// the times shown in `alarms()`) add this.
    wall_offset: Ms,
    clock_set: bool,
}

/// A log line about a bed rather than one alarm (pauses, limit changes).
fn bed_entry(
    t_ms: Ms,
    kind: LogKind,
    bed: &str,
    label: &str,
    user: Option<&str>,
    detail: Option<String>,
) -> LogEntry {
    LogEntry {
        t_ms,
        kind,
        alarm_id: None,
        bed: Some(bed.to_string()),
        condition: String::new(),
        label: label.to_string(),
        priority: None,
        value: None,
        limit: None,
        user: user.map(String::from),
        detail,
    }
}

/// A log line about the station itself rather than one alarm (a clock step, a restart).
fn station_entry(
    t_ms: Ms,
    kind: LogKind,
    condition: &str,
    label: &str,
    detail: Option<String>,
) -> LogEntry {
    LogEntry {
        bed: None,
        condition: condition.to_string(),
        ..bed_entry(t_ms, kind, "", label, None, detail)
    }
}

fn entry(t_ms: Ms, kind: LogKind, a: &Alarm, user: Option<&str>) -> LogEntry {
    LogEntry {
        t_ms,
        kind,
        alarm_id: Some(a.id),
        bed: a.bed.clone(),
        condition: a.key.clone(),
        label: a.label.clone(),
        priority: Some(a.priority),
        value: a.value,
        limit: a.limit,
        user: user.map(String::from),
        detail: None,
    }
}

impl Engine {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            beds: BTreeMap::new(),
            alarms: BTreeMap::new(),
            index: HashMap::new(),
            next_id: 1,
            log: Vec::new(),
            ui_last: None,
            reminder: None,
            wall_offset: 0,
            clock_set: false,
        }
    }

    /// Tells the engine both clocks as read now: `mono` is the clock every other method's
    /// `now` comes from (it never jumps), `wall` is the time of day. Timers keep running on
    /// `mono` whatever `wall` does; a jump of `wall` against `mono` of more than
    /// [`CLOCK_STEP_TOLERANCE_MS`] is logged as [`LogKind::ClockStepped`] with its size.
    /// Without a call, wall time equals `mono` (the tests' explicit time).
    pub fn set_clock(&mut self, mono: Ms, wall: Ms) {
        let offset = wall - mono;
        let step = offset - self.wall_offset;
        if self.clock_set && step.abs() > CLOCK_STEP_TOLERANCE_MS {
            let detail = format!(
                "wall clock stepped by {:+.3} s; alarm delays, pauses and escalation run on the monotonic clock and did not move",
                step as f64 / 1000.0
            );
            self.log.push(station_entry(
                wall,
                LogKind::ClockStepped,
                "tech:clock_step",
                "Wall clock changed",
                Some(detail),
            ));
        }
        self.wall_offset = offset;
        self.clock_set = true;
    }

    /// Brings back an alarm that was active when the station last stopped: latched and
    /// acknowledged states are kept, escalation counts from its first onset, and it sounds
    /// unless it was acknowledged (a pause does not survive a restart: silence must be
    /// chosen again). Logged as [`LogKind::Restored`] under its new id. A bed that no longer
    /// exists, or a condition already alarming, is skipped (`None`).
    pub fn restore(&mut self, now: Ms, r: Restore) -> Option<u64> {
        if !self.beds.contains_key(&r.bed) {
            return None;
        }
        let key = (Some(r.bed.clone()), r.condition.clone());
        if self.index.contains_key(&key) {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        let ago = (self.wall_of(now) - r.onset_wall_ms).max(0);
        let a = Alarm {
            id,
            bed: Some(r.bed),
            key: r.condition.key(),
            technical: r.condition.is_technical(),
            condition: r.condition,
            label: r.label,
            priority: r.priority,
            onset_ms: r.onset_wall_ms,
            onset_mono_ms: now - ago,
            cause_active: r.cause_active,
            escalated: r.escalated,
            value: r.value,
            limit: r.limit,
            inactivation: match r.acknowledged {
                Some((by, at_ms)) => Inactivation::Acknowledged { by, at_ms },
                None => Inactivation::None,
            },
        };
        let mut e = entry(now + self.wall_offset, LogKind::Restored, &a, None);
        e.detail = Some(format!(
            "alarm {} before the restart, raised at {}{}",
            r.previous_id,
            r.onset_wall_ms,
            if a.cause_active { "" } else { ", latched" }
        ));
        self.log.push(e);
        self.alarms.insert(id, a);
        self.index.insert(key, id);
        Some(id)
    }

    /// New alarms are numbered from `next` on (after the last id in the log), so ids stay
    /// unique across restarts.
    pub fn number_from(&mut self, next: u64) {
        self.next_id = self.next_id.max(next);
    }

    /// The station-wide log line of a restart ("Station restarted at …; N alarms restored").
    pub fn log_restart(&mut self, now: Ms, label: String) {
        let e = station_entry(now + self.wall_offset, LogKind::Restarted, "", &label, None);
        self.log.push(e);
    }

    /// The wall-clock time of a monotonic instant, by the last clock reading.
    pub fn wall_of(&self, mono: Ms) -> Ms {
        mono + self.wall_offset
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Adds or replaces a bed. `monitored` beds have a device and a liveness budget, which
    /// starts at `now`: a device that never speaks raises "no data" once it has passed.
    pub fn add_bed(
        &mut self,
        now: Ms,
        bed: &str,
        rules: Vec<LimitRule>,
        monitored: bool,
    ) -> Result<(), AlarmError> {
        crate::rules::validate(&rules)?;
        self.beds.insert(
            bed.to_string(),
            BedState {
                rules,
                monitored,
                last_seen: now,
                pending: HashMap::new(),
                no_value_since: HashMap::new(),
                alarm_paused: None,
            },
        );
        Ok(())
    }

    pub fn rules(&self, bed: &str) -> Option<&[LimitRule]> {
        self.beds.get(bed).map(|b| b.rules.as_slice())
    }

    fn bed_mut(&mut self, bed: &str) -> Result<&mut BedState, AlarmError> {
        self.beds
            .get_mut(bed)
            .ok_or_else(|| AlarmError::UnknownBed(bed.to_string()))
    }

    // ---- inputs from devices ----

    /// Any sign of life from the bed's device (message, heartbeat, online status).
    pub fn handle_seen(&mut self, now: Ms, bed: &str) {
        if let Some(b) = self.beds.get_mut(bed) {
            b.last_seen = b.last_seen.max(now);
            self.cause_ended(
                now,
                Some(bed),
                &Condition::Technical(Technical::DeviceSilent),
            );
        }
    }

    /// The device said it is offline (its status or its last will): no need to wait out the
    /// liveness budget.
    pub fn handle_offline(&mut self, now: Ms, bed: &str) {
        if self.beds.get(bed).is_some_and(|b| b.monitored) {
            self.raise_silent(now, bed);
        }
    }

    fn raise_silent(&mut self, now: Ms, bed: &str) {
        let p = self.policy.device_silent_priority;
        self.raise_technical(now, Some(bed), Technical::DeviceSilent, p);
    }

    fn raise_technical(
        &mut self,
        now: Ms,
        bed: Option<&str>,
        t: Technical,
        p: Priority,
    ) -> Option<u64> {
        self.raise(now, bed, Condition::Technical(t), t.label(), p, None, None)
    }

    /// One vitals message: `(code, value)` pairs, `None` for "value not available".
    pub fn handle_vitals(&mut self, now: Ms, bed: &str, obs: &[(u32, Option<f64>)]) {
        if !self.beds.contains_key(bed) {
            return;
        }
        self.handle_seen(now, bed);
        for &(code, value) in obs {
            match value {
                Some(v) => {
                    self.cause_ended(
                        now,
                        Some(bed),
                        &Condition::Technical(Technical::NoValue(code)),
                    );
                    if let Some(b) = self.beds.get_mut(bed) {
                        b.no_value_since.remove(&code);
                    }
                    self.evaluate(now, bed, code, v);
                }
                None => {
                    if let Some(b) = self.beds.get_mut(bed) {
                        b.no_value_since.entry(code).or_insert(now);
                    }
                }
            }
        }
        self.check_pending(now, bed);
    }

    fn evaluate(&mut self, now: Ms, bed: &str, code: u32, v: f64) {
        let Some(b) = self.beds.get(bed) else { return };
        let rules: Vec<LimitRule> = b.rules.iter().filter(|r| r.code == code).cloned().collect();
        for r in rules {
            let cond = Condition::Limit(r.id.clone());
            let existing = self
                .index
                .get(&(Some(bed.to_string()), cond.clone()))
                .copied();
            match existing {
                Some(id) => {
                    let cause_active = self.alarms.get(&id).is_some_and(|a| a.cause_active);
                    if cause_active {
                        if r.cleared(v) {
                            if let Some(a) = self.alarms.get_mut(&id) {
                                a.value = Some(v);
                            }
                            self.cause_ended(now, Some(bed), &cond);
                        } else if let Some(a) = self.alarms.get_mut(&id) {
                            // Keep the worst value of the episode for the log and the tile.
                            let worse = match r.direction {
                                Direction::Low => a.value.is_none_or(|w| v < w),
                                Direction::High => a.value.is_none_or(|w| v > w),
                            };
                            if worse {
                                a.value = Some(v);
                            }
                        }
                    } else if r.violated(v) {
                        // Latched and the cause is back: it is the same alarm, active again.
                        if let Some(a) = self.alarms.get_mut(&id) {
                            a.cause_active = true;
                            a.value = Some(v);
                        }
                    }
                }
                None => {
                    let Some(b) = self.beds.get_mut(bed) else {
                        return;
                    };
                    if r.violated(v) {
                        b.pending
                            .entry(r.id.clone())
                            .and_modify(|p| p.1 = v)
                            .or_insert((now, v));
                    } else {
                        b.pending.remove(&r.id);
                    }
                }
            }
        }
    }

    /// An alarm the device raised or ended itself; mirrored with its priority, no delay
    /// (the device already applied its own). The arguments are the device alarm's fields.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_device_alarm(
        &mut self,
        now: Ms,
        bed: &str,
        id: &str,
        label: &str,
        priority: Priority,
        active: bool,
        value: Option<f64>,
    ) {
        if !self.beds.contains_key(bed) {
            return;
        }
        self.handle_seen(now, bed);
        let cond = Condition::Device(id.to_string());
        if active {
            let label = format!("{label} (monitor)");
            let aid = self.raise(now, Some(bed), cond, label, priority, value, None);
            // A device may raise the priority of an alarm it already reported.
            if let Some(a) = aid.and_then(|i| self.alarms.get_mut(&i)) {
                if priority > a.priority {
                    a.priority = priority;
                    a.escalated = true;
                    let e = entry(now + self.wall_offset, LogKind::Escalated, a, None);
                    if !matches!(a.inactivation, Inactivation::AlarmPaused { .. }) {
                        a.inactivation = Inactivation::None;
                    }
                    self.log.push(e);
                }
            }
        } else {
            self.cause_ended(now, Some(bed), &cond);
        }
    }

    /// A station-level technical condition (storage, audio, self-check) starts or ends.
    pub fn handle_station(&mut self, now: Ms, t: Technical, active: bool, detail: &str) {
        if active {
            let p = match t {
                Technical::SentinelDown => Priority::Low,
                _ => self.policy.station_technical_priority,
            };
            let id = self.raise_technical(now, None, t, p);
            self.detail_on_raise(id, detail);
        } else {
            self.cause_ended(now, None, &Condition::Technical(t));
        }
    }

    /// A peer station of the unit stopped monitoring (`down`), or is back. While down, a
    /// station-wide technical alarm at the station technical priority (HIGH by default):
    /// `label` says which station, `detail` why (its will, silence, an orderly stop). It ends
    /// when the peer is back, latching or not: the peer then watches its beds again (and
    /// restores their alarms itself); nothing is left here to answer.
    pub fn handle_peer(&mut self, now: Ms, peer: &str, down: bool, label: &str, detail: &str) {
        let cond = Condition::Peer(peer.to_string());
        if down {
            let p = self.policy.station_technical_priority;
            let id = self.raise(now, None, cond, label.to_string(), p, None, None);
            self.detail_on_raise(id, detail);
        } else if let Some(&id) = self.index.get(&(None, cond)) {
            self.remove(now, id, LogKind::Ended, None);
        }
    }

    /// Puts `detail` (why) on the log line of a station alarm just raised as `id`; an alarm
    /// that was already active keeps its first reason.
    fn detail_on_raise(&mut self, id: Option<u64>, detail: &str) {
        if let (Some(id), Some(e)) = (id, self.log.last_mut()) {
            if e.alarm_id == Some(id) && e.detail.is_none() && !detail.is_empty() {
                e.detail = Some(detail.to_string());
            }
        }
    }

    /// The window's heartbeat. Only once a window has sent one is its absence an alarm, so a
    /// headless station does not alarm about a display it never had.
    pub fn handle_ui_heartbeat(&mut self, now: Ms) {
        self.ui_last = Some(now);
        self.cause_ended(
            now,
            None,
            &Condition::Technical(Technical::UiHeartbeatMissing),
        );
    }

    // ---- commands from people ----

    fn check_user(user: &str) -> Result<(), AlarmError> {
        if user.trim().is_empty() {
            return Err(AlarmError::NoUser);
        }
        Ok(())
    }

    /// ACKNOWLEDGED: the sound of this condition stops until the condition ends; a latched
    /// alarm whose cause has ended is reset.
    pub fn acknowledge(&mut self, now: Ms, alarm_id: u64, user: &str) -> Result<(), AlarmError> {
        Self::check_user(user)?;
        let a = self
            .alarms
            .get_mut(&alarm_id)
            .ok_or(AlarmError::UnknownAlarm(alarm_id))?;
        if matches!(a.inactivation, Inactivation::Acknowledged { .. }) {
            return Err(AlarmError::AlreadyAcknowledged(alarm_id));
        }
        a.inactivation = Inactivation::Acknowledged {
            by: user.to_string(),
            at_ms: now + self.wall_offset,
        };
        let e = entry(now + self.wall_offset, LogKind::Acknowledged, a, Some(user));
        let reset = !a.cause_active;
        self.log.push(e);
        if reset {
            self.remove(now, alarm_id, LogKind::Reset, Some(user));
        }
        Ok(())
    }

    /// An acknowledgement made at another station of the unit (it arrived through the
    /// hospital core). It applies to this station's alarm of the same bed and condition if
    /// that alarm began no later than `acked_at_ms` plus `skew_ms` (stations' clocks differ a
    /// little); an episode that began after it is a new alarm and keeps sounding. Returns the
    /// alarm acknowledged, if any; one already acknowledged here is left as it is.
    pub fn acknowledge_remote(
        &mut self,
        now: Ms,
        bed: &str,
        key: &str,
        acked_at_ms: Ms,
        skew_ms: Ms,
        user: &str,
    ) -> Result<Option<u64>, AlarmError> {
        Self::check_user(user)?;
        let id = self
            .alarms
            .values()
            .find(|a| {
                a.bed.as_deref() == Some(bed)
                    && a.key == key
                    && a.onset_ms <= acked_at_ms.saturating_add(skew_ms)
                    && !matches!(a.inactivation, Inactivation::Acknowledged { .. })
            })
            .map(|a| a.id);
        match id {
            Some(id) => self.acknowledge(now, id, user).map(|_| Some(id)),
            None => Ok(None),
        }
    }

    /// Applies an [`AlarmCommand`] by `user` (for a peer acknowledgement, "who at which
    /// station"). Returns how many alarms (or beds, for rules) it applied to.
    pub fn command(
        &mut self,
        now: Ms,
        command: crate::AlarmCommand,
        user: &str,
    ) -> Result<usize, AlarmError> {
        use crate::AlarmCommand as C;
        let scope = |bed: Option<String>| bed.map(Scope::Bed).unwrap_or(Scope::All);
        match command {
            C::Acknowledge { id } => self.acknowledge(now, id, user).map(|_| 1),
            C::AudioPause { bed } => self.audio_pause(now, &scope(bed), user),
            C::AlarmPause { bed } => self.alarm_pause(now, &bed, user).map(|_| 1),
            C::AudioOff { bed } => self.audio_off(now, &scope(bed), user),
            C::SetRules { bed, rules } => self.set_rules(now, &bed, rules, user).map(|_| 1),
            C::Monitor {
                bed,
                monitored,
                device,
            } => self.set_monitored(now, &bed, monitored, user, device),
            C::PeerAcknowledge {
                bed,
                key,
                acked_at_ms,
            } => self
                .acknowledge_remote(now, &bed, &key, acked_at_ms, crate::PEER_ACK_SKEW_MS, user)
                .map(|id| usize::from(id.is_some())),
        }
    }

    /// A device admitted to the bed (`monitored`), or the bed's device discharged. Discharge
    /// ends every alarm of the bed, logged with the user (the patient and their conditions
    /// have left; a latched alarm too) and forgets conditions waiting out their delay;
    /// admission starts the liveness budget at `now`. `detail` names the device for the log.
    /// Returns how many alarms ended.
    pub fn set_monitored(
        &mut self,
        now: Ms,
        bed: &str,
        monitored: bool,
        user: &str,
        detail: Option<String>,
    ) -> Result<usize, AlarmError> {
        Self::check_user(user)?;
        let b = self.bed_mut(bed)?;
        b.monitored = monitored;
        b.last_seen = now;
        b.pending.clear();
        b.no_value_since.clear();
        let mut ended = 0;
        if !monitored {
            let ids: Vec<u64> = self
                .alarms
                .values()
                .filter(|a| a.bed.as_deref() == Some(bed))
                .map(|a| a.id)
                .collect();
            for id in ids {
                self.remove(now, id, LogKind::Ended, Some(user));
                ended += 1;
            }
        }
        let (kind, label) = if monitored {
            (LogKind::Admitted, "Device admitted")
        } else {
            (LogKind::Discharged, "Device discharged")
        };
        self.log.push(bed_entry(
            now + self.wall_offset,
            kind,
            bed,
            label,
            Some(user),
            detail,
        ));
        Ok(ended)
    }

    /// AUDIO PAUSED for the policy's time, for the alarms in scope that exist now.
    pub fn audio_pause(&mut self, now: Ms, scope: &Scope, user: &str) -> Result<usize, AlarmError> {
        Self::check_user(user)?;
        let until = now + self.policy.audio_pause_ms;
        let mut n = 0;
        for a in self.alarms.values_mut() {
            if scope.covers(&a.bed) && matches!(a.inactivation, Inactivation::None) {
                a.inactivation = Inactivation::AudioPaused {
                    by: user.to_string(),
                    until_ms: until,
                };
                let mut e = entry(now + self.wall_offset, LogKind::AudioPaused, a, Some(user));
                e.detail = Some(format!("until {}", until + self.wall_offset));
                self.log.push(e);
                n += 1;
            }
        }
        Ok(n)
    }

    /// ALARM PAUSED for one bed: its physiological alarms neither sound nor show, and new ones
    /// are raised paused, until the pause ends (e.g. while the patient is repositioned).
    /// Technical alarms stay: a lost monitor matters even then.
    pub fn alarm_pause(&mut self, now: Ms, bed: &str, user: &str) -> Result<(), AlarmError> {
        Self::check_user(user)?;
        let until = now + self.policy.alarm_pause_ms;
        self.bed_mut(bed)?.alarm_paused = Some((user.to_string(), until));
        let detail = Some(format!("until {}", until + self.wall_offset));
        let e = bed_entry(
            now + self.wall_offset,
            LogKind::AlarmPaused,
            bed,
            "Alarms paused",
            Some(user),
            detail,
        );
        self.log.push(e);
        for a in self.alarms.values_mut() {
            if a.bed.as_deref() == Some(bed) && !a.technical {
                a.inactivation = Inactivation::AlarmPaused {
                    by: user.to_string(),
                    until_ms: until,
                };
            }
        }
        Ok(())
    }

    /// AUDIO OFF, only where the hospital's policy allows it.
    pub fn audio_off(&mut self, now: Ms, scope: &Scope, user: &str) -> Result<usize, AlarmError> {
        Self::check_user(user)?;
        if !self.policy.allow_audio_off {
            return Err(AlarmError::NotAllowed("audio off is disabled by policy"));
        }
        let next = now + self.policy.audio_off_reminder_ms;
        let mut n = 0;
        for a in self.alarms.values_mut() {
            if scope.covers(&a.bed) && a.audible() {
                a.inactivation = Inactivation::AudioOff {
                    by: user.to_string(),
                    next_reminder_ms: next,
                };
                self.log.push(entry(
                    now + self.wall_offset,
                    LogKind::AudioOff,
                    a,
                    Some(user),
                ));
                n += 1;
            }
        }
        Ok(n)
    }

    /// Replaces a bed's limit rules (validated first; nothing changes on error). Alarms of
    /// rules that no longer exist end; the rest are judged by the new limits from the next
    /// value on.
    pub fn set_rules(
        &mut self,
        now: Ms,
        bed: &str,
        rules: Vec<LimitRule>,
        user: &str,
    ) -> Result<(), AlarmError> {
        Self::check_user(user)?;
        crate::rules::validate(&rules)?;
        let b = self.bed_mut(bed)?;
        let detail = rules
            .iter()
            .map(|r| {
                format!(
                    "{}{}{}",
                    r.id,
                    if r.direction == Direction::Low {
                        "<"
                    } else {
                        ">"
                    },
                    r.threshold
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        b.rules = rules;
        b.pending
            .retain(|id, _| b.rules.iter().any(|r| &r.id == id));
        let gone: Vec<u64> = self
            .alarms
            .values()
            .filter(|a| a.bed.as_deref() == Some(bed))
            .filter(|a| matches!(&a.condition, Condition::Limit(id) if !self.beds[bed].rules.iter().any(|r| &r.id == id)))
            .map(|a| a.id)
            .collect();
        for id in gone {
            self.remove(now, id, LogKind::Ended, Some(user));
        }
        let e = bed_entry(
            now + self.wall_offset,
            LogKind::LimitsChanged,
            bed,
            "Limits changed",
            Some(user),
            Some(detail),
        );
        self.log.push(e);
        Ok(())
    }

    // ---- time ----

    /// Runs every timer due at `now`: condition delays, liveness budgets, pause ends,
    /// escalation, reminders. Call it at least every `poll_timeout()`.
    pub fn poll(&mut self, now: Ms) {
        let beds: Vec<String> = self.beds.keys().cloned().collect();
        for bed in &beds {
            self.check_pending(now, bed);
            let (monitored, last_seen, paused) = {
                let b = &self.beds[bed];
                (b.monitored, b.last_seen, b.alarm_paused.clone())
            };
            if monitored && now - last_seen >= self.policy.device_silent_ms {
                self.raise_silent(now, bed);
            }
            if let Some((_, until)) = paused {
                if now >= until {
                    if let Some(b) = self.beds.get_mut(bed) {
                        b.alarm_paused = None;
                    }
                    let k = LogKind::AlarmPauseEnded;
                    self.log.push(bed_entry(
                        now + self.wall_offset,
                        k,
                        bed,
                        "Alarm pause ended",
                        None,
                        None,
                    ));
                }
            }
        }
        if let Some(last) = self.ui_last {
            if now - last >= self.policy.ui_heartbeat_ms {
                self.handle_station(now, Technical::UiHeartbeatMissing, true, "");
            }
        }
        let mut reminder: Option<Priority> = None;
        let escalation = self.policy.escalation.clone();
        let mut log = Vec::new();
        for a in self.alarms.values_mut() {
            match &a.inactivation {
                Inactivation::AudioPaused { until_ms, .. } if now >= *until_ms => {
                    a.inactivation = Inactivation::None;
                    log.push(entry(
                        now + self.wall_offset,
                        LogKind::AudioPauseEnded,
                        a,
                        None,
                    ));
                }
                Inactivation::AlarmPaused { until_ms, .. } if now >= *until_ms => {
                    a.inactivation = Inactivation::None;
                }
                Inactivation::AudioOff {
                    by,
                    next_reminder_ms,
                } if now >= *next_reminder_ms => {
                    let by = by.clone();
                    a.inactivation = Inactivation::AudioOff {
                        by,
                        next_reminder_ms: now + self.policy.audio_off_reminder_ms,
                    };
                    reminder = reminder.max(Some(a.priority));
                    log.push(entry(now + self.wall_offset, LogKind::Reminder, a, None));
                }
                _ => {}
            }
            let answered = matches!(
                a.inactivation,
                Inactivation::Acknowledged { .. } | Inactivation::AlarmPaused { .. }
            );
            if !answered {
                if let Some(step) = escalation
                    .iter()
                    .find(|s| s.from == a.priority && now - a.onset_mono_ms >= s.after_ms)
                {
                    a.priority = step.to;
                    a.escalated = true;
                    // Escalation sounds again, whatever pause or audio off was in force.
                    a.inactivation = Inactivation::None;
                    log.push(entry(now + self.wall_offset, LogKind::Escalated, a, None));
                }
            }
        }
        self.log.extend(log);
        if reminder.is_some() {
            self.reminder = self.reminder.max(reminder);
        }
    }

    /// The earliest time at which `poll` has something to do, if any.
    pub fn poll_timeout(&self) -> Option<Ms> {
        let mut t: Option<Ms> = None;
        let mut at = |x: Ms| t = Some(t.map_or(x, |y| y.min(x)));
        for b in self.beds.values() {
            for (id, (since, _)) in &b.pending {
                if let Some(r) = b.rules.iter().find(|r| &r.id == id) {
                    at(since + r.delay_ms);
                }
            }
            for since in b.no_value_since.values() {
                at(since + self.policy.no_value_delay_ms);
            }
            if b.monitored {
                at(b.last_seen + self.policy.device_silent_ms);
            }
            if let Some((_, until)) = &b.alarm_paused {
                at(*until);
            }
        }
        if let Some(last) = self.ui_last {
            at(last + self.policy.ui_heartbeat_ms);
        }
        for a in self.alarms.values() {
            match &a.inactivation {
                Inactivation::AudioPaused { until_ms, .. }
                | Inactivation::AlarmPaused { until_ms, .. } => at(*until_ms),
                Inactivation::AudioOff {
                    next_reminder_ms, ..
                } => at(*next_reminder_ms),
                _ => {}
            }
            if let Some(s) = self.policy.escalation.iter().find(|s| s.from == a.priority) {
                if !matches!(a.inactivation, Inactivation::Acknowledged { .. }) {
                    at(a.onset_mono_ms + s.after_ms);
                }
            }
        }
        t
    }

    fn check_pending(&mut self, now: Ms, bed: &str) {
        let Some(b) = self.beds.get(bed) else { return };
        let due: Vec<LimitRule> = b
            .rules
            .iter()
            .filter(|r| {
                b.pending
                    .get(&r.id)
                    .is_some_and(|(since, _)| now - since >= r.delay_ms)
            })
            .cloned()
            .collect();
        let no_value: Vec<u32> = b
            .no_value_since
            .iter()
            .filter(|(_, since)| now - **since >= self.policy.no_value_delay_ms)
            .map(|(c, _)| *c)
            .collect();
        for r in due {
            let v = self
                .beds
                .get_mut(bed)
                .and_then(|b| b.pending.remove(&r.id))
                .map(|(_, v)| v);
            self.raise(
                now,
                Some(bed),
                Condition::Limit(r.id.clone()),
                r.label.clone(),
                r.priority,
                v,
                Some(r.threshold),
            );
        }
        for code in no_value {
            let p = self.policy.sensor_priority;
            self.raise_technical(now, Some(bed), Technical::NoValue(code), p);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn raise(
        &mut self,
        now: Ms,
        bed: Option<&str>,
        condition: Condition,
        label: String,
        priority: Priority,
        value: Option<f64>,
        limit: Option<f64>,
    ) -> Option<u64> {
        let key = (bed.map(String::from), condition.clone());
        if let Some(&id) = self.index.get(&key) {
            // Already alarming; a latched one whose cause is back is active again.
            if let Some(a) = self.alarms.get_mut(&id) {
                a.cause_active = true;
            }
            return Some(id);
        }
        let technical = condition.is_technical();
        let paused = bed
            .and_then(|b| self.beds.get(b))
            .and_then(|b| b.alarm_paused.clone())
            .filter(|_| !technical);
        let id = self.next_id;
        self.next_id += 1;
        let a = Alarm {
            id,
            bed: bed.map(String::from),
            key: condition.key(),
            condition,
            label,
            technical,
            priority,
            onset_ms: now + self.wall_offset,
            onset_mono_ms: now,
            cause_active: true,
            escalated: false,
            value,
            limit,
            inactivation: match paused {
                Some((by, until_ms)) => Inactivation::AlarmPaused { by, until_ms },
                None => Inactivation::None,
            },
        };
        self.log
            .push(entry(now + self.wall_offset, LogKind::Raised, &a, None));
        self.alarms.insert(id, a);
        self.index.insert(key, id);
        Some(id)
    }

    /// The cause of an alarm is gone: it ends, or stays latched until someone acknowledges.
    fn cause_ended(&mut self, now: Ms, bed: Option<&str>, condition: &Condition) {
        if let Some(b) = bed.and_then(|b| self.beds.get_mut(b)) {
            if let Condition::Limit(id) = condition {
                b.pending.remove(id);
            }
        }
        let key = (bed.map(String::from), condition.clone());
        let Some(&id) = self.index.get(&key) else {
            return;
        };
        let Some(a) = self.alarms.get_mut(&id) else {
            return;
        };
        if !a.cause_active {
            return;
        }
        let acked = matches!(a.inactivation, Inactivation::Acknowledged { .. });
        if self.policy.latches(a.priority) && !acked {
            a.cause_active = false;
            self.log
                .push(entry(now + self.wall_offset, LogKind::Latched, a, None));
        } else {
            self.remove(now, id, LogKind::Ended, None);
        }
    }

    fn remove(&mut self, now: Ms, id: u64, kind: LogKind, user: Option<&str>) {
        if let Some(a) = self.alarms.remove(&id) {
            self.index.remove(&(a.bed.clone(), a.condition.clone()));
            self.log.push(entry(now + self.wall_offset, kind, &a, user));
        }
    }

    // ---- outputs ----

    /// Current alarms, highest priority first, then oldest first. Their times are wall-clock
    /// (a pause's end is where the wall clock will be when it ends), so a window counts down
    /// from its own clock.
    pub fn alarms(&self) -> Vec<Alarm> {
        let off = self.wall_offset;
        let mut v: Vec<Alarm> = self
            .alarms
            .values()
            .map(|a| {
                let mut a = a.clone();
                match &mut a.inactivation {
                    Inactivation::AudioPaused { until_ms, .. }
                    | Inactivation::AlarmPaused { until_ms, .. } => *until_ms += off,
                    Inactivation::AudioOff {
                        next_reminder_ms, ..
                    } => *next_reminder_ms += off,
                    Inactivation::None | Inactivation::Acknowledged { .. } => {}
                }
                a
            })
            .collect();
        v.sort_by(|a, b| {
            b.priority
                .cmp(&a.priority)
                .then(a.onset_ms.cmp(&b.onset_ms))
        });
        v
    }

    /// What should sound now. The reminder is handed out once.
    pub fn annunciation(&mut self) -> Annunciation {
        Annunciation {
            sound: self
                .alarms
                .values()
                .filter(|a| a.audible())
                .map(|a| a.priority)
                .max(),
            reminder: self.reminder.take(),
        }
    }

    /// Log entries since the last call, oldest first.
    pub fn drain_log(&mut self) -> Vec<LogEntry> {
        std::mem::take(&mut self.log)
    }

    /// Consistency of the engine's own state, for the periodic self-check: every alarm is
    /// indexed under its own key, and the index holds nothing else.
    pub fn self_check(&self) -> Result<(), String> {
        if self.index.len() != self.alarms.len() {
            return Err(format!(
                "index holds {} entries for {} alarms",
                self.index.len(),
                self.alarms.len()
            ));
        }
        for a in self.alarms.values() {
            if self.index.get(&(a.bed.clone(), a.condition.clone())) != Some(&a.id) {
                return Err(format!("alarm {} is not indexed under its condition", a.id));
            }
            if a.id >= self.next_id {
                return Err(format!(
                    "alarm id {} not below next id {}",
                    a.id, self.next_id
                ));
            }
        }
        Ok(())
    }
}
