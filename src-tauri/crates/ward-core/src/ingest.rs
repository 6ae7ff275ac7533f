//! Ingest: turns broker messages into model values and hands them to the live view and the
//! store writer. Bad input is counted by kind, logged with the device and the reason, and
//! dropped; it never stops ingest. Logging is limited to [`WARN_BURST`] lines per kind per
//! [`WARN_WINDOW`] (then one line with the number suppressed), so a device stuck sending
//! garbage at 25 Hz cannot flood the log, while occasional bad messages are each logged.

use crate::alarms::Input as AlarmInput;
use crate::clock::now_ms;
use crate::live::LiveState;
use crate::writer::Writer;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use ward_broker::{AckHold, Message};
use ward_model::{
    DeviceAlarm, DeviceAlarmState, DeviceState, DeviceTopic, Heartbeat, ModelError, Status,
    TopicKind, VitalsMessage, WavePacket,
};
use ward_store::{Chunker, DeviceEvent, Record, VitalRow};

/// Per-kind counters of what ingest accepted and refused.
pub type IngestCounters = Arc<Mutex<BTreeMap<&'static str, u64>>>;

const WARN_BURST: u64 = 10;
const WARN_WINDOW: Duration = Duration::from_secs(10);

/// Waveform packets count as signs of life for the alarm engine, but at 75 packets/s per bed
/// one "seen" per device per this interval is plenty against a budget of seconds.
const SEEN_EVERY: Duration = Duration::from_millis(250);

/// Waveform chunks of a device that stopped sending are written after this much quiet.
const IDLE_CHUNK_US: i64 = 1_500_000;

/// A payload that passed the contract, by topic kind.
enum Parsed {
    Vitals(VitalsMessage),
    Wave(WavePacket),
    Status(Status),
    Heartbeat,
    Alarm(DeviceAlarm),
}

pub(crate) struct Ingest {
    pub live: Arc<Mutex<LiveState>>,
    pub writer: Arc<Writer>,
    pub counters: IngestCounters,
    alarms: std::sync::mpsc::Sender<AlarmInput>,
    /// This station's id, for the audit events of device status changes.
    origin: String,
    seen_sent: HashMap<String, Instant>,
    chunker: Chunker,
    /// Per kind: window start, lines logged in it, lines suppressed in it.
    last_warn: HashMap<&'static str, (Instant, u64, u64)>,
    /// Acknowledgement holds of QoS 1/2 waveform packets whose samples wait in an open chunk
    /// (by device and channel): they go to the writer behind the chunk once it closes.
    wave_holds: HashMap<(String, u32), Vec<AckHold>>,
}

impl Ingest {
    pub fn new(
        live: Arc<Mutex<LiveState>>,
        writer: Arc<Writer>,
        counters: IngestCounters,
        alarms: std::sync::mpsc::Sender<AlarmInput>,
        origin: String,
    ) -> Self {
        Self {
            live,
            writer,
            counters,
            alarms,
            origin,
            seen_sent: HashMap::new(),
            chunker: Chunker::default(),
            last_warn: HashMap::new(),
            wave_holds: HashMap::new(),
        }
    }

    fn count(&self, what: &'static str) {
        if let Ok(mut c) = self.counters.lock() {
            *c.entry(what).or_default() += 1;
        }
    }

    fn refuse(&mut self, topic: &str, e: &ModelError) {
        let kind = e.kind();
        self.count(kind);
        let now = Instant::now();
        let entry = self.last_warn.entry(kind).or_insert((now, 0, 0));
        if now.duration_since(entry.0) >= WARN_WINDOW {
            if entry.2 > 0 {
                tracing::warn!(
                    kind,
                    suppressed = entry.2,
                    "further refusals of this kind were not logged"
                );
            }
            *entry = (now, 0, 0);
        }
        if entry.1 < WARN_BURST {
            entry.1 += 1;
            tracing::warn!(topic = %topic.escape_debug(), kind, error = %e, "message refused");
        } else {
            entry.2 += 1;
        }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Message>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => self.handle(&m),
                    None => break,
                },
                _ = tick.tick() => {
                    for c in self.chunker.flush_idle(now_ms() * 1000, IDLE_CHUNK_US) {
                        self.write_chunk(c);
                    }
                }
                _ = stop.cancelled() => break,
            }
        }
        // Shutdown: whatever the broker already handed over is still ingested.
        while let Ok(m) = rx.try_recv() {
            self.handle(&m);
        }
        for c in self.chunker.flush_all() {
            self.write_chunk(c);
        }
    }

    /// Queues a closed chunk, then the holds of the packets whose samples it carries.
    fn write_chunk(&mut self, c: ward_store::WaveChunk) {
        let key = (c.device.clone(), c.channel);
        self.writer.send(Record::Wave(c));
        for h in self.wave_holds.remove(&key).unwrap_or_default() {
            self.writer.hold(h);
        }
    }

    pub fn handle(&mut self, m: &Message) {
        let topic = match DeviceTopic::parse(&m.topic) {
            Ok(t) => t,
            Err(e) => return self.refuse(&m.topic, &e),
        };
        let parsed = match topic.kind {
            TopicKind::Vitals => VitalsMessage::parse(&m.payload).map(Parsed::Vitals),
            TopicKind::Wave => WavePacket::parse(&m.payload).map(Parsed::Wave),
            TopicKind::Status => Status::parse(&m.payload).map(Parsed::Status),
            TopicKind::Heartbeat => Heartbeat::parse(&m.payload).map(|_| Parsed::Heartbeat),
            TopicKind::Alarm => DeviceAlarm::parse(&m.payload).map(Parsed::Alarm),
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => return self.refuse(&m.topic, &e),
        };
        self.count(topic.kind.as_str());
        let device = topic.device.as_str();
        let now = now_ms();

        // One lock per message: the bed lookup and the live update together. A poisoned lock
        // costs the live view, never the record: the data is still stored, without its bed.
        let bed = match self.live.lock() {
            Ok(mut l) => {
                match &parsed {
                    Parsed::Status(s) => l.status(device, s.state, now),
                    other => {
                        l.seen(device, now);
                        match other {
                            Parsed::Vitals(v) => l.vitals(device, &v.obs, v.ts_ms.unwrap_or(now)),
                            Parsed::Wave(p) => l.wave(device, p),
                            // Device alarms belong to the alarm engine (fed below).
                            Parsed::Alarm(_) | Parsed::Status(_) | Parsed::Heartbeat => {}
                        }
                    }
                }
                l.bed_of(device).map(|b| b.id.to_string())
            }
            Err(_) => None,
        };

        if let Some(bed) = &bed {
            self.feed_alarms(device, bed, &parsed);
        }

        match parsed {
            Parsed::Vitals(v) => {
                let ts = v.ts_ms.unwrap_or(now);
                for o in v.obs {
                    self.writer.send(Record::Vital(VitalRow {
                        ts_ms: ts,
                        device: device.to_string(),
                        bed: bed.clone(),
                        code: o.code,
                        unit: o.unit,
                        value: o.value,
                    }));
                }
            }
            Parsed::Wave(p) => {
                for c in self.chunker.push(device, bed.as_deref(), &p) {
                    self.write_chunk(c);
                }
                if let Some(h) = &m.hold {
                    if self.chunker.is_open(device, p.channel) {
                        // Its samples are in the open chunk: acknowledged once that is
                        // written (up to a second of signal later).
                        self.wave_holds
                            .entry((device.to_string(), p.channel))
                            .or_default()
                            .push(h.clone());
                    } else {
                        self.writer.hold(h.clone());
                    }
                }
                return;
            }
            Parsed::Status(s) => {
                self.event(now, device, &bed, "status", &m.payload);
                // Connects and disconnects (the will included) are audit events.
                let kind = match s.state {
                    DeviceState::Online => "device.online",
                    DeviceState::Offline => "device.offline",
                };
                let audit = ward_store::AuditEvent {
                    origin: self.origin.clone(),
                    t_ms: now,
                    actor: device.to_string(),
                    kind: kind.into(),
                    bed: bed.clone(),
                    detail: String::from_utf8_lossy(&m.payload).into_owned(),
                };
                if self.alarms.send(AlarmInput::Audit(audit)).is_err() {
                    self.count("alarm_driver_gone");
                }
            }
            Parsed::Alarm(_) => self.event(now, device, &bed, "device_alarm", &m.payload),
            Parsed::Heartbeat => {}
        }
        // Behind the message's records: the device is acknowledged once they are committed.
        if let Some(h) = &m.hold {
            self.writer.hold(h.clone());
        }
    }

    /// What the alarm engine needs from a message of a device at a bed. The channel is
    /// unbounded: alarm inputs are never dropped.
    fn feed_alarms(&mut self, device: &str, bed: &str, parsed: &Parsed) {
        let bed = bed.to_string();
        let input = match parsed {
            Parsed::Vitals(v) => AlarmInput::Vitals {
                bed,
                obs: v.obs.iter().map(|o| (o.code, o.value)).collect(),
            },
            Parsed::Status(s) if s.state == DeviceState::Offline => AlarmInput::Offline { bed },
            Parsed::Alarm(a) => AlarmInput::DeviceAlarm {
                bed,
                id: a.id.clone(),
                label: a.condition.clone(),
                priority: a.priority,
                active: a.state == DeviceAlarmState::Active,
                value: a.value,
            },
            Parsed::Wave(_) | Parsed::Heartbeat | Parsed::Status(_) => {
                let now = Instant::now();
                match self.seen_sent.get(device) {
                    Some(t)
                        if now.duration_since(*t) < SEEN_EVERY
                            && matches!(parsed, Parsed::Wave(_)) =>
                    {
                        return
                    }
                    _ => {}
                }
                self.seen_sent.insert(device.to_string(), now);
                AlarmInput::Seen { bed }
            }
        };
        if self.alarms.send(input).is_err() {
            self.count("alarm_driver_gone");
        }
    }

    fn event(&self, ts_ms: i64, device: &str, bed: &Option<String>, kind: &str, payload: &[u8]) {
        self.writer.send(Record::Event(DeviceEvent {
            ts_ms,
            device: device.to_string(),
            bed: bed.clone(),
            kind: kind.to_string(),
            // Already parsed as JSON, so this is valid UTF-8 in practice; lossy keeps it total.
            detail: String::from_utf8_lossy(payload).into_owned(),
        }));
    }
}
