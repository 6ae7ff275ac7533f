//! Groups waveform packets (25 a second per channel) into one-second chunks, the unit the
//! store writes and review reads. Pure: time comes in with the packets and the flush calls.
//!
//! A chunk is a run of contiguous samples of one device and channel at one rate, scale and
//! offset. It closes when it holds a second of samples, when the next packet does not follow
//! on (a gap or an overlap: the device restarted or lost packets), when the signal's
//! parameters change, or when it has been idle for a while (device went quiet).

use std::collections::HashMap;
use ward_model::WavePacket;

#[derive(Debug, Clone, PartialEq)]
pub struct WaveChunk {
    pub device: String,
    pub bed: Option<String>,
    pub channel: u32,
    pub t0_us: i64,
    pub rate_mhz: u32,
    pub scale: f32,
    pub offset: f32,
    pub unit: u32,
    pub samples: Vec<i16>,
}

impl WaveChunk {
    fn period_us(&self) -> f64 {
        1e9 / self.rate_mhz as f64
    }
    pub fn end_us(&self) -> i64 {
        self.t0_us + (self.samples.len() as f64 * self.period_us()).round() as i64
    }
    fn duration_us(&self) -> f64 {
        self.samples.len() as f64 * self.period_us()
    }
}

#[derive(Default)]
pub struct Chunker {
    open: HashMap<(String, u32), WaveChunk>,
}

/// A chunk closes once it covers this much signal.
const CHUNK_US: f64 = 1_000_000.0;

impl Chunker {
    /// Adds a packet; returns chunks that this packet closed.
    pub fn push(&mut self, device: &str, bed: Option<&str>, p: &WavePacket) -> Vec<WaveChunk> {
        let mut done = Vec::new();
        let key = (device.to_string(), p.channel);
        if let Some(open) = self.open.get_mut(&key) {
            // Half a sample of slack: device clocks stamp packets in whole microseconds.
            let slack = (open.period_us() / 2.0).ceil() as i64;
            let follows = (p.t0_us - open.end_us()).abs() <= slack;
            let same_signal = open.rate_mhz == p.rate_mhz
                && open.scale == p.scale
                && open.offset == p.offset
                && open.unit == p.unit
                && open.bed.as_deref() == bed;
            if follows && same_signal {
                open.samples.extend_from_slice(&p.samples);
                if open.duration_us() >= CHUNK_US {
                    if let Some(c) = self.open.remove(&key) {
                        done.push(c);
                    }
                }
                return done;
            }
            if let Some(c) = self.open.remove(&key) {
                done.push(c);
            }
        }
        let chunk = WaveChunk {
            device: device.to_string(),
            bed: bed.map(str::to_string),
            channel: p.channel,
            t0_us: p.t0_us,
            rate_mhz: p.rate_mhz,
            scale: p.scale,
            offset: p.offset,
            unit: p.unit,
            samples: p.samples.clone(),
        };
        if chunk.duration_us() >= CHUNK_US {
            done.push(chunk);
        } else {
            self.open.insert(key, chunk);
        }
        done
    }

    /// Closes chunks whose last sample is older than `idle_us` before `now_us`, so a device
    /// that stops sending does not keep its last second in memory only.
    pub fn flush_idle(&mut self, now_us: i64, idle_us: i64) -> Vec<WaveChunk> {
        let stale: Vec<(String, u32)> = self
            .open
            .iter()
            .filter(|(_, c)| now_us - c.end_us() > idle_us)
            .map(|(k, _)| k.clone())
            .collect();
        stale
            .into_iter()
            .filter_map(|k| self.open.remove(&k))
            .collect()
    }

    /// Closes everything (shutdown).
    pub fn flush_all(&mut self) -> Vec<WaveChunk> {
        self.open.drain().map(|(_, c)| c).collect()
    }

    /// Whether samples of this device and channel wait in an open chunk.
    pub fn is_open(&self, device: &str, channel: u32) -> bool {
        self.open.contains_key(&(device.to_string(), channel))
    }

    pub fn open_chunks(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(t0_us: i64, n: usize) -> WavePacket {
        WavePacket {
            channel: 131_330,
            rate_mhz: 250_000,
            t0_us,
            scale: 0.005,
            offset: 0.0,
            unit: 266_418,
            samples: vec![1; n],
        }
    }

    #[test]
    fn twenty_five_packets_make_one_second() {
        let mut c = Chunker::default();
        let mut closed = Vec::new();
        for i in 0..50 {
            closed.extend(c.push("m", None, &pkt(i * 40_000, 10)));
        }
        assert_eq!(closed.len(), 2);
        assert_eq!(closed[0].samples.len(), 250);
        assert_eq!(closed[1].t0_us, 1_000_000);
        assert_eq!(c.open_chunks(), 0);
    }

    #[test]
    fn a_gap_closes_the_chunk_and_nothing_is_lost() {
        let mut c = Chunker::default();
        let mut closed = c.push("m", None, &pkt(0, 10));
        closed.extend(c.push("m", None, &pkt(40_000, 10)));
        // Two packets missing: next starts at 160 ms instead of 80 ms.
        closed.extend(c.push("m", None, &pkt(160_000, 10)));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].samples.len(), 20);
        let rest = c.flush_all();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].t0_us, 160_000);
    }

    #[test]
    fn non_integer_rates_stay_contiguous() {
        // 62.5 Hz resp: 16 ms per sample, 2.5 samples per 40 ms, so packets alternate 2 and 3.
        let mut c = Chunker::default();
        let mut t = 0i64;
        let mut closed = Vec::new();
        for i in 0..25 {
            let n = if i % 2 == 0 { 3 } else { 2 };
            let mut p = pkt(t, n);
            p.rate_mhz = 62_500;
            p.channel = 151_552;
            t = p.end_us();
            closed.extend(c.push("m", None, &p));
        }
        closed.extend(c.flush_all());
        let total: usize = closed.iter().map(|k| k.samples.len()).sum();
        assert_eq!(total, 63);
        assert_eq!(closed[0].t0_us, 0);
    }

    #[test]
    fn idle_flush_only_takes_quiet_channels() {
        let mut c = Chunker::default();
        c.push("quiet", None, &pkt(0, 10));
        c.push("busy", None, &pkt(1_960_000, 10));
        let flushed = c.flush_idle(2_000_000, 1_500_000);
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].device, "quiet");
        assert_eq!(c.open_chunks(), 1);
    }
}
