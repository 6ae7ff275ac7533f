//! Vitals: JSON numerics keyed by IEEE 11073 code, each with its unit code.
//!
//! ```json
//! {"ts": 1763701200000, "obs": [{"code": 147842, "value": 77, "unit": 264864}]}
//! ```
//!
//! `ts` (milliseconds since the Unix epoch) is optional: without it the station stamps the
//! message with its receive time. A value of 8388607 (11073 "not available") is kept as "no
//! value" rather than as a number.

use crate::codes::{known_vital, VALUE_NOT_AVAILABLE};
use crate::ModelError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub code: u32,
    pub unit: u32,
    /// `None` when the device said "value not available".
    pub value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VitalsMessage {
    pub ts_ms: Option<i64>,
    pub obs: Vec<Observation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVitals {
    ts: Option<i64>,
    obs: Vec<RawObservation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObservation {
    code: u32,
    value: f64,
    unit: u32,
}

/// Largest number of observations in one message; a monitor sends a dozen, so anything far
/// beyond is a broken or hostile sender.
pub const MAX_OBSERVATIONS: usize = 256;

impl VitalsMessage {
    pub fn parse(payload: &[u8]) -> Result<Self, ModelError> {
        let raw: RawVitals = serde_json::from_slice(payload).map_err(|e| ModelError::Json {
            what: "vitals",
            detail: e.to_string(),
        })?;
        if raw.obs.is_empty() {
            return Err(ModelError::Observation {
                index: 0,
                reason: "obs is empty".into(),
            });
        }
        if raw.obs.len() > MAX_OBSERVATIONS {
            return Err(ModelError::Observation {
                index: MAX_OBSERVATIONS,
                reason: format!("more than {MAX_OBSERVATIONS} observations"),
            });
        }
        let mut obs = Vec::with_capacity(raw.obs.len());
        for (index, o) in raw.obs.into_iter().enumerate() {
            obs.push(check_observation(index, o)?);
        }
        Ok(Self { ts_ms: raw.ts, obs })
    }

    pub fn to_json(&self) -> String {
        let obs: Vec<serde_json::Value> = self
            .obs
            .iter()
            .map(|o| {
                serde_json::json!({
                    "code": o.code,
                    "value": o.value.unwrap_or(VALUE_NOT_AVAILABLE),
                    "unit": o.unit,
                })
            })
            .collect();
        match self.ts_ms {
            Some(ts) => serde_json::json!({ "ts": ts, "obs": obs }).to_string(),
            None => serde_json::json!({ "obs": obs }).to_string(),
        }
    }
}

fn check_observation(index: usize, o: RawObservation) -> Result<Observation, ModelError> {
    let bad = |reason: String| ModelError::Observation { index, reason };
    // serde_json never yields NaN or infinity from text, but a check here keeps the promise
    // independent of the parser.
    if !o.value.is_finite() {
        return Err(bad(format!(
            "code {}: value is not a finite number",
            o.code
        )));
    }
    if o.value == VALUE_NOT_AVAILABLE {
        return Ok(Observation {
            code: o.code,
            unit: o.unit,
            value: None,
        });
    }
    if let Some(k) = known_vital(o.code) {
        if o.unit != k.unit {
            return Err(bad(format!(
                "code {} ({}) must carry unit {} ({}), got {}",
                o.code, k.label, k.unit, k.unit_label, o.unit
            )));
        }
        if o.value < k.min || o.value > k.max {
            return Err(bad(format!(
                "code {} ({}) value {} outside the sensor range {}..={}",
                o.code, k.label, o.value, k.min, k.max
            )));
        }
    }
    Ok(Observation {
        code: o.code,
        unit: o.unit,
        value: Some(o.value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::*;

    #[test]
    fn parses_the_documented_example() {
        let m = VitalsMessage::parse(
            br#"{"ts": 1763701200000, "obs": [{"code": 147842, "value": 77, "unit": 264864}]}"#,
        )
        .unwrap();
        assert_eq!(m.ts_ms, Some(1_763_701_200_000));
        assert_eq!(
            m.obs,
            vec![Observation {
                code: MDC_ECG_HEART_RATE,
                unit: UNIT_BPM,
                value: Some(77.0)
            }]
        );
        assert_eq!(VitalsMessage::parse(m.to_json().as_bytes()).unwrap(), m);
    }

    #[test]
    fn not_available_is_no_value() {
        let m = VitalsMessage::parse(br#"{"obs":[{"code":150456,"value":8388607,"unit":262688}]}"#)
            .unwrap();
        assert_eq!(m.obs[0].value, None);
        assert_eq!(m.ts_ms, None);
    }

    #[test]
    fn bad_payloads_name_what_is_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "bad_json"),
            (
                br#"{"obs":[{"code":147842,"value":"77","unit":264864}]}"#,
                "bad_json",
            ),
            (
                br#"{"obs":[{"code":147842,"value":NaN,"unit":264864}]}"#,
                "bad_json",
            ),
            (br#"{"obs":[]}"#, "bad_observation"),
            (
                br#"{"obs":[{"code":147842,"value":77,"unit":266016}]}"#,
                "bad_observation",
            ),
            (
                br#"{"obs":[{"code":150456,"value":140,"unit":262688}]}"#,
                "bad_observation",
            ),
            (
                br#"{"obs":[{"code":147842,"value":77,"unit":264864,"x":1}]}"#,
                "bad_json",
            ),
        ];
        for (payload, kind) in cases {
            let err = VitalsMessage::parse(payload).unwrap_err();
            assert_eq!(
                err.kind(),
                *kind,
                "{}: {err}",
                String::from_utf8_lossy(payload)
            );
        }
        let err = VitalsMessage::parse(br#"{"obs":[{"code":147842,"value":77,"unit":266016}]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("must carry unit 264864"), "{err}");
    }

    #[test]
    fn unknown_codes_are_kept() {
        let m = VitalsMessage::parse(br#"{"obs":[{"code":99999,"value":-3.5,"unit":1}]}"#).unwrap();
        assert_eq!(m.obs[0].value, Some(-3.5));
    }
}
