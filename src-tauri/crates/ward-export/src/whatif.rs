//! Limit review: what another limit or condition delay *would* have done, by running the
//! pure alarm engine again over the stored vitals. Nothing here changes a rule: a suggestion
//! is shown, and applying one is the station's audited limit change.
//!
//! The replay feeds the engine what the live one had for that condition: the bed's stored
//! values of the rule's measure at their times, its device admissions and discharges, and
//! the acknowledgements people made of that condition (a latched alarm stays one alarm until
//! acknowledged, so they change the count). With the rule unchanged it gives the alarms the
//! live engine gave (tested on a simulated ward), which is what the suggestion rests on.

use crate::burden::{self, Reading};
use serde::Serialize;
use ward_alarm::rules::{Direction, LimitRule};
use ward_alarm::{Engine, LogKind, Policy};
use ward_model::codes;
use ward_store::AlarmLogRow;

/// What happened at a bed that the replay needs besides the values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplayEvent {
    Value(Option<f64>),
    Acknowledged,
    /// The bed's device admitted (`true`) or discharged.
    Monitored(bool),
}

/// Onsets (time, value) of the alarms `rule` raises at a bed over `events` (sorted by
/// time), counted in `[from_ms, to_ms)`.
pub fn replay(
    rule: &LimitRule,
    policy: &Policy,
    events: &[(i64, ReplayEvent)],
    from_ms: i64,
    to_ms: i64,
) -> Vec<(i64, Option<f64>)> {
    const BED: &str = "bed";
    let key = format!("limit:{}", rule.id);
    let mut e = Engine::new(policy.clone());
    let t0 = events.first().map_or(from_ms, |(t, _)| *t);
    // One clock: the stored times serve as both monotonic and wall time.
    e.set_clock(t0, t0);
    if e.add_bed(t0, BED, vec![rule.clone()], false).is_err() {
        return Vec::new();
    }
    let mut onsets = Vec::new();
    // Whether an alarm of the rule is on (raised, not yet ended or reset).
    let mut on = false;
    let mut collect = |e: &mut Engine, on: &mut bool| {
        for l in e.drain_log() {
            if l.condition != key {
                continue;
            }
            match l.kind {
                LogKind::Raised => {
                    onsets.push((l.t_ms, l.value));
                    *on = true;
                }
                LogKind::Ended | LogKind::Reset => *on = false,
                _ => {}
            }
        }
    };
    let violated = |v: f64| match rule.direction {
        Direction::Low => v < rule.threshold,
        Direction::High => v > rule.threshold,
    };
    // The last value fed was inside the limit: nothing is waiting out its delay.
    let mut settled = true;
    let mut last_poll = i64::MIN;
    let run_timers = |e: &mut Engine, until: i64, last_poll: &mut i64| {
        // Every timer due before `until`, at its own time, as the live driver runs them.
        while let Some(t) = e.poll_timeout() {
            if t > until || t <= *last_poll {
                break;
            }
            e.poll(t);
            *last_poll = t;
        }
    };
    for &(t, ev) in events {
        // Skipped, because they change nothing: a value inside the limit while no alarm of
        // the rule is on and nothing is pending (a month of values is mostly these), and
        // "not available" (it only concerns the technical no-value alarm).
        match ev {
            ReplayEvent::Value(None) => continue,
            ReplayEvent::Value(Some(v)) if !on && settled && !violated(v) => continue,
            _ => {}
        }
        run_timers(&mut e, t, &mut last_poll);
        match ev {
            ReplayEvent::Value(v) => {
                settled = v.is_none_or(|x| !violated(x));
                e.handle_vitals(t, BED, &[(rule.code, v)]);
            }
            ReplayEvent::Acknowledged => {
                let id = e
                    .alarms()
                    .into_iter()
                    .find(|a| {
                        a.key == key
                            && !matches!(
                                a.inactivation,
                                ward_alarm::Inactivation::Acknowledged { .. }
                            )
                    })
                    .map(|a| a.id);
                if let Some(id) = id {
                    let _ = e.acknowledge(t, id, "replay");
                }
            }
            ReplayEvent::Monitored(m) => {
                let _ = e.set_monitored(t, BED, m, "replay", None);
            }
        }
        collect(&mut e, &mut on);
    }
    run_timers(&mut e, to_ms, &mut last_poll);
    collect(&mut e, &mut on);
    onsets.retain(|(t, _)| *t >= from_ms && *t < to_ms);
    onsets
}

/// The acknowledgements of `condition` at `bed` and the bed's device admissions and
/// discharges, from the alarm log rows, as replay events.
pub fn log_events(rows: &[AlarmLogRow], bed: &str, condition: &str) -> Vec<(i64, ReplayEvent)> {
    rows.iter()
        .filter(|r| r.bed.as_deref() == Some(bed))
        .filter_map(|r| match r.kind.as_str() {
            "acknowledged" if r.condition == condition => Some((r.t_ms, ReplayEvent::Acknowledged)),
            "admitted" => Some((r.t_ms, ReplayEvent::Monitored(true))),
            "discharged" => Some((r.t_ms, ReplayEvent::Monitored(false))),
            _ => None,
        })
        .collect()
}

/// Merges values and log events into one timeline; at one instant a log event (a person's
/// acknowledgement) goes after the value.
pub fn timeline(
    values: &[(i64, Option<f64>)],
    log: &[(i64, ReplayEvent)],
) -> Vec<(i64, ReplayEvent)> {
    let mut v: Vec<(i64, u8, ReplayEvent)> = values
        .iter()
        .map(|&(t, x)| (t, 0, ReplayEvent::Value(x)))
        .chain(log.iter().map(|&(t, e)| (t, 1, e)))
        .collect();
    v.sort_by_key(|(t, o, _)| (*t, *o));
    v.into_iter().map(|(t, _, e)| (t, e)).collect()
}

/// One alternative rule and what it would have given.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Alternative {
    /// "limit 90 → 88" or "delay 10 s → 20 s".
    pub change: String,
    pub rule: LimitRule,
    pub alarms: u32,
}

/// The values that triggered a condition's alarms.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Triggers {
    pub n: u32,
    pub min: Option<f64>,
    pub median: Option<f64>,
    pub max: Option<f64>,
}

/// The review of one bed's limit condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LimitReview {
    pub bed: String,
    pub condition: String,
    /// The rule in force now.
    pub rule: LimitRule,
    /// Alarms the live engine raised in the period (the log).
    pub live_alarms: u32,
    /// Alarms the replay of the unchanged rule raises over the stored vitals.
    pub replayed_alarms: u32,
    pub triggers: Triggers,
    pub alternatives: Vec<Alternative>,
    /// The first stored value of the measure in the period (older ones were pruned).
    pub values_from_ms: Option<i64>,
    /// The bed's limits changed during the period: the live count mixes rules.
    pub limits_changed: bool,
}

/// How far one step of a limit moves, by measure.
fn step(code: u32, threshold: f64) -> f64 {
    match code {
        codes::MDC_PULS_OXIM_SAT_O2 => 2.0,
        codes::MDC_ECG_HEART_RATE | codes::MDC_PULS_OXIM_PULS_RATE => 5.0,
        codes::MDC_RESP_RATE => 2.0,
        codes::MDC_TEMP_BODY => 0.2,
        codes::MDC_PRESS_BLD_NONINV_SYS
        | codes::MDC_PRESS_BLD_NONINV_DIA
        | codes::MDC_PRESS_BLD_NONINV_MEAN => 5.0,
        _ => (threshold.abs() * 0.05).max(1.0),
    }
}

/// The alternatives tried for a rule: the limit one and two steps further out, and the
/// condition delay 5 and 10 s longer (never past the rules' maximum). Invalid ones are left
/// out.
pub fn alternatives(rule: &LimitRule) -> Vec<(String, LimitRule)> {
    let s = step(rule.code, rule.threshold);
    let out = |k: f64| match rule.direction {
        Direction::Low => rule.threshold - k * s,
        Direction::High => rule.threshold + k * s,
    };
    let mut v = Vec::new();
    for k in [1.0, 2.0] {
        let t = (out(k) * 10.0).round() / 10.0;
        let mut r = rule.clone();
        r.threshold = t;
        v.push((format!("limit {} → {}", rule.threshold, t), r));
    }
    for extra in [5_000, 10_000] {
        let d = rule.delay_ms + extra;
        if d <= ward_alarm::rules::MAX_DELAY_MS {
            let mut r = rule.clone();
            r.delay_ms = d;
            v.push((
                format!("delay {} s → {} s", rule.delay_ms / 1000, d / 1000),
                r,
            ));
        }
    }
    v.retain(|(_, r)| ward_alarm::rules::validate(std::slice::from_ref(r)).is_ok());
    v
}

/// Reviews one bed's limit condition: live count, triggering values, the replay of the
/// rule as it is and of each alternative. `values` are the bed's stored values of the
/// rule's measure from a little before the period (the condition delay) to its end.
#[allow(clippy::too_many_arguments)] // the period, the rule and its three sources of facts
pub fn review(
    rows: &[AlarmLogRow],
    reading: &Reading,
    bed: &str,
    rule: &LimitRule,
    policy: &Policy,
    values: &[(i64, Option<f64>)],
    from_ms: i64,
    to_ms: i64,
) -> LimitReview {
    let condition = format!("limit:{}", rule.id);
    let live: Vec<&burden::Episode> = reading
        .episodes
        .iter()
        .filter(|e| e.bed.as_deref() == Some(bed) && e.condition == condition)
        .filter(|e| e.onset_ms >= from_ms && e.onset_ms < to_ms)
        .collect();
    let mut trig: Vec<f64> = live.iter().filter_map(|e| e.value).collect();
    trig.sort_by(f64::total_cmp);
    let events = timeline(values, &log_events(rows, bed, &condition));
    let count = |r: &LimitRule| replay(r, policy, &events, from_ms, to_ms).len() as u32;
    LimitReview {
        bed: bed.to_string(),
        condition: condition.clone(),
        rule: rule.clone(),
        live_alarms: live.len() as u32,
        replayed_alarms: count(rule),
        triggers: Triggers {
            n: trig.len() as u32,
            min: trig.first().copied(),
            median: trig.get(trig.len().saturating_sub(1) / 2).copied(),
            max: trig.last().copied(),
        },
        alternatives: alternatives(rule)
            .into_iter()
            .map(|(change, r)| Alternative {
                change,
                alarms: count(&r),
                rule: r,
            })
            .collect(),
        values_from_ms: values.iter().map(|(t, _)| *t).find(|t| *t >= from_ms),
        limits_changed: reading
            .limit_changes
            .get(bed)
            .is_some_and(|v| v.iter().any(|t| *t >= from_ms && *t < to_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_model::Priority;

    fn spo2_rule(threshold: f64, delay_ms: i64, priority: Priority) -> LimitRule {
        LimitRule {
            id: "spo2_low".into(),
            label: "SpO2 low".into(),
            code: codes::MDC_PULS_OXIM_SAT_O2,
            direction: Direction::Low,
            threshold,
            priority,
            hysteresis: 1.0,
            delay_ms,
        }
    }

    /// One value a second: `(seconds, value)` runs.
    fn values(runs: &[(i64, f64)]) -> Vec<(i64, ReplayEvent)> {
        let mut t = 0;
        let mut v = Vec::new();
        for &(n, x) in runs {
            for _ in 0..n {
                v.push((t, ReplayEvent::Value(Some(x))));
                t += 1000;
            }
        }
        v
    }

    #[test]
    fn the_delay_and_the_limit_decide_what_a_dip_raises() {
        let p = Policy::default();
        // 15 s at 88 %, later 5 s at 88 %.
        let ev = values(&[(20, 95.0), (15, 88.0), (20, 95.0), (5, 88.0), (20, 95.0)]);
        let at = |r: &LimitRule| replay(r, &p, &ev, 0, 1_000_000);
        let base = at(&spo2_rule(90.0, 10_000, Priority::Medium));
        assert_eq!(
            base,
            vec![(30_000, Some(88.0))],
            "only the long dip, when its delay has passed"
        );
        assert!(at(&spo2_rule(90.0, 20_000, Priority::Medium)).is_empty());
        assert!(at(&spo2_rule(86.0, 10_000, Priority::Medium)).is_empty());
        assert_eq!(at(&spo2_rule(90.0, 4_000, Priority::Medium)).len(), 2);
        // Counted only inside the period.
        assert!(replay(
            &spo2_rule(90.0, 10_000, Priority::Medium),
            &p,
            &ev,
            31_000,
            1_000_000
        )
        .is_empty());
    }

    #[test]
    fn a_latched_alarm_is_one_alarm_until_someone_acknowledges_it() {
        let p = Policy::default();
        let rule = spo2_rule(90.0, 5_000, Priority::High);
        let ev = values(&[(10, 95.0), (10, 85.0), (10, 95.0), (10, 85.0), (10, 95.0)]);
        assert_eq!(
            replay(&rule, &p, &ev, 0, 1_000_000).len(),
            1,
            "latched, never reset"
        );
        // Acknowledged between the dips (the cause had ended: reset), the second is new.
        let acked = timeline(
            &ev.iter()
                .map(|(t, e)| match e {
                    ReplayEvent::Value(v) => (*t, *v),
                    _ => unreachable!(),
                })
                .collect::<Vec<_>>(),
            &[(25_000, ReplayEvent::Acknowledged)],
        );
        assert_eq!(replay(&rule, &p, &acked, 0, 1_000_000).len(), 2);
        // A discharge ends it too.
        let mut discharged = ev.clone();
        discharged.insert(25, (25_000, ReplayEvent::Monitored(false)));
        assert_eq!(replay(&rule, &p, &discharged, 0, 1_000_000).len(), 2);
    }

    #[test]
    fn alternatives_move_the_limit_outward_and_lengthen_the_delay_within_bounds() {
        let alts = alternatives(&spo2_rule(90.0, 10_000, Priority::Medium));
        let names: Vec<&str> = alts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "limit 90 → 88",
                "limit 90 → 86",
                "delay 10 s → 15 s",
                "delay 10 s → 20 s"
            ]
        );
        let near_max = alternatives(&spo2_rule(90.0, 55_000, Priority::Medium));
        assert!(near_max
            .iter()
            .all(|(_, r)| r.delay_ms <= ward_alarm::rules::MAX_DELAY_MS));
        let mut hr = spo2_rule(120.0, 5_000, Priority::Medium);
        hr.code = codes::MDC_ECG_HEART_RATE;
        hr.direction = Direction::High;
        assert_eq!(alternatives(&hr)[0].1.threshold, 125.0);
    }
}
