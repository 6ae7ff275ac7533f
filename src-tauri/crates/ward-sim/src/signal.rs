//! Waveform and numeric generators. Sample timing is derived from elapsed time and a running
//! sample count per channel, so a packet always carries exactly the samples due and packets
//! join without gaps, whatever the scheduler's jitter.

use crate::scenario::{Scenario, ScenarioKind, RAMP_S, WAVER_AMPLITUDE, WAVER_PERIOD_S};
use std::f64::consts::TAU;
use ward_model::codes::*;
use ward_model::{Observation, WavePacket};

/// A bed's baseline and its scripted changes.
#[derive(Debug, Clone)]
pub struct Course {
    hr0: f64,
    spo2_0: f64,
    rr0: f64,
    sys0: f64,
    dia0: f64,
    temp0: f64,
    scenarios: Vec<Scenario>,
}

fn ramp(base: f64, target: f64, at_s: f64, t_s: f64) -> f64 {
    if t_s < at_s {
        base
    } else {
        base + (target - base) * ((t_s - at_s) / RAMP_S).min(1.0)
    }
}

impl Course {
    pub fn new(bed: usize, scenarios: Vec<Scenario>) -> Self {
        let b = bed as f64;
        Self {
            hr0: 62.0 + ((bed * 7) % 30) as f64,
            spo2_0: 96.0 + (bed % 4) as f64,
            rr0: 12.0 + (bed % 8) as f64,
            sys0: 110.0 + ((bed * 5) % 30) as f64,
            dia0: 65.0 + ((bed * 3) % 20) as f64,
            temp0: 36.6 + (b % 5.0) * 0.1,
            scenarios,
        }
    }

    pub fn hr(&self, t_s: f64) -> f64 {
        self.scenarios.iter().fold(self.hr0, |v, s| match s.kind {
            ScenarioKind::HeartRate { to_bpm } => ramp(v, to_bpm, s.at_s, t_s),
            _ => v,
        })
    }

    pub fn spo2(&self, t_s: f64) -> f64 {
        self.scenarios
            .iter()
            .fold(self.spo2_0, |v, s| match s.kind {
                ScenarioKind::Desaturate { to_percent } => ramp(v, to_percent, s.at_s, t_s),
                ScenarioKind::Waver { around } if t_s >= s.at_s => {
                    let phase = (t_s - s.at_s) / WAVER_PERIOD_S * std::f64::consts::TAU;
                    around + WAVER_AMPLITUDE * phase.sin()
                }
                _ => v,
            })
    }

    /// No scenario changes breathing yet; the rate is the bed's baseline.
    pub fn rr(&self) -> f64 {
        self.rr0
    }

    /// Whether channel `kind` has stopped by `elapsed_us` ("bed 4 pleth stops at 5 s").
    pub fn channel_stopped(&self, kind: TraceKind, elapsed_us: i64) -> bool {
        let t_s = elapsed_us as f64 / 1e6;
        self.scenarios
            .iter()
            .any(|s| s.kind == ScenarioKind::ChannelStops { kind } && t_s >= s.at_s)
    }

    pub fn silent_at(&self, elapsed_us: i64) -> bool {
        let t_s = elapsed_us as f64 / 1e6;
        self.scenarios
            .iter()
            .any(|s| s.kind == ScenarioKind::Silent && t_s >= s.at_s)
    }
}

struct Channel {
    kind: TraceKind,
    rate_mhz: u32,
    scale: f32,
    unit: u32,
    sent: u64,
    /// Phase in beats (ECG, pleth) or breaths (resp), integrated so rate changes stay smooth.
    phase: f64,
}

pub struct Generator {
    pub course: Course,
    channels: [Channel; 3],
    rng: fastrand::Rng,
}

fn gauss(x: f64, mu: f64, sigma: f64) -> f64 {
    let d = (x - mu) / sigma;
    (-0.5 * d * d).exp()
}

/// Lead II PQRST over one beat, phase 0..1, in millivolts.
fn ecg_shape(p: f64) -> f64 {
    0.15 * gauss(p, 0.20, 0.025) - 0.10 * gauss(p, 0.355, 0.008) + 1.20 * gauss(p, 0.38, 0.010)
        - 0.25 * gauss(p, 0.405, 0.010)
        + 0.30 * gauss(p, 0.62, 0.045)
}

/// Plethysmograph: systolic upstroke shortly after the R wave, dicrotic notch, decay.
fn pleth_shape(p: f64) -> f64 {
    let x = (p - 0.45).rem_euclid(1.0);
    gauss(x, 0.15, 0.07) + 0.35 * gauss(x, 0.42, 0.09)
}

impl Generator {
    pub fn new(seed: u64, course: Course) -> Self {
        let ch = |kind, rate_mhz, scale, unit| Channel {
            kind,
            rate_mhz,
            scale,
            unit,
            sent: 0,
            phase: 0.0,
        };
        Self {
            course,
            channels: [
                ch(TraceKind::Ecg, 250_000, 0.005, UNIT_MV),
                ch(TraceKind::Pleth, 125_000, 0.001, UNIT_DIMLESS),
                ch(TraceKind::Resp, 62_500, 0.001, UNIT_DIMLESS),
            ],
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// The packet of samples that became due on `kind` up to `elapsed_us`, if any.
    pub fn wave_packet(
        &mut self,
        kind: TraceKind,
        started_us: i64,
        elapsed_us: i64,
    ) -> Option<WavePacket> {
        let course = self.course.clone();
        let rng = &mut self.rng;
        let ch = self.channels.iter_mut().find(|c| c.kind == kind)?;
        let rate_hz = ch.rate_mhz as f64 / 1000.0;
        let due = ((elapsed_us.max(0) as f64) * rate_hz / 1e6).floor() as u64;
        let n = due
            .saturating_sub(ch.sent)
            .min(ward_model::wave::MAX_SAMPLES as u64) as usize;
        if n == 0 {
            return None;
        }
        let period_us = 1e6 / rate_hz;
        let t0_us = started_us + (ch.sent as f64 * period_us).round() as i64;
        let mut samples = Vec::with_capacity(n);
        for i in 0..n {
            let t_s = (ch.sent + i as u64) as f64 / rate_hz;
            let per_s = match kind {
                TraceKind::Resp => course.rr() / 60.0,
                _ => course.hr(t_s) / 60.0,
            };
            ch.phase = (ch.phase + per_s / rate_hz).rem_euclid(1.0);
            let v = match kind {
                TraceKind::Ecg => ecg_shape(ch.phase) + 0.01 * (rng.f64() - 0.5),
                TraceKind::Pleth => pleth_shape(ch.phase),
                TraceKind::Resp => 0.5 * (TAU * ch.phase).sin(),
            };
            let raw = (v / ch.scale as f64)
                .round()
                .clamp(i16::MIN as f64, i16::MAX as f64) as i16;
            samples.push(raw);
        }
        ch.sent += n as u64;
        Some(WavePacket {
            channel: kind.code(),
            rate_mhz: ch.rate_mhz,
            t0_us,
            scale: ch.scale,
            offset: 0.0,
            unit: ch.unit,
            samples,
        })
    }

    pub fn vitals(&mut self, elapsed_us: i64) -> Vec<Observation> {
        let t = elapsed_us as f64 / 1e6;
        let c = &self.course;
        let jitter = |rng: &mut fastrand::Rng, amp: f64| (rng.f64() - 0.5) * 2.0 * amp;
        let hr = (c.hr(t) + jitter(&mut self.rng, 1.0)).round();
        let spo2 = (c.spo2(t) + jitter(&mut self.rng, 0.4)).round().min(100.0);
        let rr = (c.rr() + jitter(&mut self.rng, 0.5)).round();
        let sys = c.sys0.round();
        let dia = c.dia0.round();
        let mean = ((sys + 2.0 * dia) / 3.0).round();
        let temp = (c.temp0 * 10.0).round() / 10.0;
        let o = |code, unit, value| Observation {
            code,
            unit,
            value: Some(value),
        };
        vec![
            o(MDC_ECG_HEART_RATE, UNIT_BPM, hr),
            o(MDC_PULS_OXIM_SAT_O2, UNIT_PERCENT, spo2),
            o(MDC_RESP_RATE, UNIT_RESP_PER_MIN, rr),
            o(MDC_PRESS_BLD_NONINV_SYS, UNIT_MMHG, sys),
            o(MDC_PRESS_BLD_NONINV_DIA, UNIT_MMHG, dia),
            o(MDC_PRESS_BLD_NONINV_MEAN, UNIT_MMHG, mean),
            o(MDC_TEMP_BODY, UNIT_DEGC, temp),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_contiguous_and_exact_per_rate() {
        let mut g = Generator::new(1, Course::new(1, vec![]));
        let start = 1_000_000_000i64;
        for kind in [TraceKind::Ecg, TraceKind::Pleth, TraceKind::Resp] {
            let mut next_t0 = start;
            let mut total = 0usize;
            for tick in 1..=50i64 {
                if let Some(p) = g.wave_packet(kind, start, tick * 40_000) {
                    assert_eq!(p.t0_us, next_t0, "{kind:?} tick {tick}");
                    next_t0 = p.end_us();
                    total += p.samples.len();
                }
            }
            let expected = match kind {
                TraceKind::Ecg => 500,
                TraceKind::Pleth => 250,
                TraceKind::Resp => 125,
            };
            assert_eq!(total, expected, "{kind:?}");
        }
    }

    #[test]
    fn ecg_has_r_waves_at_the_heart_rate() {
        let mut g = Generator::new(1, Course::new(1, vec![]));
        let hr = g.course.hr(0.0);
        let p = g.wave_packet(TraceKind::Ecg, 0, 10_000_000).unwrap();
        let mv: Vec<f64> = p
            .samples
            .iter()
            .map(|s| *s as f64 * p.scale as f64)
            .collect();
        // Count upward crossings of 0.6 mV: one per R wave.
        let beats = mv.windows(2).filter(|w| w[0] < 0.6 && w[1] >= 0.6).count() as f64;
        let expected = hr / 6.0;
        assert!(
            (beats - expected).abs() <= 1.0,
            "{beats} beats in 10 s at {hr} bpm"
        );
    }

    #[test]
    fn desaturation_scenario_reaches_its_target() {
        let s = Scenario::parse("bed 3 desaturates to 82 % at 30 s").unwrap();
        let c = Course::new(3, vec![s]);
        assert!(c.spo2(29.0) > 95.0);
        assert_eq!(c.spo2(45.0), 82.0);
        let mut g = Generator::new(3, c);
        let obs = g.vitals(50_000_000);
        let spo2 = obs.iter().find(|o| o.code == MDC_PULS_OXIM_SAT_O2).unwrap();
        assert!((spo2.value.unwrap() - 82.0).abs() <= 1.0);
        // Every numeric the simulator sends must pass the contract's own validation.
        let json = ward_model::VitalsMessage { ts_ms: None, obs }.to_json();
        ward_model::VitalsMessage::parse(json.as_bytes()).unwrap();
    }

    #[test]
    fn a_stopped_channel_stops_only_itself_and_only_from_its_time() {
        let s = Scenario::parse("bed 4 pleth stops at 5 s").unwrap();
        let c = Course::new(4, vec![s]);
        assert!(!c.channel_stopped(TraceKind::Pleth, 4_999_999));
        assert!(c.channel_stopped(TraceKind::Pleth, 5_000_000));
        assert!(!c.channel_stopped(TraceKind::Ecg, 60_000_000));
        assert!(!c.silent_at(60_000_000));
    }
}
