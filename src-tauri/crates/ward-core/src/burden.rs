//! The unit's alarm burden at run time: the report for the window (Unit statistics) and the
//! console (`wardwatch report alarms`), and the last 24 hours' figures in the station's
//! metrics, refreshed once a minute. The figures themselves are `ward_export::burden`
//! (pure) and `ward_export::whatif` (the limit review).

use crate::error::CoreError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use ward_alarm::LimitRule;
use ward_config::Config;
use ward_export::alarm_report::{self, AlarmReport, ReportInput};
use ward_export::burden::{BurdenSettings, Figures, Response};

/// Longest period a report covers (the vitals the limit review replays are kept 30 days by
/// default; the alarm log longer).
pub const MAX_DAYS: u32 = 90;

pub fn settings(cfg: &Config) -> BurdenSettings {
    BurdenSettings {
        flood_alarms: cfg.statistics.flood_alarms,
        flood_window_ms: cfg.statistics.flood_window_ms,
        self_limiting_ms: cfg.statistics.self_limiting_ms,
    }
}

/// Each configured bed's limit rules as the station runs them after a start: edited ones
/// from the database, else its category's defaults. (A running station's own map, which
/// follows every change, is preferred where there is one.)
pub fn stored_rules(cfg: &Config) -> Result<BTreeMap<String, Vec<LimitRule>>, CoreError> {
    let db = cfg.db_path();
    let stored: BTreeMap<String, String> = if db.exists() {
        ward_store::Store::open_read_only(&db)?
            .bed_rules()?
            .into_iter()
            .collect()
    } else {
        BTreeMap::new()
    };
    Ok(cfg
        .beds
        .iter()
        .map(|b| {
            let id = b.id.to_string();
            let rules = stored
                .get(&id)
                .and_then(|json| match serde_json::from_str::<Vec<LimitRule>>(json) {
                    Ok(r) if ward_alarm::rules::validate(&r).is_ok() => Some(r),
                    _ => {
                        tracing::error!(bed = %id, "stored limits are unreadable; using the category defaults");
                        None
                    }
                })
                .unwrap_or_else(|| ward_alarm::rules::defaults(b.category));
            (id, rules)
        })
        .collect())
}

/// The report of the last `days` days up to `now_ms`, with the limit review.
pub fn report(
    cfg: &Config,
    rules: &BTreeMap<String, Vec<LimitRule>>,
    days: u32,
    now_ms: i64,
) -> Result<AlarmReport, CoreError> {
    if days == 0 || days > MAX_DAYS {
        return Err(ward_export::ExportError::BadRequest(format!(
            "days must be 1 to {MAX_DAYS}, not {days}"
        ))
        .into());
    }
    let store = ward_store::Store::open_read_only(&cfg.db_path())?;
    Ok(alarm_report::load(
        &store,
        &ReportInput {
            station: &cfg.station_name,
            from_ms: now_ms - i64::from(days) * 86_400_000,
            to_ms: now_ms,
            now_ms,
            rules,
            policy: &cfg.alarm_policy,
            settings: settings(cfg),
        },
    )?)
}

/// The last 24 hours' unit figures, for the hospital's monitoring (the metrics file).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BurdenMetrics {
    pub from_ms: i64,
    pub to_ms: i64,
    pub unit: Figures,
    pub response: Vec<Response>,
}

pub type BurdenSlot = Arc<Mutex<Option<BurdenMetrics>>>;

/// Computes the 24 h figures into `slot` (without the limit review: it replays values and
/// is asked for, not polled). A failure is logged and the previous figures stay.
pub fn refresh(cfg: &Config, beds: &[String], slot: &BurdenSlot, now_ms: i64) {
    let db = cfg.db_path();
    let result = ward_store::Store::open_read_only(&db).and_then(|s| {
        s.alarm_log_range(now_ms - 86_400_000 - alarm_report::LOOKBACK_MS, now_ms + 1)
    });
    match result {
        Ok(rows) => {
            let s = ward_export::burden::compute(
                &rows,
                now_ms - 86_400_000,
                now_ms,
                now_ms,
                beds,
                settings(cfg),
            );
            if let Ok(mut m) = slot.lock() {
                *m = Some(BurdenMetrics {
                    from_ms: s.from_ms,
                    to_ms: s.to_ms,
                    unit: s.unit,
                    response: s.response,
                });
            }
        }
        Err(e) => tracing::warn!(error = %e, "alarm statistics: cannot read the alarm log"),
    }
}
