//! HL7 out: PCD-01 vitals to the interface engine and PCD-04 alerts to the alarm manager,
//! through a durable outbox (ward-store `hl7`), in order, each message under a stable control
//! id, resent until answered.
//!
//! Producer (once a second): alarm log rows after the cursor become PCD-04 reports (and a
//! PCD-01 at each onset); every `pcd01_every` each admitted bed's numerics become a PCD-01.
//! Messages and the cursor are written in one transaction, so a crash neither loses nor
//! repeats one. The alarm log is the source (not the engine's broadcast), so what happened
//! during an outage or just before a `kill -9` is in the log and reaches the alarm manager.
//!
//! Sender (one per destination): the oldest pending message, sent over MLLP; AA/CA marks it
//! answered; AE/AR marks it failed (kept for `wardwatch hl7 failed`, logged, counted) and the
//! next goes; no answer within `ack_timeout` or a broken connection: the same message again,
//! on a new connection, after a pause that grows to 10 s. Receivers see a resent message with
//! the same MSH-10 (HL7's duplicate detection). The PCD-04 heartbeat is not queued: it says
//! "alive now", which would be false when replayed after an outage.

use crate::census::Admission;
use crate::hl7::Hl7Counters;
use crate::live::{BedView, LiveState};
use crate::patients::Patients;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use ward_alarm::LimitRule;
use ward_config::Hl7Config;
use ward_hl7::ack::{AckCode, Sender};
use ward_hl7::er7::Message;
use ward_hl7::mllp::{self, Frame, Framer};
use ward_hl7::pcd::{self, Alert, Header, Metric, Place};
use ward_store::hl7::OutMessage;
use ward_store::{AlarmLogRow, Store};

pub const PCD01: &str = "pcd01";
pub const PCD04: &str = "pcd04";
const CURSOR: &str = "alarm_log";

/// A bed's current limit rules (from the alarm engine).
pub type RulesOf = Box<dyn Fn(&str) -> Option<Vec<LimitRule>> + Send + Sync>;

/// Connection state per destination, for the summary and the window.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LinkStatus {
    pub dest: String,
    pub to: String,
    pub connected: bool,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub backlog: u64,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub failed: u64,
    pub last_error: Option<String>,
}

pub type Links = Arc<Mutex<Vec<LinkStatus>>>;

/// HL7 timestamp of wall-clock milliseconds, UTC.
pub fn hl7_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y%m%d%H%M%S%.3f+0000").to_string())
        .unwrap_or_default()
}

fn priority(p: Option<&str>) -> &'static str {
    match p {
        Some("high") => "PH",
        Some("medium") => "PM",
        Some("low") => "PL",
        _ => "PN",
    }
}

/// Phase, alarm state and inactivation state of a log row (docs/hl7.md, "PCD-04"); `None`
/// for rows that are not an alarm's state change (limits, admissions, clock steps).
fn states(kind: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match kind {
        "raised" => ("start", "active", "enabled"),
        "escalated" | "restored" | "reminder" => ("continue", "active", "enabled"),
        "latched" => ("continue", "latched", "enabled"),
        "acknowledged" => ("continue", "active", "alert-acknowledged"),
        "audio_paused" => ("continue", "active", "audio-paused"),
        "audio_pause_ended" | "alarm_pause_ended" => ("continue", "active", "enabled"),
        "alarm_paused" => ("continue", "active", "alarm-paused"),
        "audio_off" => ("continue", "active", "audio-off"),
        "ended" | "reset" => ("end", "inactive", "enabled"),
        _ => return None,
    })
}

/// Physiological (limits, and what a monitor reports), or technical (the station's own,
/// peers', sensors').
fn alert_kind(condition: &str) -> &'static str {
    if condition.starts_with("limit:") || condition.starts_with("device:") {
        "SP"
    } else {
        "ST"
    }
}

pub(crate) struct Out {
    pub cfg: Hl7Config,
    pub db: std::path::PathBuf,
    pub origin: String,
    pub patients: Arc<Patients>,
    pub live: Arc<Mutex<LiveState>>,
    pub rules: RulesOf,
    pub counters: Hl7Counters,
    pub links: Links,
}

impl Out {
    fn me(&self) -> Sender {
        Sender {
            application: self.cfg.application.clone(),
            facility: self.cfg.facility.clone(),
        }
    }

    fn bed_view(&self, bed: &str) -> Option<BedView> {
        let now = crate::clock::now_ms();
        self.live
            .lock()
            .ok()?
            .beds(now)
            .into_iter()
            .find(|b| b.id == bed)
    }

    fn metrics(&self, bed: &BedView) -> Vec<Metric> {
        let rules = (self.rules)(&bed.id).unwrap_or_default();
        bed.numerics
            .iter()
            .filter_map(|n| {
                let limits = |dir: ward_alarm::rules::Direction| {
                    rules
                        .iter()
                        .filter(|r| r.code == n.code && r.direction == dir)
                        .map(|r| r.threshold)
                        .reduce(|a, b| match dir {
                            // The mildest limit is the range's edge (SpO2 90, not 80).
                            ward_alarm::rules::Direction::Low => a.max(b),
                            ward_alarm::rules::Direction::High => a.min(b),
                        })
                };
                let (lo, hi) = (
                    limits(ward_alarm::rules::Direction::Low),
                    limits(ward_alarm::rules::Direction::High),
                );
                Some(Metric {
                    code: n.code,
                    value: n.value?,
                    unit: n.unit,
                    time: hl7_time(n.ts_ms),
                    limits: (lo.is_some() || hi.is_some()).then_some((lo, hi)),
                })
            })
            .collect()
    }

    fn pcd01(
        &self,
        bed: &BedView,
        adm: &Admission,
        control_id: &str,
        now: i64,
    ) -> Option<OutMessage> {
        let metrics = self.metrics(bed);
        if metrics.is_empty() {
            return None;
        }
        let me = self.me();
        let h = Header {
            me: &me,
            receiver: &self.cfg.pcd01_receiver,
            now: &hl7_time(now),
            control_id,
        };
        let place = Place {
            patient: Some(&adm.patient),
            point_of_care: &self.cfg.point_of_care,
            bed: &bed.id,
        };
        let obs = bed.numerics.iter().map(|n| n.ts_ms).max().unwrap_or(now);
        Some(OutMessage {
            dest: PCD01.into(),
            bed: Some(bed.id.clone()),
            control_id: control_id.into(),
            message: pcd::oru_r01(
                &h,
                &place,
                bed.device.as_deref().unwrap_or(""),
                &hl7_time(obs),
                &metrics,
            ),
            t_ms: now,
        })
    }

    fn pcd04(&self, row_id: i64, r: &AlarmLogRow, now: i64) -> Option<OutMessage> {
        let (phase, state, inactivation) = states(&r.kind)?;
        let (bed, alarm_id) = (r.bed.as_deref()?, r.alarm_id?);
        let view = self.bed_view(bed);
        let adm = self.patients.admission(bed);
        let rule = r
            .condition
            .strip_prefix("limit:")
            .and_then(|id| (self.rules)(bed)?.into_iter().find(|x| x.id == id));
        let metric = match (rule, r.value) {
            (Some(rule), Some(value)) => Some(Metric {
                code: rule.code,
                value,
                unit: ward_model::codes::known_vital(rule.code)
                    .map(|k| k.unit)
                    .unwrap_or(0),
                time: hl7_time(r.t_ms),
                limits: r.limit.map(|l| match rule.direction {
                    ward_alarm::rules::Direction::Low => (Some(l), None),
                    ward_alarm::rules::Direction::High => (None, Some(l)),
                }),
            }),
            _ => None,
        };
        let control_id = format!("{}-R40-{row_id}", self.origin);
        let me = self.me();
        let h = Header {
            me: &me,
            receiver: &self.cfg.pcd04_receiver,
            now: &hl7_time(now),
            control_id: &control_id,
        };
        let place = Place {
            patient: adm.as_ref().map(|a| &a.patient),
            point_of_care: &self.cfg.point_of_care,
            bed,
        };
        let alert = Alert {
            alarm_id,
            phase,
            state,
            inactivation,
            priority: priority(r.priority.as_deref()),
            kind: alert_kind(&r.condition),
            label: r.label.clone(),
            metric,
            user: r.user.clone(),
            time: hl7_time(r.t_ms),
        };
        let device = view.and_then(|v| v.device).unwrap_or_default();
        Some(OutMessage {
            dest: PCD04.into(),
            bed: Some(bed.to_string()),
            control_id: control_id.clone(),
            message: pcd::oru_r40(&h, &place, &device, &alert),
            t_ms: now,
        })
    }

    /// Turns new alarm log rows into messages (one transaction with the cursor).
    fn produce_from_log(&self, store: &mut Store) -> Result<(), crate::error::CoreError> {
        // First run on this database: start from now, not from years of old alarms.
        let after = match store.hl7_cursor(CURSOR)? {
            Some(c) => c,
            None => {
                let last = store.alarm_log_last_id()?;
                store.hl7_enqueue(&[], Some((CURSOR, last)))?;
                last
            }
        };
        let rows = store.alarm_log_after(after, 500)?;
        let Some(last) = rows.last().map(|(id, _)| *id) else {
            return Ok(());
        };
        let now = crate::clock::now_ms();
        let mut msgs = Vec::new();
        for (id, r) in &rows {
            if self.cfg.pcd04_to.is_some() {
                msgs.extend(self.pcd04(*id, r, now));
            }
            if self.cfg.pcd01_to.is_some() && r.kind == "raised" {
                let bed = r.bed.as_deref().unwrap_or("");
                if let (Some(view), Some(adm)) = (self.bed_view(bed), self.patients.admission(bed))
                {
                    let cid = format!("{}-R01-{id}", self.origin);
                    msgs.extend(self.pcd01(&view, &adm, &cid, now));
                }
            }
        }
        store.hl7_enqueue(&msgs, Some((CURSOR, last)))?;
        Ok(())
    }

    /// Every admitted bed's numerics now.
    fn produce_periodic(&self, store: &mut Store) -> Result<(), crate::error::CoreError> {
        let now = crate::clock::now_ms();
        let mut msgs = Vec::new();
        // One view of the ward for the whole report, not one per bed.
        let mut views: std::collections::HashMap<String, BedView> = match self.live.lock() {
            Ok(l) => l.beds(now).into_iter().map(|b| (b.id.clone(), b)).collect(),
            Err(_) => return Ok(()),
        };
        for (bed, adm) in self.patients.census() {
            let (Some(adm), Some(view)) = (adm, views.remove(&bed)) else {
                continue;
            };
            let cid = format!("{}-R01-{bed}-{now}", self.origin);
            msgs.extend(self.pcd01(&view, &adm, &cid, now));
        }
        store.hl7_enqueue(&msgs, None)?;
        Ok(())
    }

    fn refresh_links(&self, store: &Store) {
        if let Ok(mut links) = self.links.lock() {
            for l in links.iter_mut() {
                if let Ok((backlog, failed)) = store.hl7_counts(&l.dest) {
                    (l.backlog, l.failed) = (backlog, failed);
                }
            }
        }
    }

    fn set_link(&self, dest: &str, connected: bool, error: Option<String>) {
        if let Ok(mut links) = self.links.lock() {
            if let Some(l) = links.iter_mut().find(|l| l.dest == dest) {
                l.connected = connected;
                if error.is_some() || connected {
                    l.last_error = error;
                }
            }
        }
    }
}

/// Runs the producer and a sender per configured destination until `stop`.
pub(crate) async fn run(out: Arc<Out>, stop: CancellationToken) {
    let producer = {
        let (out, stop) = (out.clone(), stop.clone());
        async move {
            let mut store = match Store::open(&out.db) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "HL7 out: cannot open the database; nothing will be sent");
                    return;
                }
            };
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut last_periodic = tokio::time::Instant::now();
            let mut last_prune = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let periodic =
                    out.cfg.pcd01_to.is_some() && last_periodic.elapsed() >= out.cfg.pcd01_every;
                if periodic {
                    last_periodic = tokio::time::Instant::now();
                }
                let prune = last_prune.elapsed() >= Duration::from_secs(3600);
                if prune {
                    last_prune = tokio::time::Instant::now();
                }
                let o = out.clone();
                store = match tokio::task::spawn_blocking(move || {
                    if let Err(e) = o.produce_from_log(&mut store) {
                        tracing::error!(error = %e, "HL7 out: alarm log to messages failed; retried");
                    }
                    if periodic {
                        if let Err(e) = o.produce_periodic(&mut store) {
                            tracing::error!(error = %e, "HL7 out: PCD-01 report failed; retried at the next");
                        }
                    }
                    if prune {
                        let before = crate::clock::now_ms() - o.cfg.keep.as_millis() as i64;
                        if let Err(e) = store.hl7_prune(before) {
                            tracing::warn!(error = %e, "HL7 out: prune failed");
                        }
                    }
                    o.refresh_links(&store);
                    store
                })
                .await
                {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "HL7 out: producer stopped");
                        return;
                    }
                };
            }
        }
    };
    let mut senders = Vec::new();
    for (dest, to) in [
        (PCD01, out.cfg.pcd01_to.clone()),
        (PCD04, out.cfg.pcd04_to.clone()),
    ] {
        if let Some(to) = to {
            senders.push(tokio::spawn(sender(out.clone(), dest, to, stop.clone())));
        }
    }
    producer.await;
    for s in senders {
        let _ = s.await;
    }
}

/// One MLLP connection to a receiver.
struct Conn {
    sock: tokio::net::TcpStream,
    framer: Framer,
}

impl Conn {
    async fn open(to: &str) -> std::io::Result<Self> {
        let sock = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(to))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        sock.set_nodelay(true)?;
        Ok(Self {
            sock,
            framer: Framer::default(),
        })
    }

    /// Sends one message and waits for one answer.
    async fn exchange(&mut self, text: &str, timeout: Duration) -> std::io::Result<String> {
        self.sock.write_all(&mllp::frame(text)).await?;
        let mut buf = vec![0u8; 16 * 1024];
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let n = tokio::time::timeout_at(deadline, self.sock.read(&mut buf))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time")
                })??;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed before answering",
                ));
            }
            for f in self.framer.push(&buf[..n]) {
                if let Frame::Message(m) = f {
                    return Ok(m);
                }
            }
        }
    }
}

/// Work on the sender's database connection, run off the async runtime.
type StoreJob = Box<dyn FnOnce(&Store) -> Option<ward_store::hl7::OutRow> + Send>;

async fn sender(out: Arc<Out>, dest: &'static str, to: String, stop: CancellationToken) {
    let mut conn: Option<Conn> = None;
    let mut backoff = Duration::from_millis(500);
    let mut last_heartbeat = tokio::time::Instant::now() - out.cfg.pcd04_heartbeat;
    let store = match Store::open(&out.db) {
        Ok(s) => Arc::new(Mutex::new(s)),
        Err(e) => {
            tracing::error!(error = %e, dest, "HL7 out: cannot open the database");
            return;
        }
    };
    let blocking = |f: StoreJob| {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.lock().ok().and_then(|s| f(&s)))
    };
    loop {
        if stop.is_cancelled() {
            return;
        }
        let next = blocking(Box::new(move |s| s.hl7_next(dest).ok().flatten()))
            .await
            .ok()
            .flatten();
        let heartbeat_due = dest == PCD04 && last_heartbeat.elapsed() >= out.cfg.pcd04_heartbeat;
        if next.is_none() && !heartbeat_due {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
            }
        }
        if conn.is_none() {
            match Conn::open(&to).await {
                Ok(c) => {
                    tracing::info!(dest, %to, "HL7 out connected");
                    out.set_link(dest, true, None);
                    conn = Some(c);
                    backoff = Duration::from_millis(500);
                }
                Err(e) => {
                    out.set_link(dest, false, Some(format!("{to}: {e}")));
                    out.counters.add("out_connect_failed", 1);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let (text, row) = match next {
            Some(row) => (row.msg.message.clone(), Some(row)),
            None => {
                let now = crate::clock::now_ms();
                let cid = format!("{}-HB-{now}", out.origin);
                let me = out.me();
                let h = Header {
                    me: &me,
                    receiver: &out.cfg.pcd04_receiver,
                    now: &hl7_time(now),
                    control_id: &cid,
                };
                (pcd::heartbeat(&h, &out.cfg.point_of_care), None)
            }
        };
        if let Some(r) = &row {
            let id = r.id;
            let _ = blocking(Box::new(move |s| {
                let _ = s.hl7_attempted(id);
                None
            }))
            .await;
        }
        let answer = tokio::select! {
            _ = stop.cancelled() => return,
            a = c.exchange(&text, out.cfg.ack_timeout) => a,
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(dest, %to, error = %e, "HL7 out: no answer; the message is sent again");
                out.set_link(dest, false, Some(format!("{to}: {e}")));
                out.counters.add("out_resent", 1);
                conn = None;
                continue;
            }
        };
        let Some(row) = row else {
            last_heartbeat = tokio::time::Instant::now();
            out.counters.add("out_heartbeats", 1);
            continue;
        };
        let read = Message::parse(&answer)
            .ok()
            .and_then(|m| ward_hl7::ack::read(&m));
        let (state, note) = match read {
            Some(a) if a.control_id != row.msg.control_id => {
                tracing::warn!(dest, expected = %row.msg.control_id, got = %a.control_id, "HL7 out: answer for another message; sent again");
                conn = None;
                continue;
            }
            Some(a) if a.code == AckCode::Accept => ("acked", "AA".to_string()),
            Some(a) => (
                "failed",
                format!(
                    "{} {}",
                    if a.code == AckCode::Error { "AE" } else { "AR" },
                    a.text
                ),
            ),
            None => (
                "failed",
                format!(
                    "unreadable answer: {}",
                    answer.chars().take(200).collect::<String>()
                ),
            ),
        };
        if state == "failed" {
            tracing::warn!(dest, control_id = %row.msg.control_id, answer = %note, "HL7 out: message refused; kept for IT (wardwatch hl7 failed)");
            out.counters.add(
                if dest == PCD01 {
                    "pcd01_refused"
                } else {
                    "pcd04_refused"
                },
                1,
            );
        } else {
            out.counters.add(
                if dest == PCD01 {
                    "pcd01_acked"
                } else {
                    "pcd04_acked"
                },
                1,
            );
        }
        let id = row.id;
        let now = crate::clock::now_ms();
        let _ = blocking(Box::new(move |s| {
            if let Err(e) = s.hl7_answered(id, state, &note, now) {
                tracing::error!(error = %e, "HL7 out: cannot record an answer; the message will be sent again");
            }
            None
        }))
        .await;
    }
}
