//! Audible alarm signals (IEC 60601-1-8 Tables 3 and 4), synthesized as PCM.
//!
//! One burst per priority, repeated after the burst interval while the priority sounds:
//!
//! | | HIGH | MEDIUM | LOW | standard |
//! |---|---|---|---|---|
//! | pulses | 10 as 3+2, pause, 3+2 | 3 | 2 | 10 / 3 / 1-2 |
//! | pulse duration td | 125 ms | 200 ms | 200 ms | 75-200 / 125-250 / 125-250 |
//! | spacing ts (end to start) | 75 ms | 175 ms | 175 ms | 50-125 / 125-250 / 125-250 |
//! | pause after pulse 5 | 700 ms | - | - | 350-1300 |
//! | burst interval (end to start) | 4 s | 6 s | 16 s | 2.5-15 / 2.5-30 / >15 |
//! | fundamental | 698 Hz | 523 Hz | 440 Hz | 150-1000 |
//!
//! In the HIGH burst the gap between pulses 3 and 4 (and 8 and 9) is `2 ts + td`, the slot of
//! a missing pulse, which gives the "3 + 2" rhythm. Each pulse carries the fundamental and
//! harmonics 2-5 at -3, -6, -9, -12 dB (all within 300-4000 Hz and ±15 dB of the
//! fundamental), with linear rise and fall ramps whose 10-90 % time is 15 % of the pulse.
//! Different fundamentals per priority let a nurse tell them apart without counting.

use crate::Priority;
use std::f32::consts::TAU;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstSpec {
    pub fundamental_hz: f32,
    pub pulses: usize,
    pub pulse_ms: f32,
    pub spacing_ms: f32,
    /// HIGH only: the pause between pulse 5 and 6.
    pub pause_ms: f32,
    /// From the end of a burst's last pulse to the start of the next burst.
    pub interval_ms: f32,
}

/// Relative amplitudes of harmonics 1..=5.
pub const HARMONICS: [f32; 5] = [1.0, 0.708, 0.501, 0.355, 0.251];
/// Peak sample value: loud enough to be heard across a station, with headroom.
const PEAK: f32 = 0.7;

pub fn spec(p: Priority) -> BurstSpec {
    match p {
        Priority::High => BurstSpec {
            fundamental_hz: 698.0,
            pulses: 10,
            pulse_ms: 125.0,
            spacing_ms: 75.0,
            pause_ms: 700.0,
            interval_ms: 4000.0,
        },
        Priority::Medium => BurstSpec {
            fundamental_hz: 523.0,
            pulses: 3,
            pulse_ms: 200.0,
            spacing_ms: 175.0,
            pause_ms: 0.0,
            interval_ms: 6000.0,
        },
        Priority::Low => BurstSpec {
            fundamental_hz: 440.0,
            pulses: 2,
            pulse_ms: 200.0,
            spacing_ms: 175.0,
            pause_ms: 0.0,
            interval_ms: 16000.0,
        },
    }
}

/// The alarm-system-failure signal the sentinel plays when the station itself stops
/// (docs/alarms.md, "When the station fails"). It keeps HIGH's pulse pattern, so it is heard
/// as a HIGH priority signal, but at its own pitch (784 Hz, G5, above every patient signal
/// and the highest whose fifth harmonic stays under the standard's 4 kHz) and with bursts
/// closer together (2.6 s apart, just above the standard's 2.5 s minimum for HIGH; the
/// patient HIGH signal waits 4 s), so no one takes it for a patient's alarm.
pub fn failure_spec() -> BurstSpec {
    BurstSpec {
        fundamental_hz: 784.0,
        interval_ms: 2600.0,
        ..spec(Priority::High)
    }
}

impl BurstSpec {
    /// Start of each pulse in ms from the start of the burst.
    pub fn pulse_starts(&self) -> Vec<f32> {
        let mut v = Vec::with_capacity(self.pulses);
        let mut t = 0.0;
        for i in 0..self.pulses {
            v.push(t);
            let gap = match (self.pulses, i + 1) {
                // 3+2: after the 3rd and 8th pulse, the slot of a missing pulse.
                (10, 3) | (10, 8) => 2.0 * self.spacing_ms + self.pulse_ms,
                (10, 5) => self.pause_ms,
                _ => self.spacing_ms,
            };
            t += self.pulse_ms + gap;
        }
        v
    }
    pub fn burst_ms(&self) -> f32 {
        self.pulse_starts().last().copied().unwrap_or(0.0) + self.pulse_ms
    }
    pub fn period_ms(&self) -> f32 {
        self.burst_ms() + self.interval_ms
    }
}

/// Linear ramp length whose 10-90 % rise is 15 % of the pulse.
fn ramp_ms(s: &BurstSpec) -> f32 {
    0.15 * s.pulse_ms / 0.8
}

/// One burst of `p` at `rate` Hz, mono, without the trailing interval.
pub fn burst(p: Priority, rate: u32) -> Vec<f32> {
    burst_of(&spec(p), rate)
}

/// One burst of signal `s` at `rate` Hz, mono, without the trailing interval.
pub fn burst_of(s: &BurstSpec, rate: u32) -> Vec<f32> {
    let s = *s;
    let rate_f = rate as f32;
    // Room for the last pulse's fall ramp, which ends half a ramp after its nominal end.
    let n = ((s.burst_ms() + ramp_ms(&s)) / 1000.0 * rate_f).ceil() as usize;
    let mut out = vec![0.0f32; n];
    let norm: f32 = HARMONICS.iter().sum();
    let ramp = ramp_ms(&s) / 1000.0;
    let dur = s.pulse_ms / 1000.0;
    // `pulse_ms` is the effective duration, between the half-amplitude points of the rise and
    // the fall (how the standard measures it): each pulse is a ramp longer, and the whole
    // burst is shifted by half a ramp so the first pulse's rise fits.
    let full = dur + ramp;
    for start in s.pulse_starts() {
        let i0 = (start / 1000.0 * rate_f).round() as usize;
        let len = (full * rate_f).round() as usize;
        for (k, slot) in out.iter_mut().skip(i0).take(len).enumerate() {
            let t = k as f32 / rate_f;
            let env = (t / ramp).min((full - t) / ramp).clamp(0.0, 1.0);
            let mut v = 0.0;
            for (h, a) in HARMONICS.iter().enumerate() {
                v += a * (TAU * s.fundamental_hz * (h + 1) as f32 * t).sin();
            }
            *slot = PEAK * env * v / norm;
        }
    }
    out
}

/// One full period (burst then interval silence) of `p`, for looping playback.
pub fn period(p: Priority, rate: u32) -> Vec<f32> {
    period_of(&spec(p), rate)
}

/// One full period of signal `s`, for looping playback.
pub fn period_of(s: &BurstSpec, rate: u32) -> Vec<f32> {
    let mut v = burst_of(s, rate);
    let n = (s.period_ms() / 1000.0 * rate as f32).round() as usize;
    v.resize(n.max(v.len()), 0.0);
    v
}

/// Measuring PCM: pulse detection, rise time and spectrum, used by the tests on the
/// synthesized buffers and on what the station really played (captured through ALSA).
pub mod analysis {
    /// A detected pulse: start and end at half amplitude, in seconds, its peak envelope and
    /// its 10-90 % rise time.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Pulse {
        pub start_s: f32,
        pub end_s: f32,
        pub peak: f32,
        pub rise_s: f32,
    }

    /// Peak of |x| over a window of `win` samples centred on each sample: an envelope that
    /// follows the pulse shape for any tone above 1/win of the rate.
    pub fn envelope(x: &[f32], win: usize) -> Vec<f32> {
        let half = win / 2;
        (0..x.len())
            .map(|i| {
                let a = i.saturating_sub(half);
                let b = (i + half + 1).min(x.len());
                x[a..b].iter().fold(0.0f32, |m, v| m.max(v.abs()))
            })
            .collect()
    }

    /// Pulses found where the envelope exceeds half the loudest envelope.
    pub fn pulses(x: &[f32], rate: u32) -> Vec<Pulse> {
        let win = (rate as usize / 300).max(3); // 3.3 ms: longer than one period at 300 Hz
        let env = envelope(x, win);
        let max = env.iter().fold(0.0f32, |m, v| m.max(*v));
        if max <= 0.0 {
            return Vec::new();
        }
        let r = rate as f32;
        let mut out = Vec::new();
        let mut i = 0;
        while i < env.len() {
            if env[i] >= 0.5 * max {
                let s = i;
                while i < env.len() && env[i] >= 0.5 * max {
                    i += 1;
                }
                let e = i;
                let peak = env[s..e].iter().fold(0.0f32, |m, v| m.max(*v));
                // Rise: from 10 % to 90 % of this pulse's peak, searching back from the
                // half-amplitude point and forward to the peak.
                let mut a = s;
                while a > 0 && env[a] > 0.1 * peak {
                    a -= 1;
                }
                let mut b = s;
                while b < e && env[b] < 0.9 * peak {
                    b += 1;
                }
                out.push(Pulse {
                    start_s: s as f32 / r,
                    end_s: e as f32 / r,
                    peak,
                    rise_s: (b - a) as f32 / r,
                });
            } else {
                i += 1;
            }
        }
        out
    }

    /// Amplitude of the component at `f` Hz (Goertzel), relative units.
    pub fn level(x: &[f32], rate: u32, f: f32) -> f32 {
        let w = std::f32::consts::TAU * f / rate as f32;
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for v in x {
            let s0 = v + c * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        (s1 * s1 + s2 * s2 - c * s1 * s2).max(0.0).sqrt() / x.len().max(1) as f32
    }

    /// The strongest frequency between `lo` and `hi` Hz, in 1 Hz steps.
    pub fn dominant(x: &[f32], rate: u32, lo: u32, hi: u32) -> f32 {
        (lo..=hi)
            .map(|f| (f as f32, level(x, rate, f as f32)))
            .fold((0.0, 0.0), |best, c| if c.1 > best.1 { c } else { best })
            .0
    }

    pub fn db(a: f32, reference: f32) -> f32 {
        20.0 * (a / reference).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::analysis::*;
    use super::*;

    const RATE: u32 = 48_000;

    /// The standard's ranges (clinical.md §1), separate from the chosen values above, so a
    /// changed table is checked against the standard rather than against itself.
    struct Range {
        pulses: &'static [usize],
        td: (f32, f32),
        ts: (f32, f32),
        interval: (f32, f32),
    }
    fn standard(p: Priority) -> Range {
        match p {
            Priority::High => Range {
                pulses: &[10],
                td: (75.0, 200.0),
                ts: (50.0, 125.0),
                interval: (2500.0, 15000.0),
            },
            Priority::Medium => Range {
                pulses: &[3],
                td: (125.0, 250.0),
                ts: (125.0, 250.0),
                interval: (2500.0, 30000.0),
            },
            Priority::Low => Range {
                pulses: &[1, 2],
                td: (125.0, 250.0),
                ts: (125.0, 250.0),
                interval: (15000.0, f32::INFINITY),
            },
        }
    }

    fn within(v: f32, (lo, hi): (f32, f32), what: &str) {
        assert!(v >= lo && v <= hi, "{what} = {v:.1} not in {lo}..={hi}");
    }

    #[test]
    fn bursts_meet_the_standard_tables() {
        for p in [Priority::High, Priority::Medium, Priority::Low] {
            let std = standard(p);
            let x = period(p, RATE);
            let found = pulses(&x, RATE);
            assert!(
                std.pulses.contains(&found.len()),
                "{p:?}: {} pulses",
                found.len()
            );
            for (i, q) in found.iter().enumerate() {
                let td = (q.end_s - q.start_s) * 1000.0;
                within(td, std.td, &format!("{p:?} pulse {i} duration ms"));
                // The envelope detector widens a pulse by up to its window (3.3 ms).
                let want = spec(p).pulse_ms;
                within(
                    td,
                    (want - 2.0, want + 5.0),
                    &format!("{p:?} pulse {i} vs table"),
                );
                let rise = q.rise_s * 1000.0 / td;
                within(rise, (0.10, 0.20), &format!("{p:?} pulse {i} rise/td"));
                let rel = db(q.peak, found[0].peak).abs();
                within(
                    rel,
                    (0.0, 10.0),
                    &format!("{p:?} pulse {i} level vs first, dB"),
                );
            }
            for (i, w) in found.windows(2).enumerate() {
                let gap = (w[1].start_s - w[0].end_s) * 1000.0;
                let td = (w[0].end_s - w[0].start_s) * 1000.0;
                match (p, i + 1) {
                    (Priority::High, 5) => within(gap, (350.0, 1300.0), "HIGH pause 5-6 ms"),
                    (Priority::High, 3) | (Priority::High, 8) => {
                        // the missing-pulse slot: 2 ts + td
                        let ts = (found[1].start_s - found[0].end_s) * 1000.0;
                        within(
                            gap,
                            (2.0 * ts + td - 3.0, 2.0 * ts + td + 3.0),
                            "HIGH 3+2 gap",
                        )
                    }
                    _ => within(gap, std.ts, &format!("{p:?} spacing {i} ms")),
                }
            }
            // Burst interval: from the last pulse's end to the end of the period, where the
            // next burst starts.
            let last = found.last().unwrap();
            let interval = (x.len() as f32 / RATE as f32 - last.end_s) * 1000.0;
            within(interval, std.interval, &format!("{p:?} burst interval ms"));
        }
    }

    #[test]
    fn spectrum_has_fundamental_and_four_harmonics() {
        for p in [Priority::High, Priority::Medium, Priority::Low] {
            let x = burst(p, RATE);
            let q = pulses(&x, RATE)[0];
            let a = (q.start_s * RATE as f32) as usize + 1000;
            let b = (q.end_s * RATE as f32) as usize - 1000;
            let pulse = &x[a..b];
            let f0 = dominant(pulse, RATE, 150, 1000);
            within(f0, (150.0, 1000.0), &format!("{p:?} fundamental Hz"));
            assert!((f0 - spec(p).fundamental_hz).abs() <= 8.0, "{p:?} f0 {f0}");
            let l0 = level(pulse, RATE, f0);
            let mut in_band = 0;
            for k in 2..=5 {
                let f = f0 * k as f32;
                let rel = db(level(pulse, RATE, f), l0);
                if (300.0..=4000.0).contains(&f) && rel.abs() <= 15.0 {
                    in_band += 1;
                }
            }
            assert!(
                in_band >= 4,
                "{p:?}: {in_band} harmonics in band within 15 dB"
            );
            // And nothing much between the harmonics: the tone is what we think it is.
            let between = db(level(pulse, RATE, f0 * 1.5), l0);
            assert!(
                between < -25.0,
                "{p:?}: energy between harmonics {between} dB"
            );
        }
    }

    /// The sentinel's failure signal is a HIGH signal by every number of the standard, and
    /// differs from each patient signal in pitch and in rhythm.
    #[test]
    fn failure_signal_is_high_and_distinct() {
        let s = failure_spec();
        let std = standard(Priority::High);
        let x = period_of(&s, RATE);
        let found = pulses(&x, RATE);
        assert_eq!(found.len(), 10);
        for q in &found {
            within((q.end_s - q.start_s) * 1000.0, std.td, "failure pulse ms");
        }
        let last = found.last().unwrap();
        let interval = (x.len() as f32 / RATE as f32 - last.end_s) * 1000.0;
        within(interval, std.interval, "failure burst interval ms");
        let q = found[0];
        let pulse =
            &x[(q.start_s * RATE as f32) as usize + 1000..(q.end_s * RATE as f32) as usize - 1000];
        let f0 = dominant(pulse, RATE, 150, 1000);
        assert!((f0 - 784.0).abs() <= 8.0, "failure f0 {f0}");
        let l0 = level(pulse, RATE, f0);
        let in_band = (2..=5)
            .filter(|k| {
                db(level(pulse, RATE, f0 * *k as f32), l0).abs() <= 15.0 && f0 * *k as f32 <= 4000.0
            })
            .count();
        assert_eq!(in_band, 4, "harmonics 2-5 within 300-4000 Hz and 15 dB");
        for p in [Priority::High, Priority::Medium, Priority::Low] {
            let patient = spec(p);
            assert!(
                (patient.fundamental_hz - s.fundamental_hz).abs() >= 80.0,
                "{p:?} pitch"
            );
            assert_ne!(patient.period_ms(), s.period_ms(), "{p:?} rhythm");
        }
    }

    #[test]
    fn priorities_are_distinct_and_silence_is_silent() {
        let f: Vec<f32> = [Priority::High, Priority::Medium, Priority::Low]
            .iter()
            .map(|p| spec(*p).fundamental_hz)
            .collect();
        assert!(f[0] != f[1] && f[1] != f[2]);
        assert!(pulses(&[0.0; 4800], RATE).is_empty());
        let x = burst(Priority::High, RATE);
        assert!(x.iter().all(|v| v.abs() <= PEAK + 1e-3));
    }
}
