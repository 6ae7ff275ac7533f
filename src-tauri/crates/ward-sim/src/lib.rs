//! ward-sim: simulated bedside monitors that publish over real MQTT (rumqttc clients), used
//! by `make run`, the system tests and the benchmarks.
//!
//! Each simulated monitor is one MQTT connection publishing, per the topic contract
//! (docs/topics.md): ECG lead II at 250 Hz, pleth at 125 Hz and respiration at 62.5 Hz as
//! 25 packets a second per channel (QoS 0); HR, SpO2, RR, NIBP and temperature once a second
//! (QoS 1); a heartbeat every 2 s; a retained "online" status with an "offline" last will.
//!
//! Scripted scenarios change a bed's course: "bed 3 desaturates to 82 % at 30 s",
//! "bed 5 heart rate to 140 at 10 s", "bed 2 goes silent at 20 s".
//!
//! What it is not: a physiological model. Shapes are plausible enough to read on screen and
//! to exercise alarms; sample timing is exact, because tests compare stored sample counts with
//! what was sent ([`SimStats`]).
//!
//! Layout: `signal` (waveform and numeric generators), `scenario` (the script parser), this
//! file (monitors and the ward runner).

pub mod scenario;
pub mod signal;

pub use scenario::{Scenario, ScenarioKind};

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use signal::{Course, Generator};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use ward_model::codes::TraceKind;
use ward_model::{DeviceId, DeviceTopic, Status, TopicKind, VitalsMessage};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("scenario {text:?}: {reason}")]
    Scenario { text: String, reason: String },
    #[error("invalid simulator setting: {0}")]
    Config(String),
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub broker: SocketAddr,
    pub beds: usize,
    /// Device ids are `{prefix}-{NN}`, NN from 01.
    pub device_prefix: String,
    pub seed: u64,
    pub scenarios: Vec<Scenario>,
    /// Keep a copy of every waveform packet and vitals message sent (tests compare review
    /// queries with it). Off by default: a full ward sends 2 MB a minute.
    pub record: bool,
    /// Password every simulated monitor presents, with its device id as username (a broker
    /// without anonymous access). `None`: connect anonymously.
    pub password: Option<String>,
}

impl SimConfig {
    pub fn new(broker: SocketAddr, beds: usize) -> Self {
        Self {
            broker,
            beds,
            device_prefix: "sim".into(),
            seed: 7,
            scenarios: Vec::new(),
            record: false,
            password: None,
        }
    }
}

pub fn device_id(prefix: &str, bed: usize) -> String {
    format!("{prefix}-{bed:02}")
}

/// What the simulator published, per device and channel, so tests can compare with the store.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    /// (device, channel code) -> samples handed to the MQTT client.
    pub samples: BTreeMap<(String, u32), u64>,
    pub vitals_messages: BTreeMap<String, u64>,
    /// With [`SimConfig::record`]: every waveform packet handed to the client, per device.
    pub sent_waves: BTreeMap<String, Vec<ward_model::WavePacket>>,
    /// With [`SimConfig::record`]: every vitals message handed to the client, per device.
    pub sent_vitals: BTreeMap<String, Vec<VitalsMessage>>,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Runs the ward until `stop` turns true. Monitors disconnect cleanly (so no last will fires)
/// after everything they published has been written to the socket.
pub async fn run_ward(cfg: SimConfig, stop: watch::Receiver<bool>) -> Result<SimStats, SimError> {
    if cfg.beds == 0 || cfg.beds > 512 {
        return Err(SimError::Config(format!(
            "beds must be 1..=512, got {}",
            cfg.beds
        )));
    }
    for s in &cfg.scenarios {
        if s.bed == 0 || s.bed > cfg.beds {
            return Err(SimError::Config(format!(
                "scenario for bed {} but the ward has {} beds",
                s.bed, cfg.beds
            )));
        }
    }
    let stats = Arc::new(Mutex::new(SimStats::default()));
    let started_us = now_us();
    let mut tasks = Vec::new();
    for bed in 1..=cfg.beds {
        let scenarios: Vec<Scenario> = cfg
            .scenarios
            .iter()
            .filter(|s| s.bed == bed)
            .cloned()
            .collect();
        let monitor = Monitor {
            id: device_id(&cfg.device_prefix, bed),
            broker: cfg.broker,
            gen: Generator::new(
                cfg.seed.wrapping_add(bed as u64),
                Course::new(bed, scenarios),
            ),
            stats: stats.clone(),
            started_us,
            record: cfg.record,
            password: cfg.password.clone(),
        };
        tasks.push(tokio::spawn(monitor.run(stop.clone())));
    }
    for t in tasks {
        if let Err(e) = t.await {
            tracing::error!(error = %e, "simulated monitor task failed");
        }
    }
    let out = stats.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(out)
}

struct Monitor {
    id: String,
    broker: SocketAddr,
    gen: Generator,
    stats: Arc<Mutex<SimStats>>,
    started_us: i64,
    record: bool,
    password: Option<String>,
}

const TICK: Duration = Duration::from_millis(40);

impl Monitor {
    fn topic(&self, kind: TopicKind) -> String {
        match DeviceId::new(self.id.clone()) {
            Ok(d) => DeviceTopic::new(d, kind).render(),
            // Ids are built by `device_id` from a validated prefix; fall back to the plain form.
            Err(_) => format!(
                "{}/{}/{}",
                ward_model::topic::PREFIX,
                self.id,
                kind.as_str()
            ),
        }
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let status_topic = self.topic(TopicKind::Status);
        let offline = serde_json::to_vec(&Status {
            state: ward_model::DeviceState::Offline,
            model: None,
            ts: None,
        })
        .unwrap_or_default();
        let mut opts = MqttOptions::new(
            self.id.clone(),
            self.broker.ip().to_string(),
            self.broker.port(),
        );
        opts.set_keep_alive(Duration::from_secs(10));
        if let Some(p) = &self.password {
            opts.set_credentials(self.id.clone(), p.clone());
        }
        opts.set_last_will(LastWill::new(
            &status_topic,
            offline,
            QoS::AtLeastOnce,
            true,
        ));
        // Room for a few seconds of traffic so a brief broker stall does not block the tick.
        let (client, mut eventloop) = AsyncClient::new(opts, 512);

        // The event loop must be polled for anything to be sent. It ends when the client
        // disconnects, which happens only after every earlier request was written.
        let io = tokio::spawn(async move {
            let mut connected_once = false;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => connected_once = true,
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(e) => {
                        if !connected_once {
                            tracing::debug!(error = %e, "simulated monitor: broker not reachable yet");
                        } else {
                            tracing::warn!(error = %e, "simulated monitor: connection lost; reconnecting");
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });

        let online = serde_json::to_vec(&Status {
            state: ward_model::DeviceState::Online,
            model: Some("Wardwatch SimMon".into()),
            ts: Some(now_us() / 1000),
        })
        .unwrap_or_default();
        let _ = client
            .publish(&status_topic, QoS::AtLeastOnce, true, online)
            .await;

        let wave_topic = self.topic(TopicKind::Wave);
        let vitals_topic = self.topic(TopicKind::Vitals);
        let hb_topic = self.topic(TopicKind::Heartbeat);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_vitals_s = 0i64;
        let mut hb_seq = 0u64;
        let mut silent = false;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {}
            }
            let now = now_us();
            let elapsed_us = now - self.started_us;
            if self.gen.course.silent_at(elapsed_us) {
                // A monitor that dies: no DISCONNECT, so the broker publishes its will.
                silent = true;
                break;
            }
            for kind in [TraceKind::Ecg, TraceKind::Pleth, TraceKind::Resp] {
                if self.gen.course.channel_stopped(kind, elapsed_us) {
                    continue;
                }
                let packet = self.gen.wave_packet(kind, self.started_us, elapsed_us);
                if let Some(p) = packet {
                    let n = p.samples.len() as u64;
                    if client
                        .publish(&wave_topic, QoS::AtMostOnce, false, p.encode())
                        .await
                        .is_ok()
                    {
                        if let Ok(mut s) = self.stats.lock() {
                            *s.samples.entry((self.id.clone(), p.channel)).or_default() += n;
                            if self.record {
                                s.sent_waves.entry(self.id.clone()).or_default().push(p);
                            }
                        }
                    }
                }
            }
            let second = elapsed_us / 1_000_000;
            if second >= next_vitals_s {
                next_vitals_s = second + 1;
                let msg = VitalsMessage {
                    ts_ms: Some(now / 1000),
                    obs: self.gen.vitals(elapsed_us),
                };
                if client
                    .publish(&vitals_topic, QoS::AtLeastOnce, false, msg.to_json())
                    .await
                    .is_ok()
                {
                    if let Ok(mut s) = self.stats.lock() {
                        *s.vitals_messages.entry(self.id.clone()).or_default() += 1;
                        if self.record {
                            s.sent_vitals.entry(self.id.clone()).or_default().push(msg);
                        }
                    }
                }
                if second % 2 == 0 {
                    hb_seq += 1;
                    let hb = format!("{{\"seq\":{hb_seq},\"ts\":{}}}", now / 1000);
                    let _ = client.publish(&hb_topic, QoS::AtMostOnce, false, hb).await;
                }
            }
        }
        if silent {
            io.abort();
            return;
        }
        let _ = client.disconnect().await;
        if tokio::time::timeout(Duration::from_secs(5), io)
            .await
            .is_err()
        {
            tracing::warn!(device = %self.id, "simulated monitor did not finish sending within 5 s");
        }
    }
}
