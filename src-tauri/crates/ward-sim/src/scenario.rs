//! Scenario scripts, one sentence each:
//!
//! ```text
//! bed 3 desaturates to 82 % at 30 s
//! bed 5 heart rate to 140 at 10 s
//! bed 2 goes silent at 20 s
//! bed 4 pleth stops at 5 s
//! bed 6 spo2 wavers around 89 % at 0 s
//! ```
//!
//! "goes silent" is a monitor that dies (no more messages, its will is published); "<ecg |
//! pleth | resp> stops" is one channel that ends (a sensor taken off) while the monitor keeps
//! sending the rest.
//!
//! Changes ramp over [`RAMP_S`] seconds from the bed's baseline, as a real desaturation does.
//! "wavers around" is the noisy patient of alarm-burden studies: SpO2 swings
//! ±[`WAVER_AMPLITUDE`] % around the value every [`WAVER_PERIOD_S`] seconds, so a limit near
//! it alarms again and again.

use crate::SimError;
use ward_model::codes::TraceKind;

pub const RAMP_S: f64 = 10.0;
pub const WAVER_PERIOD_S: f64 = 20.0;
pub const WAVER_AMPLITUDE: f64 = 4.0;

#[derive(Debug, Clone, PartialEq)]
pub enum ScenarioKind {
    Desaturate {
        to_percent: f64,
    },
    /// SpO2 swings around `around` (a noisy patient).
    Waver {
        around: f64,
    },
    HeartRate {
        to_bpm: f64,
    },
    Silent,
    ChannelStops {
        kind: TraceKind,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// 1-based bed number.
    pub bed: usize,
    pub at_s: f64,
    pub kind: ScenarioKind,
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Self, SimError> {
        let fail = |reason: &str| SimError::Scenario {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let words: Vec<String> = text
            .split_whitespace()
            .map(|w| w.to_ascii_lowercase())
            .collect();
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let num = |s: &str, what: &str| -> Result<f64, SimError> {
            s.trim_end_matches(['%', 's'])
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| fail(&format!("{what} {s:?} is not a number")))
        };
        if w.len() < 2 || w[0] != "bed" {
            return Err(fail("must start with \"bed <n>\""));
        }
        let bed = w[1]
            .parse::<usize>()
            .map_err(|_| fail("bed number must be a whole number"))?;
        // The time is always the last "at <t> s" (or "at <t>s").
        let at_pos = w
            .iter()
            .rposition(|x| *x == "at")
            .ok_or_else(|| fail("missing \"at <seconds> s\""))?;
        let at_s = num(
            w.get(at_pos + 1)
                .ok_or_else(|| fail("missing time after \"at\""))?,
            "time",
        )?;
        if at_s < 0.0 {
            return Err(fail("time must not be negative"));
        }
        let middle = &w[2..at_pos];
        let kind =
            match middle {
                ["desaturates", "to", v, ..] => {
                    let to_percent = num(v, "SpO2")?;
                    if !(50.0..=100.0).contains(&to_percent) {
                        return Err(fail("SpO2 target must be within 50..=100 %"));
                    }
                    ScenarioKind::Desaturate { to_percent }
                }
                ["heart", "rate", "to", v, ..] => {
                    let to_bpm = num(v, "heart rate")?;
                    if !(20.0..=250.0).contains(&to_bpm) {
                        return Err(fail("heart rate target must be within 20..=250 bpm"));
                    }
                    ScenarioKind::HeartRate { to_bpm }
                }
                ["spo2", "wavers", "around", v, ..] => {
                    let around = num(v, "SpO2")?;
                    if !(60.0..=96.0).contains(&around) {
                        return Err(fail("SpO2 to waver around must be within 60..=96 %"));
                    }
                    ScenarioKind::Waver { around }
                }
                ["goes", "silent"] => ScenarioKind::Silent,
                ["ecg", "stops"] => ScenarioKind::ChannelStops { kind: TraceKind::Ecg },
                ["pleth", "stops"] => ScenarioKind::ChannelStops { kind: TraceKind::Pleth },
                ["resp", "stops"] => ScenarioKind::ChannelStops { kind: TraceKind::Resp },
                _ => return Err(fail(
                    "expected \"desaturates to <x> %\", \"heart rate to <x>\", \"spo2 wavers around <x> %\", \"goes silent\" or \"<ecg|pleth|resp> stops\"",
                )),
            };
        Ok(Self { bed, at_s, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!(
            Scenario::parse("bed 3 desaturates to 82 % at 30 s").unwrap(),
            Scenario {
                bed: 3,
                at_s: 30.0,
                kind: ScenarioKind::Desaturate { to_percent: 82.0 }
            }
        );
        assert_eq!(
            Scenario::parse("Bed 5 heart rate to 140 at 10s")
                .unwrap()
                .kind,
            ScenarioKind::HeartRate { to_bpm: 140.0 }
        );
        assert_eq!(
            Scenario::parse("bed 6 SpO2 wavers around 89 % at 0 s")
                .unwrap()
                .kind,
            ScenarioKind::Waver { around: 89.0 }
        );
        assert!(Scenario::parse("bed 6 spo2 wavers around 40 % at 0 s").is_err());
        assert_eq!(
            Scenario::parse("bed 2 goes silent at 20 s").unwrap().kind,
            ScenarioKind::Silent
        );
        assert_eq!(
            Scenario::parse("bed 4 Pleth stops at 5 s").unwrap().kind,
            ScenarioKind::ChannelStops {
                kind: TraceKind::Pleth
            }
        );
        assert_eq!(
            Scenario::parse("bed 3 desaturates to 82% at 1.5 s")
                .unwrap()
                .at_s,
            1.5
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (text, needle) in [
            ("room 3 desaturates to 82 % at 30 s", "must start"),
            ("bed x desaturates to 82 % at 30 s", "whole number"),
            ("bed 3 desaturates to 82 %", "missing \"at"),
            ("bed 3 desaturates to low % at 30 s", "not a number"),
            ("bed 3 desaturates to 20 % at 30 s", "within 50"),
            ("bed 3 sings at 30 s", "expected"),
        ] {
            let e = Scenario::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
