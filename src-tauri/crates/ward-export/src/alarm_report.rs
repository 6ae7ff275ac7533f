//! The alarm burden report: statistics and limit reviews read from a store, and its CSV and
//! JSON forms (the PNG/SVG drawing is in `burden_render`).

use crate::burden::{self, AlarmStats, BurdenSettings};
use crate::error::ExportError;
use crate::whatif::{self, LimitReview};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use ward_alarm::{LimitRule, Policy};
use ward_store::Store;

/// How far before the period the log is read: an alarm raised up to this long before it
/// can still bring a flood, a pause or an end into it. Older episodes contribute nothing.
pub const LOOKBACK_MS: i64 = 86_400_000;

/// How many conditions the limit review looks at (those with the most alarms).
pub const REVIEWED: usize = 5;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AlarmReport {
    pub station: String,
    /// When it was computed.
    pub at_ms: i64,
    pub stats: AlarmStats,
    pub reviews: Vec<LimitReview>,
}

/// What a report is over: the period, the unit's beds with the limit rules in force now,
/// and the alarm policy the live engine runs.
pub struct ReportInput<'a> {
    pub station: &'a str,
    pub from_ms: i64,
    pub to_ms: i64,
    pub now_ms: i64,
    pub rules: &'a BTreeMap<String, Vec<LimitRule>>,
    pub policy: &'a Policy,
    pub settings: BurdenSettings,
}

/// Reads the log and the values the review needs and computes the report.
pub fn load(store: &Store, input: &ReportInput<'_>) -> Result<AlarmReport, ExportError> {
    if input.to_ms <= input.from_ms {
        return Err(ExportError::BadRequest(format!(
            "the period must end after it starts ({} .. {})",
            input.from_ms, input.to_ms
        )));
    }
    let end = input.now_ms.max(input.to_ms);
    let rows = store.alarm_log_range(input.from_ms - LOOKBACK_MS, end + 1)?;
    let beds: Vec<String> = input.rules.keys().cloned().collect();
    let stats = burden::compute(
        &rows,
        input.from_ms,
        input.to_ms,
        input.now_ms,
        &beds,
        input.settings,
    );
    let reading = burden::read(&rows, end);
    let mut reviews = Vec::new();
    let limit_conditions = stats.per_condition.iter().filter(|c| {
        c.kind == burden::AlarmKind::Physiological && c.condition.starts_with("limit:")
    });
    for c in limit_conditions {
        if reviews.len() >= REVIEWED {
            break;
        }
        let Some(bed) = &c.bed else { continue };
        let id = c.condition.trim_start_matches("limit:");
        // A rule that no longer exists at the bed has nothing to review.
        let Some(rule) = input
            .rules
            .get(bed)
            .and_then(|rs| rs.iter().find(|r| r.id == id))
        else {
            continue;
        };
        // From a little before the period, so a condition already waiting out its delay
        // at the start is seen as the live engine saw it.
        let values = store.bed_values(
            bed,
            rule.code,
            input.from_ms - ward_alarm::rules::MAX_DELAY_MS,
            input.to_ms,
        )?;
        reviews.push(whatif::review(
            &rows,
            &reading,
            bed,
            rule,
            input.policy,
            &values,
            input.from_ms,
            input.to_ms,
        ));
    }
    Ok(AlarmReport {
        station: input.station.to_string(),
        at_ms: input.now_ms,
        stats,
        reviews,
    })
}

/// One figure per line: `scope,bed,condition,figure,value` (scope is unit, bed, condition,
/// response, flood, cause, bed_day or review). Long form, so a spreadsheet pivots it and a
/// script finds any figure by name.
pub fn to_csv(r: &AlarmReport) -> String {
    let mut out = String::from("scope,bed,condition,figure,value\n");
    let mut line = |scope: &str, bed: &str, cond: &str, fig: &str, v: String| {
        let q = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let _ = writeln!(out, "{scope},{},{},{fig},{}", q(bed), q(cond), q(&v));
    };
    let s = &r.stats;
    line("period", "", "", "from_ms", s.from_ms.to_string());
    line("period", "", "", "to_ms", s.to_ms.to_string());
    line("period", "", "", "beds", s.beds.len().to_string());
    line("period", "", "", "restarts", s.restarts.to_string());
    let mut figures = |scope: &str, bed: &str, f: &burden::Figures| {
        let n = |x: u32| x.to_string();
        let x = |v: f64| format!("{v:.4}");
        for (name, v) in [
            ("alarms", n(f.alarms)),
            ("high", n(f.high)),
            ("medium", n(f.medium)),
            ("low", n(f.low)),
            ("physiological", n(f.physiological)),
            ("technical", n(f.technical)),
            ("device", n(f.device)),
            ("audible", n(f.audible)),
            ("audible_per_bed_day", x(f.audible_per_bed_day)),
            ("self_limiting", n(f.self_limiting)),
            ("technical_share", x(f.technical_share)),
            ("floods", n(f.floods)),
            ("flood_ms", f.flood_ms.to_string()),
            ("audio_paused_share", x(f.audio_paused_share)),
            ("alarm_paused_share", x(f.alarm_paused_share)),
            ("audio_pauses", n(f.audio_pauses)),
            ("alarm_pauses", n(f.alarm_pauses)),
            ("acknowledged_at_peer", n(f.acknowledged_at_peer)),
        ] {
            line(scope, bed, "", name, v);
        }
    };
    figures("unit", "", &s.unit);
    for b in &s.per_bed {
        figures("bed", &b.bed, &b.figures);
    }
    let opt = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
    for c in &s.per_condition {
        let bed = c.bed.as_deref().unwrap_or("station");
        for (name, v) in [
            ("label", c.label.clone()),
            ("alarms", c.alarms.to_string()),
            ("audible", c.audible.to_string()),
            ("self_limiting", c.self_limiting.to_string()),
            ("median_ack_ms", opt(c.median_ack_ms)),
        ] {
            line("condition", bed, &c.condition, name, v);
        }
    }
    for p in &s.response {
        let (a, r) = (&p.to_acknowledge, &p.to_resolve);
        for (name, v) in [
            ("alarms", p.alarms.to_string()),
            ("acknowledged", a.n.to_string()),
            ("ack_p50_ms", opt(a.p50_ms)),
            ("ack_p90_ms", opt(a.p90_ms)),
            ("ack_max_ms", opt(a.max_ms)),
            ("resolved", r.n.to_string()),
            ("resolve_p50_ms", opt(r.p50_ms)),
            ("resolve_p90_ms", opt(r.p90_ms)),
            ("resolve_max_ms", opt(r.max_ms)),
            ("never_acknowledged", p.never_acknowledged.to_string()),
        ] {
            line("response", "", &p.priority, name, v);
        }
    }
    for f in &s.floods {
        let span = format!("{}-{}", f.start_ms, f.end_ms);
        line("flood", &f.bed, &span, "alarms", f.alarms.to_string());
    }
    for c in &s.technical_causes {
        line("cause", "", &c.cause, "alarms", c.alarms.to_string());
    }
    for d in &s.per_bed_day {
        let day = d.day.to_string();
        line("bed_day", &d.bed, &day, "audible", d.audible.to_string());
    }
    for rv in &r.reviews {
        let fixed = [
            ("threshold", rv.rule.threshold.to_string()),
            ("delay_ms", rv.rule.delay_ms.to_string()),
            ("live_alarms", rv.live_alarms.to_string()),
            ("replayed_alarms", rv.replayed_alarms.to_string()),
        ];
        let alternatives = rv
            .alternatives
            .iter()
            .map(|a| (a.change.as_str(), a.alarms.to_string()));
        for (name, v) in fixed.into_iter().chain(alternatives) {
            line("review", &rv.bed, &rv.condition, name, v);
        }
    }
    out
}

pub fn to_json(r: &AlarmReport) -> Result<String, ExportError> {
    serde_json::to_string_pretty(r).map_err(|e| ExportError::Render(e.to_string()))
}
