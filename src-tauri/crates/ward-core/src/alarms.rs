//! The alarm driver: one OS thread that owns the [`ward_alarm::Engine`], feeds it what ingest
//! decoded and what people commanded, polls it every [`TICK`], and carries its output to the
//! annunciator (sound), the notifier (OS), the store writer (alarm log), subscribers (window
//! attention, benchmarks) and the shared snapshot the window and the summary read.
//!
//! It is a plain thread, not a tokio task, so a busy async runtime cannot delay an alarm, and
//! nothing here waits on the window. Inputs arrive on an unbounded channel: alarms never drop
//! (ARCHITECTURE.md); the channel only grows if this thread stops, which the watchdog
//! (`heartbeat_ms`) makes visible. Alarm log rows the writer cannot take yet are kept here
//! and offered again every tick, never dropped.
//!
//! Time: the engine's timers get monotonic milliseconds ([`mono_ms`]); before every input
//! and poll it is also told the wall clock, which stamps its log rows (and whose steps it
//! logs).

use crate::clock::{mono_ms, now_ms};
use crate::writer::Writer;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use ward_alarm::{
    Alarm, AlarmCommand, AlarmError, Engine, LimitRule, LogEntry, LogKind, Policy, Priority,
    Restore, Technical,
};
use ward_annunciate::{Annunciator, AudioStatus, Notice, Notifier, NotifyCounters};
use ward_store::{AlarmLogRow, AuditEvent, Record};

pub const TICK: Duration = Duration::from_millis(100);
/// IEC 60601-1-8 conformance tests expect a self-check at least every 10 s.
const SELF_CHECK_EVERY: Duration = Duration::from_secs(5);
/// Storage is "failing" while it reported an error within this window.
const STORAGE_WINDOW: Duration = Duration::from_secs(10);
/// Records queued but not written beyond this is "lagging" (half the writer's queue).
const STORAGE_LAG: u64 = (crate::writer::QUEUE_CAPACITY / 2) as u64;

/// The answer to a command: how many alarms it applied to.
pub(crate) type Reply = Sender<Result<usize, AlarmError>>;

pub(crate) enum Input {
    Vitals {
        bed: String,
        obs: Vec<(u32, Option<f64>)>,
    },
    Seen {
        bed: String,
    },
    Offline {
        bed: String,
    },
    DeviceAlarm {
        bed: String,
        id: String,
        label: String,
        priority: Priority,
        active: bool,
        value: Option<f64>,
    },
    UiHeartbeat,
    /// A station-wide technical condition reported from outside the driver (the sentinel
    /// link): raised while `active`, ended when not.
    Technical {
        t: Technical,
        active: bool,
        detail: String,
    },
    /// A followed station's current alarm list (care group).
    Followed(ward_alarm::care::SharedAlarms),
    /// A peer station of the unit stopped monitoring (`down`) or is back.
    Peer {
        peer: String,
        down: bool,
        label: String,
        detail: String,
    },
    /// An audit event from elsewhere in the station (device status, start, stop): it takes
    /// the driver's never-drop path to the store.
    Audit(AuditEvent),
    /// Records that go with an audit event in the same queue, in order (users, assignments):
    /// the same never-drop path.
    Records(Vec<Record>),
    /// An action on alarms by `user`: from a window or the console (answered on `reply`), or
    /// an acknowledgement made at another station of the unit (no one waits for it).
    Command {
        command: AlarmCommand,
        user: String,
        reply: Option<Reply>,
    },
    Stop,
}

#[derive(Debug, Clone, Serialize, Default)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AlarmMetrics {
    pub active_high: u64,
    pub active_medium: u64,
    pub active_low: u64,
    pub log_rows: u64,
    pub log_rows_waiting: u64,
    pub inputs: u64,
    pub self_checks: u64,
    pub self_check_failures: u64,
    pub notifications_sent: u64,
    pub notifications_failed: u64,
    pub notifications_dropped: u64,
}

/// What the window and the summary show.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AlarmSnapshot {
    pub alarms: Vec<Alarm>,
    pub audio: Option<AudioStatus>,
    /// False when the driver thread has not ticked for 2 s: the alarm system itself is down.
    pub driver_ok: bool,
    pub audio_pause_s: i64,
    pub alarm_pause_s: i64,
    pub allow_audio_off: bool,
    pub metrics: AlarmMetrics,
    /// "Station restarted at …; N alarms restored" when this run followed an earlier one
    /// (stopped, crashed or cut off): the window shows it.
    pub restart: Option<String>,
    /// Followed stations' alarms (care group), for the "Other beds" bar.
    pub others: Vec<ward_alarm::care::OtherAlarm>,
}

#[derive(Default)]
pub(crate) struct Shared {
    pub alarms: Mutex<Vec<Alarm>>,
    /// "Station restarted at …; N alarms restored", when this run followed another.
    pub restart: Mutex<Option<String>>,
    pub others: Mutex<Vec<ward_alarm::care::OtherAlarm>>,
    pub audio: Mutex<Option<AudioStatus>>,
    pub rules: Mutex<BTreeMap<String, Vec<LimitRule>>>,
    pub heartbeat_ms: AtomicI64,
    pub log_rows: AtomicU64,
    pub log_rows_waiting: AtomicU64,
    pub inputs: AtomicU64,
    pub self_checks: AtomicU64,
    pub self_check_failures: AtomicU64,
}

/// What the log says of the previous run, read before the driver starts.
#[derive(Default)]
pub(crate) struct Previous {
    /// A station ran on this database before (its trail has a `station.start`).
    pub ran_before: bool,
    /// The alarms that had not ended, each as the rows of its last episode.
    pub unfinished: Vec<Vec<AlarmLogRow>>,
    /// The highest alarm id in the log.
    pub max_alarm_id: u64,
}

/// The engine's [`Restore`] for one unfinished alarm episode of the log (its rows from
/// "raised" on); `None` if the rows cannot be read as one.
pub(crate) fn restore_of(rows: &[AlarmLogRow]) -> Option<Restore> {
    let first = rows.first().filter(|r| r.kind == "raised")?;
    let priority = |p: Option<&str>| Priority::from_name(p?);
    let mut r = Restore {
        bed: first.bed.clone()?,
        condition: ward_alarm::Condition::from_key(&first.condition)?,
        label: first.label.clone(),
        priority: priority(first.priority.as_deref())?,
        escalated: false,
        onset_wall_ms: first.t_ms,
        value: first.value,
        limit: first.limit,
        cause_active: true,
        acknowledged: None,
        previous_id: first.alarm_id?,
    };
    for row in &rows[1..] {
        match row.kind.as_str() {
            "escalated" => {
                r.escalated = true;
                r.priority = priority(row.priority.as_deref()).unwrap_or(r.priority);
            }
            "latched" => r.cause_active = false,
            "acknowledged" => {
                r.acknowledged = Some((row.user.clone().unwrap_or_default(), row.t_ms));
            }
            _ => {}
        }
        // The newest value the log saw for it.
        if row.value.is_some() {
            r.value = row.value;
        }
    }
    Some(r)
}

pub(crate) struct BedSetup {
    pub id: String,
    pub label: String,
    pub rules: Vec<LimitRule>,
    pub monitored: bool,
}

pub(crate) struct Driver {
    engine: Engine,
    writer: Arc<Writer>,
    audio: Annunciator,
    notifier: Notifier,
    events: broadcast::Sender<LogEntry>,
    shared: Arc<Shared>,
    labels: BTreeMap<String, String>,
    /// This station's id, the origin of its audit events.
    origin: String,
    waiting: VecDeque<Record>,
    storage_seen: (u64, Option<Instant>),
    last_callbacks: u64,
    care: ward_alarm::care::CareGroup,
}

impl Driver {
    // Each argument is a separate part the station composes (station.rs builds them in
    // order); a struct holding them would only be built here once.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        origin: String,
        policy: Policy,
        beds: Vec<BedSetup>,
        writer: Arc<Writer>,
        notifications: bool,
        events: broadcast::Sender<LogEntry>,
        shared: Arc<Shared>,
        (previous, care): (Previous, ward_alarm::care::CarePolicy),
    ) -> Result<Self, AlarmError> {
        let now = mono_ms();
        let mut engine = Engine::new(policy);
        engine.set_clock(now, now_ms());
        let mut labels = BTreeMap::new();
        for b in beds {
            engine.add_bed(now, &b.id, b.rules.clone(), b.monitored)?;
            if let Ok(mut r) = shared.rules.lock() {
                r.insert(b.id.clone(), b.rules);
            }
            labels.insert(b.id, b.label);
        }
        // A restart: the alarms that had not ended come back as they were (latched,
        // acknowledged, escalated), and new ids follow the log's.
        engine.number_from(previous.max_alarm_id + 1);
        let mut restored = 0;
        for rows in &previous.unfinished {
            match restore_of(rows) {
                Some(r) => restored += usize::from(engine.restore(now, r).is_some()),
                None => tracing::error!(
                    alarm = ?rows.first().and_then(|r| r.alarm_id),
                    "an unfinished alarm in the log cannot be read back; not restored"
                ),
            }
        }
        if previous.ran_before {
            let at = chrono::DateTime::from_timestamp_millis(now_ms())
                .map(|t| {
                    t.with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string()
                })
                .unwrap_or_default();
            let label = match restored {
                0 => format!("Station restarted at {at}; no alarm was active"),
                1 => format!("Station restarted at {at}; 1 alarm restored"),
                n => format!("Station restarted at {at}; {n} alarms restored"),
            };
            tracing::warn!("{label}");
            if let Ok(mut r) = shared.restart.lock() {
                *r = Some(label.clone());
            }
            engine.log_restart(now, label);
        }
        Ok(Self {
            engine,
            writer,
            audio: Annunciator::start(),
            notifier: Notifier::start(notifications),
            events,
            shared,
            labels,
            origin,
            waiting: VecDeque::new(),
            storage_seen: (0, None),
            last_callbacks: 0,
            care: ward_alarm::care::CareGroup::new(care),
        })
    }

    /// Reads both clocks into the engine and returns the monotonic time to pass it.
    fn clock(&mut self) -> ward_alarm::Ms {
        let mono = mono_ms();
        self.engine.set_clock(mono, now_ms());
        mono
    }

    pub fn notify_counters(&self) -> Arc<NotifyCounters> {
        self.notifier.counters.clone()
    }

    pub fn run(mut self, rx: Receiver<Input>) {
        let mut next_tick = Instant::now();
        let mut next_check = Instant::now() + SELF_CHECK_EVERY;
        // The service manager's watchdog is fed from this loop only (crate::service).
        let watchdog_every = crate::service::watchdog_every();
        let mut next_watchdog = Instant::now();
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(input) => {
                    self.handle(input);
                    // Take what else is queued, then act once: an alarm with no condition
                    // delay goes out as soon as the value that raised it was handled.
                    let mut stop = false;
                    for _ in 0..1024 {
                        match rx.try_recv() {
                            Ok(Input::Stop) => {
                                stop = true;
                                break;
                            }
                            Ok(i) => self.handle(i),
                            Err(_) => break,
                        }
                    }
                    let now = self.clock();
                    self.engine.poll(now);
                    self.outputs();
                    if stop {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now >= next_tick {
                self.shared.heartbeat_ms.store(mono_ms(), Ordering::Relaxed);
                if let Some(every) = watchdog_every {
                    if now >= next_watchdog {
                        crate::service::watchdog();
                        next_watchdog = now + every;
                    }
                }
                self.check_storage(now);
                self.check_audio();
                if now >= next_check {
                    self.self_check();
                    next_check = now + SELF_CHECK_EVERY;
                }
                let t = self.clock();
                self.engine.poll(t);
                // A followed station's alarm: at most a LOW reminder, and only when nothing
                // of this station's own sounds (the annunciator plays reminders only then).
                if let Some(p) = self.care.poll(t) {
                    self.audio.reminder(p);
                }
                self.outputs();
                next_tick += TICK;
                if next_tick < now {
                    next_tick = now + TICK;
                }
            }
        }
        // Stopping: whatever the log holds goes to the writer (which writes all it has
        // before it stops), and the sound stops with the station.
        self.outputs();
        self.audio.set(None);
        // The writer is still running: wait for room (up to 5 s) rather than lose a row.
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(r) = self.waiting.pop_front() {
            if let Err(r) = self.writer.offer(r) {
                self.waiting.push_front(r);
                if Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if !self.waiting.is_empty() {
            tracing::error!(
                rows = self.waiting.len(),
                "alarm log rows could not be queued at shutdown"
            );
        }
    }

    fn handle(&mut self, input: Input) {
        self.shared.inputs.fetch_add(1, Ordering::Relaxed);
        let now = self.clock();
        let e = &mut self.engine;
        match input {
            Input::Vitals { bed, obs } => e.handle_vitals(now, &bed, &obs),
            Input::Seen { bed } => e.handle_seen(now, &bed),
            Input::Offline { bed } => e.handle_offline(now, &bed),
            Input::DeviceAlarm {
                bed,
                id,
                label,
                priority,
                active,
                value,
            } => e.handle_device_alarm(now, &bed, &id, &label, priority, active, value),
            Input::UiHeartbeat => e.handle_ui_heartbeat(now),
            Input::Technical { t, active, detail } => e.handle_station(now, t, active, &detail),
            Input::Peer {
                peer,
                down,
                label,
                detail,
            } => e.handle_peer(now, &peer, down, &label, &detail),
            Input::Followed(list) => self.care.update(list),
            Input::Audit(ev) => self.waiting.push_back(Record::Audit(ev)),
            Input::Records(rs) => self.waiting.extend(rs),
            Input::Command {
                command,
                user,
                reply,
            } => {
                let peer = matches!(command, AlarmCommand::PeerAcknowledge { .. });
                let rules = match &command {
                    AlarmCommand::SetRules { bed, rules } => Some((bed.clone(), rules.clone())),
                    _ => None,
                };
                let r = e.command(now, command, &user);
                if let (Ok(_), Some((bed, rules))) = (&r, rules) {
                    let json = serde_json::to_string(&rules).unwrap_or_default();
                    if let Ok(mut m) = self.shared.rules.lock() {
                        m.insert(bed.clone(), rules);
                    }
                    self.waiting.push_back(Record::BedRules {
                        bed,
                        rules_json: json,
                        t_ms: e.wall_of(now),
                        user: user.clone(),
                    });
                }
                match (&r, peer) {
                    (Ok(0), true) => {
                        tracing::debug!(%user, "remote acknowledgement matches no alarm here")
                    }
                    (Ok(_), true) => tracing::info!(%user, "acknowledged at another station"),
                    (Err(err), true) => {
                        tracing::warn!(error = %err, "remote acknowledgement refused")
                    }
                    (Err(err), false) => tracing::warn!(error = %err, "alarm command refused"),
                    (Ok(_), false) => {}
                }
                // Publish the new state before answering, so a caller that reads the snapshot
                // right after sees its own action. The caller may have given up waiting; the
                // action stands either way.
                self.outputs();
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            Input::Stop => {}
        }
    }

    fn outputs(&mut self) {
        // Sound first: everything after this is bookkeeping.
        let a = self.engine.annunciation();
        self.audio.set(a.sound);
        if let Some(p) = a.reminder {
            self.audio.reminder(p);
        }
        let log = self.engine.drain_log();
        for l in log {
            if matches!(l.kind, LogKind::Raised | LogKind::Escalated)
                && l.priority.is_some_and(|p| p >= Priority::Medium)
            {
                self.notify(&l);
            }
            if matches!(
                l.kind,
                LogKind::Raised | LogKind::Escalated | LogKind::Acknowledged
            ) {
                tracing::info!(
                    kind = ?l.kind,
                    bed = l.bed.as_deref().unwrap_or("station"),
                    priority = l.priority.map(|p| p.as_str()).unwrap_or("-"),
                    label = %l.label,
                    user = l.user.as_deref().unwrap_or(""),
                    "alarm"
                );
            }
            if l.kind == LogKind::ClockStepped {
                tracing::warn!(
                    detail = l.detail.as_deref().unwrap_or(""),
                    "wall clock stepped"
                );
            }
            let r = row(&l);
            // Every alarm state change and action is also an audit event (and so goes to
            // the hospital core), with the alarm log row as its detail.
            self.waiting.push_back(Record::Audit(AuditEvent {
                origin: self.origin.clone(),
                t_ms: r.t_ms,
                actor: r.user.clone().unwrap_or_else(|| "system".into()),
                kind: format!("alarm.{}", r.kind),
                bed: r.bed.clone(),
                detail: serde_json::to_string(&r).unwrap_or_default(),
            }));
            self.waiting.push_back(Record::Alarm(r));
            let _ = self.events.send(l);
        }
        while let Some(r) = self.waiting.pop_front() {
            if let Err(r) = self.writer.offer(r) {
                self.waiting.push_front(r);
                break;
            }
            self.shared.log_rows.fetch_add(1, Ordering::Relaxed);
        }
        self.shared
            .log_rows_waiting
            .store(self.waiting.len() as u64, Ordering::Relaxed);
        // Refreshed every time, not only on log lines: the worst value of an ongoing alarm
        // changes without one. A few dozen alarms at most; the copy is cheap.
        if let Ok(mut s) = self.shared.alarms.lock() {
            *s = self.engine.alarms();
        }
        if let Ok(mut o) = self.shared.others.lock() {
            *o = self.care.shown();
        }
    }

    fn notify(&self, l: &LogEntry) {
        let Some(p) = l.priority else { return };
        let place = match &l.bed {
            Some(b) => self.labels.get(b).cloned().unwrap_or_else(|| b.clone()),
            None => "Station".into(),
        };
        let mut body = format!(
            "{} alarm at {place}: {}",
            p.as_str().to_uppercase(),
            l.label
        );
        if let Some(v) = l.value {
            body += &format!(", value {v}");
        }
        if let Some(v) = l.limit {
            body += &format!(" (limit {v})");
        }
        if l.kind == LogKind::Escalated {
            body += ", escalated: not yet answered";
        }
        self.notifier.send(Notice {
            priority: p,
            summary: format!("{place}: {}", l.label),
            body,
        });
    }

    fn check_storage(&mut self, now: Instant) {
        let m = self.writer.counters.snapshot();
        let errors = m.write_errors + m.queue_full + m.dropped_after_errors;
        if errors != self.storage_seen.0 {
            self.storage_seen = (errors, Some(now));
        }
        let recent = self
            .storage_seen
            .1
            .is_some_and(|t| now.duration_since(t) < STORAGE_WINDOW);
        let lag = self.writer.lag();
        let t = self.clock();
        if m.failing || recent {
            // The reason first (SQLite's words: "database or disk is full"), then the counts.
            let detail = format!(
                "{}write errors {}, queue full {}, dropped {}",
                match (&m.last_error, m.failing) {
                    (Some(e), true) => format!("cannot write the database: {e}; "),
                    _ => String::new(),
                },
                m.write_errors,
                m.queue_full,
                m.dropped_after_errors
            );
            self.engine
                .handle_station(t, Technical::StorageFailing, true, &detail);
        } else if lag > STORAGE_LAG {
            let detail = format!("{lag} records waiting to be written");
            self.engine
                .handle_station(t, Technical::StorageFailing, true, &detail);
        } else {
            self.engine
                .handle_station(t, Technical::StorageFailing, false, "");
        }
    }

    fn check_audio(&mut self) {
        let st = self.audio.status();
        let t = self.clock();
        // An empty detail means the output is still being opened.
        if !st.ok && !st.detail.is_empty() {
            self.engine
                .handle_station(t, Technical::AudioUnavailable, true, &st.detail);
        } else if st.ok {
            self.engine
                .handle_station(t, Technical::AudioUnavailable, false, "");
        }
        if let Ok(mut a) = self.shared.audio.lock() {
            *a = Some(st);
        }
    }

    /// The periodic self-check: the engine's own consistency, and an audio output that
    /// claims to be fine must really be running (its callback count moves).
    fn self_check(&mut self) {
        self.shared.self_checks.fetch_add(1, Ordering::Relaxed);
        let st = self.audio.status();
        let mut problem = self.engine.self_check().err();
        if problem.is_none() && st.ok && st.callbacks == self.last_callbacks {
            problem = Some(format!(
                "audio output reports ready but its callback has not run for {} s",
                SELF_CHECK_EVERY.as_secs()
            ));
        }
        self.last_callbacks = st.callbacks;
        let t = self.clock();
        match problem {
            Some(p) => {
                self.shared
                    .self_check_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(problem = %p, "alarm system self-check failed");
                self.engine
                    .handle_station(t, Technical::SelfCheckFailed, true, &p);
            }
            None => self
                .engine
                .handle_station(t, Technical::SelfCheckFailed, false, ""),
        }
    }
}

fn row(l: &LogEntry) -> AlarmLogRow {
    AlarmLogRow {
        t_ms: l.t_ms,
        kind: serde_json::to_value(l.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        alarm_id: l.alarm_id,
        bed: l.bed.clone(),
        condition: l.condition.clone(),
        label: l.label.clone(),
        priority: l.priority.map(|p| p.as_str().to_string()),
        value: l.value,
        limit: l.limit,
        user: l.user.clone(),
        detail: l.detail.clone(),
        patient: None,
    }
}

impl Shared {
    /// The driver's loop ticked within the last 2 s.
    pub fn loop_alive(&self) -> bool {
        let hb = self.heartbeat_ms.load(Ordering::Relaxed);
        hb > 0 && mono_ms() - hb < 2_000
    }

    pub fn metrics(&self, notify: Option<&NotifyCounters>) -> AlarmMetrics {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (mut h, mut m, mut l) = (0, 0, 0);
        if let Ok(a) = self.alarms.lock() {
            for x in a.iter() {
                match x.priority {
                    Priority::High => h += 1,
                    Priority::Medium => m += 1,
                    Priority::Low => l += 1,
                }
            }
        }
        AlarmMetrics {
            active_high: h,
            active_medium: m,
            active_low: l,
            log_rows: g(&self.log_rows),
            log_rows_waiting: g(&self.log_rows_waiting),
            inputs: g(&self.inputs),
            self_checks: g(&self.self_checks),
            self_check_failures: g(&self.self_check_failures),
            notifications_sent: notify.map(|n| g(&n.sent)).unwrap_or(0),
            notifications_failed: notify.map(|n| g(&n.failed)).unwrap_or(0),
            notifications_dropped: notify.map(|n| g(&n.dropped)).unwrap_or(0),
        }
    }
}
