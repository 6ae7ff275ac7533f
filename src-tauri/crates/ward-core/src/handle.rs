//! What callers hold: [`StationHandle`], made of a few cheap, cloneable sub-handles, one per
//! concern, so the window shell and the CLI hold what they need without one big lock:
//! [`AlarmsHandle`] (alarm actions and state), [`StaffHandle`] (sign-in, sessions, users,
//! assignments), [`ReviewHandle`] (review, exports, the alarm history), [`LiveHandle`]
//! (the ward snapshot and binary live frames), [`AdminHandle`] (admission and discharge of
//! monitors). Only the station handle itself can stop the station.

use crate::alarms::{self, AlarmMetrics, AlarmSnapshot, Input};
use crate::clock::now_ms;
use crate::error::CoreError;
use crate::lifecycle::Lifecycle;
use crate::live::{self, BedView, FrameCursor, LiveState};
use crate::writer::{StoreMetrics, Writer};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use ward_access::{Action, Session, Staff, UserChange, UserView};
use ward_alarm::{AlarmCommand, LimitRule, LogEntry, Policy};
use ward_annunciate::NotifyCounters;
use ward_config::Config;
use ward_model::ErrorCode;
use ward_store::AlarmLogRow;

/// What the simulated ward sent, filled in when it stops.
#[cfg(feature = "sim")]
pub(crate) type SimStatsSlot = Arc<Mutex<Option<ward_sim::SimStats>>>;
#[cfg(not(feature = "sim"))]
pub(crate) type SimStatsSlot = ();

/// Everything the station counts, for the window, the summary and tests.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct StationMetrics {
    pub broker: ward_broker::MetricsSnapshot,
    /// Accepted messages by topic kind, refused ones by reason (bad_json, bad_wave, ...).
    pub ingest: BTreeMap<String, u64>,
    pub store: StoreMetrics,
    pub alarms: AlarmMetrics,
    /// Store-and-forward to the hospital core: backlog and the oldest unsynced event.
    pub sync: ward_sync::SyncStatus,
    /// The HL7 interfaces: messages taken and answered, by outcome.
    pub hl7: BTreeMap<String, u64>,
    /// PCD-01 / PCD-04 destinations: connected, backlog, refused (shown beside the core's).
    pub hl7_links: Vec<crate::hl7_out::LinkStatus>,
    /// The unit's alarm figures over the last 24 hours (refreshed once a minute; absent
    /// until the first computation).
    pub alarm_burden: Option<crate::burden::BurdenMetrics>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct WardSnapshot {
    pub station: String,
    pub now_ms: i64,
    pub broker: String,
    pub beds: Vec<BedView>,
    pub unassigned: Vec<live::DeviceView>,
    pub alarms: AlarmSnapshot,
    pub metrics: StationMetrics,
}

/// Alarm actions and the alarm system's state.
#[derive(Clone)]
pub struct AlarmsHandle {
    pub(crate) tx: Sender<Input>,
    pub(crate) shared: Arc<alarms::Shared>,
    pub(crate) events: tokio::sync::broadcast::Sender<LogEntry>,
    pub(crate) notify: Arc<NotifyCounters>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) staff: Arc<Staff>,
    /// This station's id: the origin of the audit events it writes.
    pub(crate) origin: String,
}

impl AlarmsHandle {
    /// Acknowledges, from here, a followed station's alarm (care group): the user signed in
    /// with `token` must be clinical staff, and the alarm must be in the "Other beds" list.
    /// The acknowledgement is an event of this station's trail (`alarm.acknowledge_followed`),
    /// which reaches that station through the hospital core; it applies it to its alarm and
    /// logs it "by {user} at station {this one}".
    pub fn acknowledge_followed(
        &self,
        token: &str,
        station: &str,
        bed: &str,
        key: &str,
    ) -> Result<(), CoreError> {
        let action = Action::AcknowledgeFollowed {
            station: station.to_string(),
            bed: bed.to_string(),
        };
        let user = self.staff.authorize(token, &action, now_ms())?.username;
        let found = self.shared.others.lock().ok().and_then(|o| {
            o.iter()
                .find(|x| x.station == station && x.alarm.bed == bed && x.alarm.key == key)
                .cloned()
        });
        let Some(other) = found else {
            return Err(CoreError::invalid(
                ErrorCode::UnknownAlarm,
                format!(
                    "no followed alarm {key} at bed {bed} of station {station} (it may have ended)"
                ),
            ));
        };
        let ack = ward_sync::FollowedAck {
            station: station.to_string(),
            bed: bed.to_string(),
            condition: key.to_string(),
            label: other.alarm.label.clone(),
            t_ms: now_ms(),
        };
        let detail = serde_json::to_string(&ack)
            .map_err(|e| CoreError::Internal(format!("acknowledgement detail: {e}")))?;
        tracing::info!(%user, %station, %bed, %key, "followed alarm acknowledged here");
        self.tx
            .send(Input::Audit(ward_store::AuditEvent {
                origin: self.origin.clone(),
                t_ms: ack.t_ms,
                actor: user,
                kind: ward_sync::FOLLOWED_ACK_KIND.into(),
                bed: None,
                detail,
            }))
            .map_err(|_| CoreError::AlarmDriver("it has stopped"))
    }

    /// An alarm command by the user signed in with `token`, if their role and beds allow
    /// it. Denials are answered with a reason and audited. Returns how many alarms it
    /// applied to.
    pub fn act(&self, token: &str, command: AlarmCommand) -> Result<usize, CoreError> {
        let alarm_bed = match &command {
            AlarmCommand::Acknowledge { id } => self
                .shared
                .alarms
                .lock()
                .ok()
                .and_then(|a| a.iter().find(|x| x.id == *id).and_then(|x| x.bed.clone())),
            _ => None,
        };
        let action = Action::alarm(command, alarm_bed);
        let user = self.staff.authorize(token, &action, now_ms())?.username;
        let Action::Alarm { command, .. } = action else {
            return Err(CoreError::Internal(
                "an alarm action lost its command".into(),
            ));
        };
        self.run(command, user)
    }

    /// Runs a command in the alarm driver and waits (briefly) for its answer. No permission
    /// check: callers are [`Self::act`] and the station itself (admissions).
    pub(crate) fn run(&self, command: AlarmCommand, user: String) -> Result<usize, CoreError> {
        let (reply, rx) = std::sync::mpsc::channel();
        self.tx
            .send(Input::Command {
                command,
                user,
                reply: Some(reply),
            })
            .map_err(|_| CoreError::AlarmDriver("it has stopped"))?;
        rx.recv_timeout(std::time::Duration::from_secs(2))
            .map_err(|_| CoreError::AlarmDriver("no answer within 2 s"))?
            .map_err(CoreError::Alarm)
    }

    pub fn snapshot(&self) -> AlarmSnapshot {
        let s = &self.shared;
        let p = &self.policy;
        AlarmSnapshot {
            alarms: s.alarms.lock().map(|a| a.clone()).unwrap_or_default(),
            audio: s.audio.lock().ok().and_then(|a| a.clone()),
            driver_ok: s.loop_alive(),
            audio_pause_s: p.audio_pause_ms / 1000,
            alarm_pause_s: p.alarm_pause_ms / 1000,
            allow_audio_off: p.allow_audio_off,
            metrics: s.metrics(Some(&self.notify)),
            restart: s.restart.lock().ok().and_then(|r| r.clone()),
            others: s.others.lock().map(|o| o.clone()).unwrap_or_default(),
        }
    }

    /// Every alarm log entry as it happens (window attention, benchmarks).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<LogEntry> {
        self.events.subscribe()
    }

    /// True while the alarm driver's own loop is ticking (it last ticked within 2 s): what
    /// the sentinel link and the service watchdog beat on, so a stalled alarm loop stops
    /// the beats even though the process lives.
    pub fn loop_alive(&self) -> bool {
        let hb = self
            .shared
            .heartbeat_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        hb > 0 && crate::clock::mono_ms() - hb < 2_000
    }

    /// A station-wide technical condition seen outside the alarm driver (the sentinel
    /// link): raised as a technical alarm while `active`, ended when not.
    pub fn report_technical(&self, t: ward_alarm::Technical, active: bool, detail: &str) {
        let _ = self.tx.send(Input::Technical {
            t,
            active,
            detail: detail.to_string(),
        });
    }

    /// An audit event from outside the core (the sentinel link): it takes the alarm
    /// driver's never-drop path to the store and on to the hospital core.
    pub fn audit(&self, ev: ward_store::AuditEvent) {
        let _ = self.tx.send(Input::Audit(ev));
    }

    /// The window's heartbeat; once one has arrived, its absence is a technical alarm.
    pub fn ui_heartbeat(&self) {
        let _ = self.tx.send(Input::UiHeartbeat);
    }

    /// A bed's current limit rules.
    pub fn limits(&self, bed: &str) -> Option<Vec<LimitRule>> {
        self.shared
            .rules
            .lock()
            .ok()
            .and_then(|r| r.get(bed).cloned())
    }
}

/// Sign-in, sessions, users and nurses' bed assignments; the clock is read here, once.
#[derive(Clone)]
pub struct StaffHandle {
    pub(crate) staff: Arc<Staff>,
    pub(crate) beds: Arc<BTreeSet<String>>,
}

impl StaffHandle {
    /// Signs a user in at a window. The token stays with the caller (the shell keeps it on
    /// the Rust side). Every failure is audited and answered with the same message.
    pub fn login(&self, username: &str, secret: &str) -> Result<(String, Session), CoreError> {
        Ok(self.staff.login(username, secret, now_ms())?)
    }

    /// Unlocks a locked session with the user's PIN or password.
    pub fn unlock(&self, token: &str, secret: &str) -> Result<Session, CoreError> {
        Ok(self.staff.unlock(token, secret, now_ms())?)
    }

    pub fn lock(&self, token: &str) {
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
        Ok(self.staff.change_user(token, change, now_ms())?)
    }

    /// Gives a nurse their beds for the shift (charge nurses).
    pub fn assign_beds(&self, token: &str, nurse: &str, beds: &[String]) -> Result<(), CoreError> {
        Ok(self
            .staff
            .assign(token, nurse, beds, &self.beds, now_ms())?)
    }
}

/// The Unit statistics view: the report and its drawing.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UnitStatistics {
    pub report: ward_export::alarm_report::AlarmReport,
    /// The report page (key figures and charts) as SVG, the same as `wardwatch report`.
    pub svg: String,
}

/// Review, exports and the alarm history, read from the database.
#[derive(Clone)]
pub struct ReviewHandle {
    pub(crate) cfg: Arc<Config>,
    pub(crate) staff: Arc<Staff>,
    /// The limit rules in force now (the unit statistics' limit review).
    pub(crate) alarms: AlarmsHandle,
}

impl ReviewHandle {
    fn bed_label(&self, bed: &str) -> Result<String, CoreError> {
        self.cfg
            .beds
            .iter()
            .find(|b| b.id.as_str() == bed)
            .map(|b| b.label.clone())
            .ok_or_else(|| {
                ward_export::ExportError::BadRequest(format!(
                    "there is no bed {bed:?} in this unit"
                ))
                .into()
            })
    }

    fn store(&self) -> Result<ward_store::Store, CoreError> {
        Ok(ward_store::Store::open_read_only(&self.cfg.db_path())?)
    }

    /// Stored waveform of a bed for review (full disclosure). Viewing needs no sign-in, as
    /// the live screen does not.
    pub fn wave(
        &self,
        bed: &str,
        channel: u32,
        from_ms: i64,
        to_ms: i64,
        max_points: usize,
    ) -> Result<ward_export::ReviewWave, CoreError> {
        self.bed_label(bed)?;
        Ok(ward_export::review::wave(
            &self.store()?,
            bed,
            channel,
            from_ms,
            to_ms,
            max_points,
        )?)
    }

    /// A bed's trends with its alarm log rows in the window.
    pub fn trend(
        &self,
        bed: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<ward_export::ReviewTrend, CoreError> {
        self.bed_label(bed)?;
        Ok(ward_export::review::trend(
            &self.store()?,
            bed,
            from_ms,
            to_ms,
        )?)
    }

    /// Writes an ECG strip or trend report into `{data_dir}/exports` and returns its path.
    /// Clinical staff only; audited as `export.strip` / `export.trend` with the file name.
    pub fn export(
        &self,
        token: &str,
        req: &ward_export::Request,
    ) -> Result<std::path::PathBuf, CoreError> {
        let bed = req.bed();
        let label = self.bed_label(bed)?;
        let user = self
            .staff
            .authorize(
                token,
                &Action::Export {
                    bed: bed.to_string(),
                },
                now_ms(),
            )?
            .username;
        let rendered = req.render(&self.store()?, &self.cfg.station_name, &label)?;
        let dir = self.cfg.data_dir.join("exports");
        std::fs::create_dir_all(&dir).map_err(|e| {
            ward_export::ExportError::Render(format!("cannot create {}: {e}", dir.display()))
        })?;
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

    /// The unit's alarm statistics over the last `days` days with the limit review, and the
    /// report drawn as SVG (clinical staff).
    pub fn unit_statistics(&self, token: &str, days: u32) -> Result<UnitStatistics, CoreError> {
        let now = now_ms();
        self.staff.authorize(token, &Action::UnitStatistics, now)?;
        let rules = self
            .alarms
            .shared
            .rules
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let report = crate::burden::report(&self.cfg, &rules, days, now)?;
        let svg = ward_export::burden_render::render_report(&report, ward_export::Format::Svg)?;
        Ok(UnitStatistics {
            svg: String::from_utf8_lossy(&svg.bytes).into_owned(),
            report,
        })
    }

    /// The alarm log from the database, newest first (one bed, or the unit).
    pub fn alarm_history(
        &self,
        bed: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AlarmLogRow>, CoreError> {
        Ok(self.store()?.alarm_log(bed, limit.min(10_000))?)
    }
}

/// The live view: the ward snapshot, binary frames for the window, the counters.
#[derive(Clone)]
pub struct LiveHandle {
    pub(crate) cfg: Arc<Config>,
    pub(crate) broker_addr: SocketAddr,
    pub(crate) broker: ward_broker::MetricsView,
    pub(crate) live: Arc<Mutex<LiveState>>,
    pub(crate) counters: crate::ingest::IngestCounters,
    pub(crate) writer: Arc<Writer>,
    pub(crate) sync: ward_sync::SharedStatus,
    pub(crate) alarms: AlarmsHandle,
    pub(crate) patients: Arc<crate::patients::Patients>,
    pub(crate) hl7: crate::hl7::Hl7Counters,
    pub(crate) hl7_links: crate::hl7_out::Links,
    pub(crate) burden: crate::burden::BurdenSlot,
}

impl LiveHandle {
    pub fn metrics(&self) -> StationMetrics {
        let ingest = self
            .counters
            .lock()
            .map(|c| c.iter().map(|(k, v)| (k.to_string(), *v)).collect())
            .unwrap_or_default();
        StationMetrics {
            broker: self.broker.snapshot(),
            ingest,
            store: self.writer.counters.snapshot(),
            alarms: self.alarms.shared.metrics(Some(&self.alarms.notify)),
            sync: self.sync.lock().map(|s| s.clone()).unwrap_or_default(),
            hl7: self.hl7.snapshot(),
            hl7_links: self.hl7_links.lock().map(|l| l.clone()).unwrap_or_default(),
            alarm_burden: self.burden.lock().ok().and_then(|b| b.clone()),
        }
    }

    pub fn snapshot(&self) -> WardSnapshot {
        let now = now_ms();
        let (mut beds, unassigned) = match self.live.lock() {
            Ok(l) => (l.beds(now), l.unassigned(now)),
            Err(_) => (Vec::new(), Vec::new()),
        };
        for b in &mut beds {
            b.patient = self.patients.admission(&b.id);
        }
        WardSnapshot {
            station: self.cfg.station_name.clone(),
            now_ms: now,
            broker: self.broker_addr.to_string(),
            beds,
            unassigned,
            alarms: self.alarms.snapshot(),
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
}

/// Admission and discharge of monitors (charge nurses).
#[derive(Clone)]
pub struct AdminHandle {
    pub(crate) staff: Arc<Staff>,
    pub(crate) live: Arc<Mutex<LiveState>>,
    pub(crate) alarms: AlarmsHandle,
}

impl AdminHandle {
    /// Admits `device` to an empty bed (charge nurses). Its liveness budget starts now: a
    /// monitor that does not speak within it raises "No data".
    pub fn admit(&self, token: &str, bed: &str, device: &str) -> Result<(), CoreError> {
        let d = ward_model::DeviceId::new(device)
            .map_err(|e| CoreError::invalid(ErrorCode::BadDevice, e.to_string()))?;
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
        let bad = |reason: String| CoreError::invalid(ErrorCode::BadAdmission, reason);
        let left = {
            let mut live = self
                .live
                .lock()
                .map_err(|_| CoreError::Internal("the live view lock is poisoned".into()))?;
            live.set_device(bed, device.clone()).map_err(bad)?
        };
        if device.is_none() && left.is_none() {
            return Err(bad(format!("{bed} has no device to discharge")));
        }
        let named = device.as_ref().or(left.as_ref()).map(|d| d.to_string());
        let _ = self
            .alarms
            .tx
            .send(Input::Records(vec![ward_store::Record::BedDevice {
                bed: bed.to_string(),
                device: device.as_ref().map(|d| d.to_string()),
                t_ms: now_ms(),
                user: user.clone(),
            }]));
        // The alarm log entry (admitted / discharged, with the device) is also the audit event.
        self.alarms.run(
            AlarmCommand::Monitor {
                bed: bed.to_string(),
                monitored: device.is_some(),
                device: named,
            },
            user,
        )?;
        Ok(())
    }
}

/// Patients: admission, transfer, discharge and updates (charge nurses), and the census.
#[derive(Clone)]
pub struct PatientsHandle {
    pub(crate) staff: Arc<Staff>,
    pub(crate) patients: Arc<crate::patients::Patients>,
}

impl PatientsHandle {
    /// Every configured bed and who is in it.
    pub fn census(&self) -> Vec<(String, Option<crate::census::Admission>)> {
        self.patients.census()
    }

    /// A census change asked for in the window (charge nurses). Blocking (a database write
    /// and the limit change): the shell calls it off its async runtime.
    pub fn change(&self, token: &str, op: crate::census::Op) -> Result<(), CoreError> {
        let user = self
            .staff
            .authorize(token, &Action::AdmitDischarge, now_ms())?
            .username;
        self.patients.apply(
            &op,
            crate::census::Source::Manual,
            &user,
            serde_json::json!({ "at": "window" }),
        )?;
        Ok(())
    }
}

/// A running station: its sub-handles (cheap to clone, for whoever needs them) and its
/// lifecycle (only this handle can stop it).
pub struct StationHandle {
    pub(crate) cfg: Arc<Config>,
    pub(crate) broker_addr: SocketAddr,
    pub(crate) alarms: AlarmsHandle,
    pub(crate) staff: StaffHandle,
    pub(crate) review: ReviewHandle,
    pub(crate) live: LiveHandle,
    pub(crate) admin: AdminHandle,
    pub(crate) patients: PatientsHandle,
    pub(crate) lifecycle: Lifecycle,
    /// The simulator's counts, read at shutdown (unit type without the `sim` feature).
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    pub(crate) sim_stats: SimStatsSlot,
}

impl StationHandle {
    pub fn broker_addr(&self) -> SocketAddr {
        self.broker_addr
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn alarms(&self) -> &AlarmsHandle {
        &self.alarms
    }

    pub fn staff(&self) -> &StaffHandle {
        &self.staff
    }

    pub fn review(&self) -> &ReviewHandle {
        &self.review
    }

    pub fn live(&self) -> &LiveHandle {
        &self.live
    }

    pub fn admin(&self) -> &AdminHandle {
        &self.admin
    }

    pub fn patients(&self) -> &PatientsHandle {
        &self.patients
    }
}
