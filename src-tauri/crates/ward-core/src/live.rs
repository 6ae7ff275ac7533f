//! The live view of the ward: latest numerics, connection state and a few seconds of each
//! trace per bed, for the window and the headless summary.
//!
//! Overflow policy: trace rings keep the newest [`RING_SECONDS`] of samples and drop the
//! oldest; a viewer that falls behind skips ahead rather than lagging. Nothing here is the
//! record of care: the store is.
//!
//! Live samples leave as one binary frame per display tick ([`LiveState::frame`]):
//!
//! ```text
//! header (20 bytes, little-endian)
//!   0  4  magic "WWL1"
//!   4  4  frame sequence number (u32)
//!   8  8  station time, ms since the Unix epoch (f64)
//!  16  2  number of traces in this frame (u16)
//!  18  2  reserved (0)
//! per trace (12 + 4n bytes, so every sample array is 4-byte aligned)
//!   0  2  bed index (u16, position in the ward's bed list)
//!   2  1  trace kind (0 ECG, 1 pleth, 2 resp)
//!   3  1  reserved (0)
//!   4  4  sample rate in millihertz (u32)
//!   8  4  n, number of new samples (u32)
//!  12 4n  samples in physical units (f32: mV for ECG, dimensionless otherwise)
//! ```

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;
use ward_config::{BedConfig, Config};
use ward_model::codes::{known_vital, TraceKind};
use ward_model::{DeviceState, Observation, WavePacket};

pub const RING_SECONDS: f64 = 10.0;
pub const FRAME_MAGIC: &[u8; 4] = b"WWL1";
const TRACES: [TraceKind; 3] = [TraceKind::Ecg, TraceKind::Pleth, TraceKind::Resp];

struct TraceRing {
    rate_mhz: u32,
    samples: VecDeque<f32>,
    /// Samples ever pushed; viewers keep their own position against it.
    pushed: u64,
}

impl TraceRing {
    fn new() -> Self {
        Self {
            rate_mhz: 0,
            samples: VecDeque::new(),
            pushed: 0,
        }
    }
    fn push(&mut self, p: &WavePacket) {
        if self.rate_mhz != p.rate_mhz {
            self.samples.clear();
            self.rate_mhz = p.rate_mhz;
        }
        let cap = (p.rate_mhz as f64 / 1000.0 * RING_SECONDS).ceil() as usize;
        for s in &p.samples {
            self.samples.push_back(*s as f32 * p.scale + p.offset);
        }
        while self.samples.len() > cap {
            self.samples.pop_front();
        }
        self.pushed += p.samples.len() as u64;
    }
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct NumericView {
    pub code: u32,
    pub label: String,
    pub value: Option<f64>,
    pub unit: u32,
    pub unit_label: String,
    pub ts_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Connection {
    /// Never heard from since the station started.
    Never,
    /// Heard from within the liveness budget.
    Online,
    /// Nothing within the liveness budget.
    Silent,
    /// The device (or its last will) said it is offline.
    Offline,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BedView {
    pub index: usize,
    pub id: String,
    pub label: String,
    pub device: Option<String>,
    pub connection: Connection,
    pub last_seen_ms: Option<i64>,
    pub numerics: Vec<NumericView>,
    /// Who is in the bed (`None`: no patient admitted; the bed still monitors and alarms).
    pub patient: Option<crate::census::Admission>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct DeviceView {
    pub device: String,
    pub connection: Connection,
    pub last_seen_ms: Option<i64>,
}

#[derive(Default)]
struct DeviceLive {
    last_seen_ms: Option<i64>,
    said_offline: bool,
    numerics: BTreeMap<u32, NumericView>,
    traces: Option<[TraceRing; 3]>,
}

impl DeviceLive {
    fn connection(&self, now_ms: i64, silent_after: Duration) -> Connection {
        match self.last_seen_ms {
            None => Connection::Never,
            Some(_) if self.said_offline => Connection::Offline,
            Some(t) if now_ms - t > silent_after.as_millis() as i64 => Connection::Silent,
            Some(_) => Connection::Online,
        }
    }
}

pub struct LiveState {
    beds: Vec<BedConfig>,
    bed_of_device: HashMap<String, usize>,
    devices: HashMap<String, DeviceLive>,
    silent_after: Duration,
}

/// A viewer's position in every trace ring.
#[derive(Default)]
pub struct FrameCursor {
    seq: u32,
    seen: HashMap<(usize, u8), u64>,
}

impl LiveState {
    pub fn new(cfg: &Config) -> Self {
        let bed_of_device = cfg
            .beds
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.device.as_ref().map(|d| (d.to_string(), i)))
            .collect();
        Self {
            beds: cfg.beds.clone(),
            bed_of_device,
            devices: HashMap::new(),
            silent_after: cfg.device_silent,
        }
    }

    /// Admits `device` to `bed` (`Some`) or discharges the bed's device (`None`). The bed must
    /// be empty to admit, and the device at no other bed. Returns the device that left.
    pub fn set_device(
        &mut self,
        bed: &str,
        device: Option<ward_model::DeviceId>,
    ) -> Result<Option<ward_model::DeviceId>, String> {
        let i = self
            .beds
            .iter()
            .position(|b| b.id.as_str() == bed)
            .ok_or_else(|| format!("there is no bed {bed:?} in this unit"))?;
        if let Some(d) = &device {
            if let Some(current) = &self.beds[i].device {
                return Err(format!(
                    "{} has device {current}; discharge it first",
                    self.beds[i].label
                ));
            }
            if let Some(other) = self.bed_of(d.as_str()) {
                return Err(format!(
                    "device {d} is at {}; discharge it there first",
                    other.label
                ));
            }
            self.bed_of_device.insert(d.to_string(), i);
        }
        let old = std::mem::replace(&mut self.beds[i].device, device);
        if let Some(o) = &old {
            self.bed_of_device.remove(o.as_str());
        }
        Ok(old)
    }

    /// The bed a device is assigned to, by id.
    pub fn bed_of(&self, device: &str) -> Option<&BedConfig> {
        self.bed_of_device.get(device).map(|i| &self.beds[*i])
    }

    fn device(&mut self, device: &str) -> &mut DeviceLive {
        self.devices.entry(device.to_string()).or_default()
    }

    pub fn seen(&mut self, device: &str, now_ms: i64) {
        let d = self.device(device);
        d.last_seen_ms = Some(now_ms);
        d.said_offline = false;
    }

    pub fn status(&mut self, device: &str, state: DeviceState, now_ms: i64) {
        let d = self.device(device);
        d.last_seen_ms = Some(now_ms);
        d.said_offline = state == DeviceState::Offline;
    }

    pub fn vitals(&mut self, device: &str, obs: &[Observation], ts_ms: i64) {
        let d = self.device(device);
        for o in obs {
            let (label, unit_label) = match known_vital(o.code) {
                Some(k) => (k.label.to_string(), k.unit_label.to_string()),
                None => (o.code.to_string(), o.unit.to_string()),
            };
            d.numerics.insert(
                o.code,
                NumericView {
                    code: o.code,
                    label,
                    value: o.value,
                    unit: o.unit,
                    unit_label,
                    ts_ms,
                },
            );
        }
    }

    pub fn wave(&mut self, device: &str, p: &WavePacket) {
        let Some(kind) = TraceKind::from_code(p.channel) else {
            return;
        };
        let d = self.device(device);
        let rings = d
            .traces
            .get_or_insert_with(|| [TraceRing::new(), TraceRing::new(), TraceRing::new()]);
        rings[kind.index() as usize].push(p);
    }

    pub fn beds(&self, now_ms: i64) -> Vec<BedView> {
        self.beds
            .iter()
            .enumerate()
            .map(|(index, b)| {
                let live = b.device.as_ref().and_then(|d| self.devices.get(d.as_str()));
                BedView {
                    index,
                    id: b.id.to_string(),
                    label: b.label.clone(),
                    device: b.device.as_ref().map(|d| d.to_string()),
                    connection: live
                        .map(|d| d.connection(now_ms, self.silent_after))
                        .unwrap_or(Connection::Never),
                    last_seen_ms: live.and_then(|d| d.last_seen_ms),
                    numerics: live
                        .map(|d| d.numerics.values().cloned().collect())
                        .unwrap_or_default(),
                    patient: None,
                }
            })
            .collect()
    }

    /// Devices that published but are not assigned to any bed.
    pub fn unassigned(&self, now_ms: i64) -> Vec<DeviceView> {
        let mut v: Vec<DeviceView> = self
            .devices
            .iter()
            .filter(|(id, _)| !self.bed_of_device.contains_key(*id))
            .map(|(id, d)| DeviceView {
                device: id.clone(),
                connection: d.connection(now_ms, self.silent_after),
                last_seen_ms: d.last_seen_ms,
            })
            .collect();
        v.sort_by(|a, b| a.device.cmp(&b.device));
        v
    }

    /// Encodes the samples each trace gained since `cursor` last looked (see the module doc).
    pub fn frame(&self, cursor: &mut FrameCursor, now_ms: i64) -> Vec<u8> {
        cursor.seq = cursor.seq.wrapping_add(1);
        let mut body = Vec::new();
        let mut count: u16 = 0;
        for (bed_index, bed) in self.beds.iter().enumerate() {
            let Some(rings) = bed
                .device
                .as_ref()
                .and_then(|d| self.devices.get(d.as_str()))
                .and_then(|d| d.traces.as_ref())
            else {
                continue;
            };
            for kind in TRACES {
                let ring = &rings[kind.index() as usize];
                let key = (bed_index, kind.index());
                let seen = cursor.seen.get(&key).copied().unwrap_or(ring.pushed);
                let new = ring
                    .pushed
                    .saturating_sub(seen)
                    .min(ring.samples.len() as u64) as usize;
                cursor.seen.insert(key, ring.pushed);
                if new == 0 {
                    continue;
                }
                body.extend_from_slice(&(bed_index as u16).to_le_bytes());
                body.push(kind.index());
                body.push(0);
                body.extend_from_slice(&ring.rate_mhz.to_le_bytes());
                body.extend_from_slice(&(new as u32).to_le_bytes());
                for s in ring.samples.iter().skip(ring.samples.len() - new) {
                    body.extend_from_slice(&s.to_le_bytes());
                }
                count = count.saturating_add(1);
            }
        }
        let mut out = Vec::with_capacity(20 + body.len());
        out.extend_from_slice(FRAME_MAGIC);
        out.extend_from_slice(&cursor.seq.to_le_bytes());
        out.extend_from_slice(&(now_ms as f64).to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        let mut o = toml::Table::new();
        let mut s = toml::Table::new();
        s.insert("data_dir".into(), toml::Value::String("/tmp/x".into()));
        o.insert("station".into(), toml::Value::Table(s));
        Config::load(None, o).unwrap()
    }

    fn ecg(t0_us: i64, n: usize) -> WavePacket {
        WavePacket {
            channel: TraceKind::Ecg.code(),
            rate_mhz: 250_000,
            t0_us,
            scale: 0.5,
            offset: 0.0,
            unit: 0,
            samples: (0..n as i16).collect(),
        }
    }

    fn traces_in(frame: &[u8]) -> Vec<(u16, u8, Vec<f32>)> {
        assert_eq!(&frame[0..4], FRAME_MAGIC);
        let n = u16::from_le_bytes([frame[16], frame[17]]);
        let mut at = 20;
        let mut out = Vec::new();
        for _ in 0..n {
            let bed = u16::from_le_bytes([frame[at], frame[at + 1]]);
            let kind = frame[at + 2];
            let count = u32::from_le_bytes(frame[at + 8..at + 12].try_into().unwrap()) as usize;
            let s = frame[at + 12..at + 12 + 4 * count]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            out.push((bed, kind, s));
            at += 12 + 4 * count;
        }
        assert_eq!(at, frame.len());
        out
    }

    #[test]
    fn frames_carry_only_new_samples_per_viewer() {
        let mut live = LiveState::new(&cfg());
        let mut a = FrameCursor::default();
        live.wave("sim-03", &ecg(0, 4));
        // A viewer that starts now does not get history replayed as if it were live.
        assert!(traces_in(&live.frame(&mut a, 0)).is_empty());
        live.wave("sim-03", &ecg(16_000, 3));
        let t = traces_in(&live.frame(&mut a, 0));
        assert_eq!(t, vec![(2, 0, vec![0.0, 0.5, 1.0])]);
        assert!(traces_in(&live.frame(&mut a, 0)).is_empty());
    }

    #[test]
    fn unassigned_devices_are_listed_and_state_follows_liveness() {
        let mut live = LiveState::new(&cfg());
        live.seen("stray-1", 1_000);
        live.seen("sim-01", 1_000);
        assert_eq!(live.unassigned(2_000)[0].device, "stray-1");
        let beds = live.beds(2_000);
        assert_eq!(beds[0].connection, Connection::Online);
        assert_eq!(live.beds(7_000)[0].connection, Connection::Silent);
        live.status("sim-01", DeviceState::Offline, 7_000);
        assert_eq!(live.beds(7_000)[0].connection, Connection::Offline);
        assert_eq!(beds[1].connection, Connection::Never);
    }

    /// The golden live frame: written here, decoded by the window's own decoder in
    /// ui/src/frame.test.ts, so the two sides of the binary layout cannot drift while both
    /// suites pass. Two beds, all three kinds, known values; `make lint` regenerates it into a
    /// scratch directory and fails when the committed file differs.
    #[test]
    fn export_bindings_live_frame_golden() {
        let mut live = LiveState::new(&cfg());
        let mut cursor = FrameCursor::default();
        let wave = |kind: TraceKind, rate_mhz, samples: Vec<i16>| WavePacket {
            channel: kind.code(),
            rate_mhz,
            t0_us: 0,
            scale: 0.25,
            offset: -1.0,
            unit: 0,
            samples,
        };
        // Prime the cursor so the frame carries only what follows (as a live viewer sees).
        live.wave("sim-01", &wave(TraceKind::Ecg, 250_000, vec![0]));
        live.wave("sim-04", &wave(TraceKind::Resp, 62_500, vec![0]));
        live.wave("sim-04", &wave(TraceKind::Pleth, 125_000, vec![0]));
        live.frame(&mut cursor, 0);
        live.wave("sim-01", &wave(TraceKind::Ecg, 250_000, vec![0, 4, 8, -4]));
        live.wave("sim-04", &wave(TraceKind::Pleth, 125_000, vec![2, 6]));
        live.wave("sim-04", &wave(TraceKind::Resp, 62_500, vec![12]));
        let frame = live.frame(&mut cursor, 1_764_806_400_123);
        assert_eq!(
            traces_in(&frame),
            vec![
                (0, 0, vec![-1.0, 0.0, 1.0, -2.0]),
                (3, 1, vec![-0.5, 0.5]),
                (3, 2, vec![2.0]),
            ]
        );
        let dir = std::env::var_os("TS_RS_EXPORT_DIR").map(std::path::PathBuf::from);
        let dir = dir.unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../ui/src/gen")
        });
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("live-frame.golden.bin"), &frame).unwrap();
    }
}
