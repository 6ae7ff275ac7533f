//! Physiological limit rules and their defaults per patient category.
//!
//! A rule is one alarm condition: "`code` below/above `threshold` for `delay_ms`". A measure
//! usually has several: SpO2 below 90 % is a MEDIUM alarm, below 80 % a separate HIGH one
//! (desaturation). The defaults follow ../shared/reference/clinical.md §2 (vendor manuals);
//! they are sane starting points that the hospital changes in config, never hard truths.

use crate::AlarmError;
use serde::{Deserialize, Serialize};
use ward_model::codes::*;
use ward_model::Priority;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Alarm when the value is below the threshold.
    Low,
    /// Alarm when the value is above the threshold.
    High,
}

/// The patient category lives with the patient (ward-model); its defaults live here.
pub use ward_model::Category;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct LimitRule {
    /// Stable name of the condition within a bed, e.g. `spo2_low`; it keys the alarm log.
    pub id: String,
    /// What the nurse reads, e.g. "SpO2 low".
    pub label: String,
    pub code: u32,
    pub direction: Direction,
    pub threshold: f64,
    pub priority: Priority,
    /// The value must come back this far inside the limit before the condition ends, so a
    /// value hovering at the limit does not start and end alarms every second.
    pub hysteresis: f64,
    /// Alarm condition delay: the limit must be crossed for this long before the alarm
    /// starts. Disclosed per rule (IEC 60601-1-8 6.7).
    pub delay_ms: i64,
}

impl LimitRule {
    pub(crate) fn violated(&self, v: f64) -> bool {
        match self.direction {
            Direction::Low => v < self.threshold,
            Direction::High => v > self.threshold,
        }
    }
    /// Back inside the limit by at least the hysteresis.
    pub(crate) fn cleared(&self, v: f64) -> bool {
        match self.direction {
            Direction::Low => v >= self.threshold + self.hysteresis,
            Direction::High => v <= self.threshold - self.hysteresis,
        }
    }
}

/// Longest condition delay a rule may have. IEC 60601-2-27 wants HR alarms within 10 s;
/// a delay beyond a minute would hide a real emergency, so config cannot set one.
pub const MAX_DELAY_MS: i64 = 60_000;

/// Checks a rule set, naming the rule and the problem.
pub fn validate(rules: &[LimitRule]) -> Result<(), AlarmError> {
    let bad = |index: usize, reason: String| Err(AlarmError::InvalidRule { index, reason });
    let mut seen = std::collections::HashSet::new();
    for (i, r) in rules.iter().enumerate() {
        if r.id.is_empty()
            || r.id.len() > 64
            || !r
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return bad(i, format!("id {:?} must be 1-64 of [A-Za-z0-9_-]", r.id));
        }
        if !seen.insert(r.id.as_str()) {
            return bad(i, format!("id {:?} appears twice", r.id));
        }
        if r.label.trim().is_empty() || r.label.len() > 80 {
            return bad(i, format!("{}: label must be 1-80 characters", r.id));
        }
        if !r.threshold.is_finite() {
            return bad(i, format!("{}: threshold must be a finite number", r.id));
        }
        if !r.hysteresis.is_finite() || r.hysteresis < 0.0 {
            return bad(i, format!("{}: hysteresis must be zero or more", r.id));
        }
        if let Some(k) = known_vital(r.code) {
            if r.threshold < k.min || r.threshold > k.max {
                return bad(
                    i,
                    format!(
                        "{}: threshold {} is outside what a {} sensor reports ({}..={})",
                        r.id, r.threshold, k.label, k.min, k.max
                    ),
                );
            }
        }
        if !(0..=MAX_DELAY_MS).contains(&r.delay_ms) {
            return bad(i, format!("{}: delay_ms must be 0..={MAX_DELAY_MS}", r.id));
        }
    }
    Ok(())
}

/// One row of the defaults table; positional so the table reads as a table.
#[allow(clippy::too_many_arguments)]
fn rule(
    id: &str,
    label: &str,
    code: u32,
    direction: Direction,
    threshold: f64,
    priority: Priority,
    hysteresis: f64,
    delay_s: i64,
) -> LimitRule {
    LimitRule {
        id: id.into(),
        label: label.into(),
        code,
        direction,
        threshold,
        priority,
        hysteresis,
        delay_ms: delay_s * 1000,
    }
}

/// Default rules per category. Limit crossings are MEDIUM; the life-threatening extremes
/// (desaturation, extreme brady/tachycardia, apnoea-range RR) are separate HIGH rules.
/// Delays: SpO2 10 s (motion artefacts), desaturation 5 s, HR 5 s (IEC 60601-2-27 asks for
/// an HR alarm within 10 s), NIBP and temperature 0 s (they are single readings).
pub fn defaults(category: Category) -> Vec<LimitRule> {
    use Direction::{High as H, Low as L};
    use Priority::{High as PH, Low as PL, Medium as PM};
    // (hr low, hr high, hr extreme low, hr extreme high, spo2 low, spo2 high, desat,
    //  rr low, rr high, sys low, sys high, dia low, dia high, mean low, mean high)
    let (hr, hrx, spo2, desat, rr, sys, dia, mean) = match category {
        Category::Adult => (
            (50.0, 120.0),
            (40.0, 150.0),
            (90.0, None),
            80.0,
            (5.0, 30.0),
            (90.0, 160.0),
            (50.0, 90.0),
            (60.0, 110.0),
        ),
        Category::Pediatric => (
            (75.0, 160.0),
            (60.0, 190.0),
            (90.0, None),
            80.0,
            (10.0, 40.0),
            (70.0, 130.0),
            (40.0, 80.0),
            (50.0, 95.0),
        ),
        // Neonates also get an SpO2 high limit: too much oxygen harms the retina.
        Category::Neonatal => (
            (100.0, 200.0),
            (80.0, 220.0),
            (85.0, Some(95.0)),
            75.0,
            (20.0, 70.0),
            (50.0, 90.0),
            (25.0, 60.0),
            (35.0, 70.0),
        ),
    };
    let mut v = vec![
        rule("hr_low", "HR low", MDC_ECG_HEART_RATE, L, hr.0, PM, 2.0, 5),
        rule(
            "hr_high",
            "HR high",
            MDC_ECG_HEART_RATE,
            H,
            hr.1,
            PM,
            2.0,
            5,
        ),
        rule(
            "hr_extreme_low",
            "Extreme bradycardia",
            MDC_ECG_HEART_RATE,
            L,
            hrx.0,
            PH,
            2.0,
            5,
        ),
        rule(
            "hr_extreme_high",
            "Extreme tachycardia",
            MDC_ECG_HEART_RATE,
            H,
            hrx.1,
            PH,
            2.0,
            5,
        ),
        rule(
            "spo2_low",
            "SpO2 low",
            MDC_PULS_OXIM_SAT_O2,
            L,
            spo2.0,
            PM,
            1.0,
            10,
        ),
        rule(
            "spo2_desat",
            "Desaturation",
            MDC_PULS_OXIM_SAT_O2,
            L,
            desat,
            PH,
            1.0,
            5,
        ),
        rule("rr_low", "RR low", MDC_RESP_RATE, L, rr.0, PM, 1.0, 10),
        rule("rr_high", "RR high", MDC_RESP_RATE, H, rr.1, PM, 1.0, 10),
        rule(
            "nibp_sys_low",
            "NIBP sys low",
            MDC_PRESS_BLD_NONINV_SYS,
            L,
            sys.0,
            PM,
            0.0,
            0,
        ),
        rule(
            "nibp_sys_high",
            "NIBP sys high",
            MDC_PRESS_BLD_NONINV_SYS,
            H,
            sys.1,
            PM,
            0.0,
            0,
        ),
        rule(
            "nibp_dia_low",
            "NIBP dia low",
            MDC_PRESS_BLD_NONINV_DIA,
            L,
            dia.0,
            PM,
            0.0,
            0,
        ),
        rule(
            "nibp_dia_high",
            "NIBP dia high",
            MDC_PRESS_BLD_NONINV_DIA,
            H,
            dia.1,
            PM,
            0.0,
            0,
        ),
        rule(
            "nibp_mean_low",
            "NIBP mean low",
            MDC_PRESS_BLD_NONINV_MEAN,
            L,
            mean.0,
            PM,
            0.0,
            0,
        ),
        rule(
            "nibp_mean_high",
            "NIBP mean high",
            MDC_PRESS_BLD_NONINV_MEAN,
            H,
            mean.1,
            PM,
            0.0,
            0,
        ),
        rule("temp_low", "Temp low", MDC_TEMP_BODY, L, 35.0, PL, 0.2, 0),
        rule("temp_high", "Temp high", MDC_TEMP_BODY, H, 39.0, PL, 0.2, 0),
    ];
    if let Some(high) = spo2.1 {
        v.push(rule(
            "spo2_high",
            "SpO2 high",
            MDC_PULS_OXIM_SAT_O2,
            H,
            high,
            PM,
            1.0,
            10,
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_for_every_category() {
        for c in [Category::Adult, Category::Pediatric, Category::Neonatal] {
            validate(&defaults(c)).unwrap();
        }
        assert!(defaults(Category::Neonatal)
            .iter()
            .any(|r| r.id == "spo2_high"));
        assert!(!defaults(Category::Adult)
            .iter()
            .any(|r| r.id == "spo2_high"));
    }

    #[test]
    fn validation_names_the_rule_and_problem() {
        let mut r = defaults(Category::Adult);
        r[4].threshold = f64::NAN;
        let e = validate(&r).unwrap_err().to_string();
        assert!(
            e.contains("rule 4") && e.contains("spo2_low") && e.contains("finite"),
            "{e}"
        );
        let mut r = defaults(Category::Adult);
        r[0].delay_ms = 120_000;
        assert!(validate(&r).unwrap_err().to_string().contains("delay_ms"));
        let mut r = defaults(Category::Adult);
        r[1].id = "hr_low".into();
        assert!(validate(&r).unwrap_err().to_string().contains("twice"));
        let mut r = defaults(Category::Adult);
        r[4].threshold = 140.0;
        assert!(validate(&r).unwrap_err().to_string().contains("outside"));
    }

    #[test]
    fn hysteresis_band() {
        let r = &defaults(Category::Adult)[0]; // HR < 50, hysteresis 2
        assert!(r.violated(49.0) && !r.violated(50.0));
        assert!(!r.cleared(51.0) && r.cleared(52.0));
    }
}
