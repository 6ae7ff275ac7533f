//! Alarm burden: the unit's alarm statistics, computed from alarm log rows by pure functions
//! with the period passed in. docs/alarms.md ("Alarm burden") defines every figure; the
//! definitions here are the same words.
//!
//! An alarm is one episode of one condition at one bed, from its `raised` row to its `ended`
//! or `reset` row. A station restart in the middle gives the alarm a new id (`restored`,
//! whose detail names the old id): both ids are one episode here. An episode *belongs to* the
//! period its onset falls in, so a period that cuts an alarm in half counts it once, in the
//! period it began; its acknowledgement and end are taken from the log wherever they fall.
//! Time shares (pauses) count only the part inside the period.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use ward_store::AlarmLogRow;

/// What counts as a flood, and as a self-limiting alarm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BurdenSettings {
    /// At least this many alarms of one bed ...
    pub flood_alarms: u32,
    /// ... raised within this window is a flood.
    pub flood_window_ms: i64,
    /// An alarm whose cause ended by itself within this time of its onset is self-limiting.
    pub self_limiting_ms: i64,
}

impl Default for BurdenSettings {
    /// 10 alarms in 10 minutes (ISA-18.2's flood, per bed); 10 s (Poncette 2021).
    fn default() -> Self {
        Self {
            flood_alarms: 10,
            flood_window_ms: 600_000,
            self_limiting_ms: 10_000,
        }
    }
}

/// Counts and shares for a scope (the unit, or one bed).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Figures {
    pub alarms: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
    /// Limit alarms (the station's rules).
    pub physiological: u32,
    /// Technical alarms: no data, sensor or lead off, storage, audio, display, peer station.
    pub technical: u32,
    /// Alarms the bedside device raised itself.
    pub device: u32,
    /// Alarms that sounded at onset (not raised inside an alarm pause).
    pub audible: u32,
    /// `audible` per bed per day of the period (for the unit: over the unit's beds).
    pub audible_per_bed_day: f64,
    pub self_limiting: u32,
    /// Technical alarms / all alarms (0 when there were none).
    pub technical_share: f64,
    pub floods: u32,
    pub flood_ms: i64,
    /// Share of the period (bed-time, for the unit) with an audio pause or audio off in force.
    pub audio_paused_share: f64,
    /// Share of the period (bed-time, for the unit) in alarm pause.
    pub alarm_paused_share: f64,
    /// Audio pauses and audio offs asked for (one per person's action, however many alarms).
    pub audio_pauses: u32,
    pub alarm_pauses: u32,
    /// Acknowledgements that came from another station of the unit.
    pub acknowledged_at_peer: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BedFigures {
    pub bed: String,
    pub figures: Figures,
}

/// One condition at one bed (`bed: None` for the station's own technical alarms).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ConditionFigures {
    pub bed: Option<String>,
    /// The alarm log's condition key (`limit:spo2_low`, `tech:device_silent`, ...).
    pub condition: String,
    pub label: String,
    pub kind: AlarmKind,
    pub alarms: u32,
    pub audible: u32,
    pub self_limiting: u32,
    pub median_ack_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    Physiological,
    Technical,
    Device,
}

impl AlarmKind {
    pub fn of(condition: &str) -> Self {
        if condition.starts_with("tech:") || condition.starts_with("peer:") {
            AlarmKind::Technical
        } else if condition.starts_with("device:") {
            AlarmKind::Device
        } else {
            AlarmKind::Physiological
        }
    }
}

/// p50, p90 and max of a set of durations (nearest rank), and how many there were.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Spread {
    pub n: u32,
    pub p50_ms: Option<i64>,
    pub p90_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

impl Spread {
    pub fn of(mut v: Vec<i64>) -> Self {
        v.sort_unstable();
        // Nearest rank: the smallest value with at least q of the values at or below it.
        let rank = |q: f64| -> Option<i64> {
            if v.is_empty() {
                return None;
            }
            let r = (q * v.len() as f64).ceil() as usize;
            v.get(r.clamp(1, v.len()) - 1).copied()
        };
        Self {
            n: v.len() as u32,
            p50_ms: rank(0.5),
            p90_ms: rank(0.9),
            max_ms: v.last().copied(),
        }
    }
}

/// Response times of the alarms of one priority (their priority at onset).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Response {
    pub priority: String,
    pub alarms: u32,
    /// Onset to the first acknowledgement, here or at a peer station.
    pub to_acknowledge: Spread,
    /// Onset to the alarm's end (for a latched alarm, its reset).
    pub to_resolve: Spread,
    /// Ended without anyone acknowledging them.
    pub never_acknowledged: u32,
    /// How many acknowledgements fell in each of [`ACK_BUCKETS`] (the distribution).
    pub ack_histogram: Vec<u32>,
}

/// Buckets of the time to acknowledge, in seconds: `[lower, upper)`.
pub const ACK_BUCKETS: [(i64, i64, &str); 6] = [
    (0, 10, "<10 s"),
    (10, 30, "10-30 s"),
    (30, 60, "30-60 s"),
    (60, 120, "1-2 min"),
    (120, 300, "2-5 min"),
    (300, i64::MAX, "≥5 min"),
];

/// How many of `ack_ms` fall in each of [`ACK_BUCKETS`].
pub fn ack_histogram(ack_ms: &[i64]) -> Vec<u32> {
    let mut h = vec![0u32; ACK_BUCKETS.len()];
    for &a in ack_ms {
        let s = a.max(0) / 1000;
        if let Some(i) = ACK_BUCKETS
            .iter()
            .position(|(lo, hi, _)| s >= *lo && s < *hi)
        {
            h[i] += 1;
        }
    }
    h
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Flood {
    pub bed: String,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Alarms of the bed that made it up: raised after `start_ms - window`, before its end.
    pub alarms: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct CauseCount {
    pub cause: String,
    pub alarms: u32,
}

/// Audible alarms of one bed on one day (days counted from the period's start).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct BedDay {
    pub bed: String,
    pub day: u32,
    pub audible: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AlarmStats {
    pub from_ms: i64,
    pub to_ms: i64,
    pub settings: BurdenSettings,
    /// The beds the per-bed-day figures are over.
    pub beds: Vec<String>,
    pub unit: Figures,
    pub per_bed: Vec<BedFigures>,
    pub per_condition: Vec<ConditionFigures>,
    pub response: Vec<Response>,
    pub floods: Vec<Flood>,
    pub technical_causes: Vec<CauseCount>,
    pub per_bed_day: Vec<BedDay>,
    /// Station restarts in the period (the log's `restarted` rows).
    pub restarts: u32,
}

/// One alarm episode, put together from its rows.
#[derive(Debug, Clone, Default)]
pub struct Episode {
    pub bed: Option<String>,
    pub condition: String,
    pub label: String,
    pub priority: String,
    pub onset_ms: i64,
    pub value: Option<f64>,
    pub audible: bool,
    pub ack_ms: Option<i64>,
    pub ack_at_peer: bool,
    /// When its cause ended by itself (`latched`, or `ended` with no one named).
    pub cause_end_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Intervals with its sound silenced by an audio pause or audio off.
    silenced: Vec<(i64, i64)>,
    silenced_since: Option<i64>,
}

impl Episode {
    fn close_silence(&mut self, t: i64) {
        if let Some(s) = self.silenced_since.take() {
            self.silenced.push((s, t));
        }
    }
}

/// A user named in an acknowledgement made at another station ("nurse.ana at station 4W").
pub fn is_peer_user(user: &str) -> bool {
    user.contains(" at station ")
}

/// The number after "alarm " in a `restored` row's detail ("alarm 12 before the restart, ...").
fn previous_id(detail: &str) -> Option<u64> {
    detail
        .strip_prefix("alarm ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The wall-clock time in an "until 1700000000000" detail (pauses).
fn until(detail: Option<&str>) -> Option<i64> {
    detail?.strip_prefix("until ")?.trim().parse().ok()
}

/// Everything the rows say: the episodes (in onset order), each bed's alarm pauses, the
/// pause actions, and the restarts.
#[derive(Debug, Default)]
pub struct Reading {
    pub episodes: Vec<Episode>,
    pub alarm_paused: BTreeMap<String, Vec<(i64, i64)>>,
    /// (time, bed or None for the unit) of each person's audio pause or audio off.
    pub audio_pause_actions: Vec<(i64, Option<String>)>,
    pub alarm_pause_actions: Vec<(i64, String)>,
    pub restarts: Vec<i64>,
    /// Limit changes per bed (time), for the limit review.
    pub limit_changes: BTreeMap<String, Vec<i64>>,
}

/// Reads alarm log rows (oldest first, as written) into episodes and intervals. `end_ms`
/// closes what is still open (the time the figures are computed).
pub fn read(rows: &[AlarmLogRow], end_ms: i64) -> Reading {
    let mut r = Reading::default();
    let mut by_id: HashMap<u64, usize> = HashMap::new();
    let mut open_pause: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut last_action: Option<(i64, String)> = None;
    for row in rows {
        let ep = row.alarm_id.and_then(|id| by_id.get(&id).copied());
        match (row.kind.as_str(), row.alarm_id) {
            ("raised", Some(id)) => {
                let paused = row
                    .bed
                    .as_ref()
                    .and_then(|b| open_pause.get(b))
                    .is_some_and(|&(_, until)| row.t_ms < until);
                let kind = AlarmKind::of(&row.condition);
                by_id.insert(id, r.episodes.len());
                r.episodes.push(Episode {
                    bed: row.bed.clone(),
                    condition: row.condition.clone(),
                    label: row.label.clone(),
                    priority: row.priority.clone().unwrap_or_default(),
                    onset_ms: row.t_ms,
                    value: row.value,
                    // The engine raises a bed's non-technical alarms paused during its
                    // alarm pause; everything else sounds at onset.
                    audible: !(paused && kind != AlarmKind::Technical),
                    ..Episode::default()
                });
            }
            ("restored", Some(id)) => {
                let old = row.detail.as_deref().and_then(previous_id);
                match old.and_then(|o| by_id.get(&o).copied()) {
                    Some(i) => {
                        by_id.insert(id, i);
                    }
                    None => {
                        // Its onset is older than the rows read: an episode of an earlier
                        // period, kept so its end is not mistaken for another's.
                        by_id.insert(id, r.episodes.len());
                        r.episodes.push(Episode {
                            bed: row.bed.clone(),
                            condition: row.condition.clone(),
                            label: row.label.clone(),
                            priority: row.priority.clone().unwrap_or_default(),
                            onset_ms: i64::MIN,
                            audible: true,
                            ..Episode::default()
                        });
                    }
                }
            }
            ("acknowledged", Some(_)) => {
                if let Some(e) = ep.and_then(|i| r.episodes.get_mut(i)) {
                    e.close_silence(row.t_ms);
                    if e.ack_ms.is_none() {
                        e.ack_ms = Some(row.t_ms);
                        e.ack_at_peer = row.user.as_deref().is_some_and(is_peer_user);
                    }
                }
            }
            ("latched", Some(_)) => {
                if let Some(e) = ep.and_then(|i| r.episodes.get_mut(i)) {
                    e.cause_end_ms.get_or_insert(row.t_ms);
                }
            }
            ("ended" | "reset", Some(_)) => {
                if let Some(e) = ep.and_then(|i| r.episodes.get_mut(i)) {
                    e.close_silence(row.t_ms);
                    if row.kind == "ended" && row.user.is_none() {
                        e.cause_end_ms.get_or_insert(row.t_ms);
                    }
                    e.end_ms.get_or_insert(row.t_ms);
                }
            }
            ("escalated", Some(_)) => {
                // Escalation sounds again whatever pause was in force.
                if let Some(e) = ep.and_then(|i| r.episodes.get_mut(i)) {
                    e.close_silence(row.t_ms);
                }
            }
            ("audio_paused" | "audio_off", Some(_)) => {
                if let Some(e) = ep.and_then(|i| r.episodes.get_mut(i)) {
                    e.silenced_since.get_or_insert(row.t_ms);
                }
                // One person's action writes a row per alarm it silences, all at one time.
                let who = row.user.clone().unwrap_or_default();
                if last_action.as_ref() != Some(&(row.t_ms, who.clone())) {
                    r.audio_pause_actions.push((row.t_ms, row.bed.clone()));
                    last_action = Some((row.t_ms, who));
                }
            }
            ("audio_pause_ended", Some(_)) => {
                if let Some(e) = ep.and_then(|i| r.episodes.get_mut(i)) {
                    e.close_silence(row.t_ms);
                }
            }
            ("alarm_paused", None) => {
                if let Some(bed) = &row.bed {
                    let until = until(row.detail.as_deref()).unwrap_or(end_ms);
                    r.alarm_pause_actions.push((row.t_ms, bed.clone()));
                    let e = open_pause.entry(bed.clone()).or_insert((row.t_ms, until));
                    e.1 = until;
                }
            }
            ("alarm_pause_ended", None) => {
                if let Some((s, until)) = row.bed.as_ref().and_then(|b| open_pause.remove(b)) {
                    let bed = row.bed.clone().unwrap_or_default();
                    r.alarm_paused
                        .entry(bed)
                        .or_default()
                        .push((s, row.t_ms.min(until)));
                }
            }
            ("limits_changed", None) => {
                if let Some(bed) = &row.bed {
                    r.limit_changes
                        .entry(bed.clone())
                        .or_default()
                        .push(row.t_ms);
                }
            }
            ("restarted", None) => {
                r.restarts.push(row.t_ms);
                // Nothing silenced survives a restart; a pause whose end the dead station
                // never logged ends with it (at the latest at its own end).
                for e in &mut r.episodes {
                    e.close_silence(row.t_ms);
                }
                for (bed, (s, until)) in std::mem::take(&mut open_pause) {
                    r.alarm_paused
                        .entry(bed)
                        .or_default()
                        .push((s, row.t_ms.min(until)));
                }
            }
            _ => {}
        }
    }
    for e in &mut r.episodes {
        e.close_silence(e.end_ms.unwrap_or(end_ms));
    }
    for (bed, (s, until)) in open_pause {
        r.alarm_paused
            .entry(bed)
            .or_default()
            .push((s, end_ms.min(until)));
    }
    r
}

/// Total length of the union of `intervals` inside `[from, to)`.
pub fn covered(intervals: &[(i64, i64)], from: i64, to: i64) -> i64 {
    let mut v: Vec<(i64, i64)> = intervals
        .iter()
        .map(|&(s, e)| (s.max(from), e.min(to)))
        .filter(|(s, e)| s < e)
        .collect();
    v.sort_unstable();
    let mut total = 0;
    let mut cur: Option<(i64, i64)> = None;
    for (s, e) in v {
        cur = match cur {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some((cs, ce)) = cur {
        total += ce - cs;
    }
    total
}

/// Floods of one bed from its onsets (sorted): the times when at least `n` of its alarms
/// were raised in the last `window` (`(t - window, t]`). A flood starts when the count
/// reaches `n` and ends when it falls below, `window` after the onset that leaves.
pub fn floods(bed: &str, onsets: &[i64], n: u32, window: i64) -> Vec<Flood> {
    let n = n.max(1) as i64;
    // +1 at each onset, -1 a window later; at one instant the -1s go first, and the
    // count is judged only after every change at that instant.
    let mut ev: Vec<(i64, i64)> = onsets
        .iter()
        .flat_map(|&t| [(t, 1), (t.saturating_add(window), -1)])
        .collect();
    ev.sort_unstable();
    let mut out = Vec::new();
    let mut count = 0i64;
    let mut start: Option<i64> = None;
    let mut i = 0;
    while i < ev.len() {
        let t = ev[i].0;
        while i < ev.len() && ev[i].0 == t {
            count += ev[i].1;
            i += 1;
        }
        match start {
            None if count >= n => start = Some(t),
            Some(s) if count < n => {
                // The alarms that made it up: raised from a window before its start on.
                let alarms = onsets
                    .iter()
                    .filter(|&&o| o > s.saturating_sub(window) && o < t)
                    .count() as u32;
                out.push(Flood {
                    bed: bed.to_string(),
                    start_ms: s,
                    end_ms: t,
                    alarms,
                });
                start = None;
            }
            _ => {}
        }
    }
    out
}

fn technical_cause(condition: &str) -> String {
    match condition {
        "tech:device_silent" => "no data".into(),
        "tech:storage_failing" | "tech:database_replaced" | "tech:database_damaged" => {
            "storage".into()
        }
        "tech:audio_unavailable" => "audio".into(),
        "tech:ui_heartbeat_missing" => "display".into(),
        "tech:self_check_failed" => "self-check".into(),
        "tech:sentinel_down" => "sentinel".into(),
        c if c.starts_with("peer:") => "peer station".into(),
        c => match c.strip_prefix("tech:no_value:").map(str::parse::<u32>) {
            Some(Ok(ward_model::codes::MDC_ECG_HEART_RATE)) => "lead off".into(),
            Some(_) => "sensor off".into(),
            None => c.trim_start_matches("tech:").replace('_', " "),
        },
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// Adds one episode to a scope's counts.
fn count(f: &mut Figures, e: &Episode, s: &BurdenSettings) {
    f.alarms += 1;
    match e.priority.as_str() {
        "high" => f.high += 1,
        "medium" => f.medium += 1,
        _ => f.low += 1,
    }
    match AlarmKind::of(&e.condition) {
        AlarmKind::Physiological => f.physiological += 1,
        AlarmKind::Technical => f.technical += 1,
        AlarmKind::Device => f.device += 1,
    }
    f.audible += u32::from(e.audible);
    f.self_limiting += u32::from(self_limiting(e, s));
    f.acknowledged_at_peer += u32::from(e.ack_at_peer);
}

fn self_limiting(e: &Episode, s: &BurdenSettings) -> bool {
    e.cause_end_ms
        .is_some_and(|c| c - e.onset_ms <= s.self_limiting_ms && e.ack_ms.is_none_or(|a| a >= c))
}

/// The figures of `[from_ms, to_ms)` from the alarm log rows (oldest first), computed at
/// `now_ms` (what is still open is open until then). `beds` are the unit's beds (the
/// denominator of per-bed figures); beds seen only in the log are added.
pub fn compute(
    rows: &[AlarmLogRow],
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
    beds: &[String],
    settings: BurdenSettings,
) -> AlarmStats {
    let reading = read(rows, now_ms.max(to_ms));
    let span = (to_ms - from_ms).max(1);
    let days = span as f64 / 86_400_000.0;
    let mut bed_list: Vec<String> = beds.to_vec();
    for e in &reading.episodes {
        if let Some(b) = &e.bed {
            if !bed_list.contains(b) {
                bed_list.push(b.clone());
            }
        }
    }
    bed_list.sort();
    let in_period: Vec<&Episode> = reading
        .episodes
        .iter()
        .filter(|e| e.onset_ms >= from_ms && e.onset_ms < to_ms)
        .collect();

    let mut unit = Figures::default();
    let mut per_bed: BTreeMap<String, Figures> = bed_list
        .iter()
        .map(|b| (b.clone(), Figures::default()))
        .collect();
    let mut per_cond: BTreeMap<(Option<String>, String), (ConditionFigures, Vec<i64>)> =
        BTreeMap::new();
    let mut per_day: BTreeMap<(String, u32), u32> = BTreeMap::new();
    let mut causes: BTreeMap<String, u32> = BTreeMap::new();
    for e in &in_period {
        count(&mut unit, e, &settings);
        if let Some(b) = &e.bed {
            count(per_bed.entry(b.clone()).or_default(), e, &settings);
            if e.audible {
                let day = ((e.onset_ms - from_ms) / 86_400_000) as u32;
                *per_day.entry((b.clone(), day)).or_default() += 1;
            }
        }
        let kind = AlarmKind::of(&e.condition);
        if kind == AlarmKind::Technical {
            *causes.entry(technical_cause(&e.condition)).or_default() += 1;
        }
        let c = per_cond
            .entry((e.bed.clone(), e.condition.clone()))
            .or_insert_with(|| {
                (
                    ConditionFigures {
                        bed: e.bed.clone(),
                        condition: e.condition.clone(),
                        label: e.label.clone(),
                        kind,
                        alarms: 0,
                        audible: 0,
                        self_limiting: 0,
                        median_ack_ms: None,
                    },
                    Vec::new(),
                )
            });
        c.0.alarms += 1;
        c.0.audible += u32::from(e.audible);
        c.0.self_limiting += u32::from(self_limiting(e, &settings));
        if let Some(a) = e.ack_ms {
            c.1.push(a - e.onset_ms);
        }
    }

    // Floods: every onset of the bed counts, so one that began just before the period can
    // bring a flood into it; a flood belongs to the period it starts in.
    let mut all_floods = Vec::new();
    for bed in &bed_list {
        let mut onsets: Vec<i64> = reading
            .episodes
            .iter()
            // (`i64::MIN` is a restored alarm whose onset is older than the rows read.)
            .filter(|e| {
                e.bed.as_deref() == Some(bed) && e.onset_ms > i64::MIN && e.onset_ms < to_ms
            })
            .map(|e| e.onset_ms)
            .collect();
        onsets.sort_unstable();
        for f in floods(
            bed,
            &onsets,
            settings.flood_alarms,
            settings.flood_window_ms,
        ) {
            if f.start_ms >= from_ms && f.start_ms < to_ms {
                let fig = per_bed.entry(bed.clone()).or_default();
                fig.floods += 1;
                fig.flood_ms += f.end_ms - f.start_ms;
                unit.floods += 1;
                unit.flood_ms += f.end_ms - f.start_ms;
                all_floods.push(f);
            }
        }
    }
    all_floods.sort_by_key(|f| f.start_ms);

    // Pauses: bed-time shares inside the period.
    let mut audio_total = 0i64;
    let mut alarm_total = 0i64;
    for (bed, fig) in per_bed.iter_mut() {
        let silenced: Vec<(i64, i64)> = reading
            .episodes
            .iter()
            .filter(|e| e.bed.as_deref() == Some(bed))
            .flat_map(|e| e.silenced.iter().copied())
            .collect();
        let audio = covered(&silenced, from_ms, to_ms);
        let paused = reading
            .alarm_paused
            .get(bed)
            .map_or(0, |v| covered(v, from_ms, to_ms));
        audio_total += audio;
        alarm_total += paused;
        fig.audio_paused_share = ratio(audio as f64, span as f64);
        fig.alarm_paused_share = ratio(paused as f64, span as f64);
        fig.audible_per_bed_day = ratio(fig.audible as f64, days);
        fig.technical_share = ratio(fig.technical as f64, fig.alarms as f64);
        fig.audio_pauses = reading
            .audio_pause_actions
            .iter()
            .filter(|(t, b)| *t >= from_ms && *t < to_ms && b.as_deref() == Some(bed))
            .count() as u32;
        fig.alarm_pauses = reading
            .alarm_pause_actions
            .iter()
            .filter(|(t, b)| *t >= from_ms && *t < to_ms && b == bed)
            .count() as u32;
    }
    let bed_time = span as f64 * bed_list.len().max(1) as f64;
    unit.audio_paused_share = ratio(audio_total as f64, bed_time);
    unit.alarm_paused_share = ratio(alarm_total as f64, bed_time);
    unit.audible_per_bed_day = ratio(unit.audible as f64, days * bed_list.len().max(1) as f64);
    unit.technical_share = ratio(unit.technical as f64, unit.alarms as f64);
    unit.audio_pauses = reading
        .audio_pause_actions
        .iter()
        .filter(|(t, _)| *t >= from_ms && *t < to_ms)
        .count() as u32;
    unit.alarm_pauses = reading
        .alarm_pause_actions
        .iter()
        .filter(|(t, _)| *t >= from_ms && *t < to_ms)
        .count() as u32;

    let response = ["high", "medium", "low"]
        .iter()
        .map(|p| {
            let of: Vec<&&Episode> = in_period.iter().filter(|e| e.priority == *p).collect();
            let ack: Vec<i64> = of
                .iter()
                .filter_map(|e| e.ack_ms.map(|a| a - e.onset_ms))
                .collect();
            let resolve: Vec<i64> = of
                .iter()
                .filter_map(|e| e.end_ms.map(|t| t - e.onset_ms))
                .collect();
            Response {
                priority: p.to_string(),
                alarms: of.len() as u32,
                ack_histogram: ack_histogram(&ack),
                to_acknowledge: Spread::of(ack),
                to_resolve: Spread::of(resolve),
                never_acknowledged: of
                    .iter()
                    .filter(|e| e.end_ms.is_some() && e.ack_ms.is_none())
                    .count() as u32,
            }
        })
        .collect();

    let mut per_condition: Vec<ConditionFigures> = per_cond
        .into_values()
        .map(|(mut c, acks)| {
            c.median_ack_ms = Spread::of(acks).p50_ms;
            c
        })
        .collect();
    per_condition.sort_by(|a, b| b.alarms.cmp(&a.alarms).then(a.bed.cmp(&b.bed)));

    AlarmStats {
        from_ms,
        to_ms,
        settings,
        beds: bed_list,
        unit,
        per_bed: per_bed
            .into_iter()
            .map(|(bed, figures)| BedFigures { bed, figures })
            .collect(),
        per_condition,
        response,
        floods: all_floods,
        technical_causes: causes
            .into_iter()
            .map(|(cause, alarms)| CauseCount { cause, alarms })
            .collect(),
        per_bed_day: per_day
            .into_iter()
            .map(|((bed, day), audible)| BedDay { bed, day, audible })
            .collect(),
        restarts: reading
            .restarts
            .iter()
            .filter(|t| **t >= from_ms && **t < to_ms)
            .count() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log row; `id` 0 is a bed- or station-level row.
    fn row(t: i64, kind: &str, id: u64, bed: Option<&str>, cond: &str, prio: &str) -> AlarmLogRow {
        AlarmLogRow {
            t_ms: t,
            kind: kind.into(),
            alarm_id: (id > 0).then_some(id),
            bed: bed.map(String::from),
            condition: cond.into(),
            label: cond.into(),
            priority: (!prio.is_empty()).then(|| prio.to_string()),
            value: None,
            limit: None,
            user: None,
            detail: None,
            patient: None,
        }
    }
    fn by(mut r: AlarmLogRow, user: &str) -> AlarmLogRow {
        r.user = Some(user.into());
        r
    }
    fn detail(mut r: AlarmLogRow, d: &str) -> AlarmLogRow {
        r.detail = Some(d.into());
        r
    }
    const DAY: i64 = 86_400_000;
    fn beds() -> Vec<String> {
        vec!["bed-1".into(), "bed-2".into()]
    }

    /// Seven alarms of every kind with known answers for each figure (worked out by hand in
    /// the comments).
    fn day_log() -> Vec<AlarmLogRow> {
        let b1 = Some("bed-1");
        let b2 = Some("bed-2");
        vec![
            // A1: medium, ends by itself after 5 s: self-limiting, never acknowledged.
            row(1_000, "raised", 1, b1, "limit:spo2_low", "medium"),
            row(6_000, "ended", 1, b1, "limit:spo2_low", "medium"),
            // A2: acknowledged after 30 s, ends after 100 s.
            row(100_000, "raised", 2, b1, "limit:hr_high", "medium"),
            by(
                row(130_000, "acknowledged", 2, b1, "limit:hr_high", "medium"),
                "ana",
            ),
            row(200_000, "ended", 2, b1, "limit:hr_high", "medium"),
            // A3: technical, acknowledged at a peer station after 10 s, ends after 20 s.
            row(300_000, "raised", 3, b2, "tech:device_silent", "medium"),
            by(
                row(
                    310_000,
                    "acknowledged",
                    3,
                    b2,
                    "tech:device_silent",
                    "medium",
                ),
                "bo at station st-b",
            ),
            row(320_000, "ended", 3, b2, "tech:device_silent", "medium"),
            // A4: high, latched after 5 s (self-limiting), acknowledged and reset at 60 s.
            row(400_000, "raised", 4, b2, "limit:spo2_desat", "high"),
            row(405_000, "latched", 4, b2, "limit:spo2_desat", "high"),
            by(
                row(460_000, "acknowledged", 4, b2, "limit:spo2_desat", "high"),
                "ana",
            ),
            by(
                row(460_000, "reset", 4, b2, "limit:spo2_desat", "high"),
                "ana",
            ),
            // bed-1 alarm-paused for 120 s; A5 raised inside it: not audible.
            by(
                detail(row(500_000, "alarm_paused", 0, b1, "", ""), "until 620000"),
                "ana",
            ),
            row(510_000, "raised", 5, b1, "limit:spo2_low", "medium"),
            row(620_000, "alarm_pause_ended", 0, b1, "", ""),
            row(630_000, "ended", 5, b1, "limit:spo2_low", "medium"),
            // A6: a device's own alarm, audio-paused for 120 s, never acknowledged.
            row(700_000, "raised", 6, b2, "device:apnea", "high"),
            by(
                detail(
                    row(710_000, "audio_paused", 6, b2, "device:apnea", "high"),
                    "until 830000",
                ),
                "ana",
            ),
            row(830_000, "audio_pause_ended", 6, b2, "device:apnea", "high"),
            row(900_000, "ended", 6, b2, "device:apnea", "high"),
            // A7: the station's own technical alarm, 1 s.
            row(
                1_000_000,
                "raised",
                7,
                None,
                "tech:audio_unavailable",
                "high",
            ),
            row(
                1_001_000,
                "ended",
                7,
                None,
                "tech:audio_unavailable",
                "high",
            ),
        ]
    }

    #[test]
    fn every_unit_figure_of_a_known_day() {
        let s = compute(&day_log(), 0, DAY, DAY, &beds(), BurdenSettings::default());
        let u = &s.unit;
        assert_eq!((u.alarms, u.high, u.medium, u.low), (7, 3, 4, 0));
        assert_eq!((u.physiological, u.technical, u.device), (4, 2, 1));
        assert_eq!(u.audible, 6, "A5 was raised inside an alarm pause");
        assert_eq!(
            u.audible_per_bed_day, 3.0,
            "6 audible over 2 beds and 1 day"
        );
        assert_eq!(u.self_limiting, 3, "A1, A4 (latched at 5 s), A7");
        assert_eq!(u.technical_share, 2.0 / 7.0);
        assert_eq!(u.audio_paused_share, 120_000.0 / (2.0 * DAY as f64));
        assert_eq!(u.alarm_paused_share, 120_000.0 / (2.0 * DAY as f64));
        assert_eq!((u.audio_pauses, u.alarm_pauses), (1, 1));
        assert_eq!(u.acknowledged_at_peer, 1);
        assert_eq!((u.floods, u.flood_ms), (0, 0));
        assert_eq!(s.restarts, 0);
        let causes: Vec<(&str, u32)> = s
            .technical_causes
            .iter()
            .map(|c| (c.cause.as_str(), c.alarms))
            .collect();
        assert_eq!(causes, vec![("audio", 1), ("no data", 1)]);
    }

    #[test]
    fn response_times_by_priority_are_nearest_rank_percentiles() {
        let s = compute(&day_log(), 0, DAY, DAY, &beds(), BurdenSettings::default());
        let high = &s.response[0];
        assert_eq!((high.priority.as_str(), high.alarms), ("high", 3));
        assert_eq!(
            high.to_acknowledge,
            Spread {
                n: 1,
                p50_ms: Some(60_000),
                p90_ms: Some(60_000),
                max_ms: Some(60_000)
            }
        );
        // Resolved after 1 s (A7), 60 s (A4, its reset), 200 s (A6).
        assert_eq!(
            high.to_resolve,
            Spread {
                n: 3,
                p50_ms: Some(60_000),
                p90_ms: Some(200_000),
                max_ms: Some(200_000)
            }
        );
        assert_eq!(high.never_acknowledged, 2);
        assert_eq!(
            high.ack_histogram,
            vec![0, 0, 0, 1, 0, 0],
            "60 s is in 1-2 min"
        );
        let medium = &s.response[1];
        assert_eq!(medium.alarms, 4);
        assert_eq!(
            medium.to_acknowledge,
            Spread {
                n: 2,
                p50_ms: Some(10_000),
                p90_ms: Some(30_000),
                max_ms: Some(30_000)
            }
        );
        assert_eq!(
            medium.to_resolve,
            Spread {
                n: 4,
                p50_ms: Some(20_000),
                p90_ms: Some(120_000),
                max_ms: Some(120_000)
            }
        );
        assert_eq!(medium.never_acknowledged, 2);
        assert_eq!(medium.ack_histogram, vec![0, 1, 1, 0, 0, 0]);
        assert_eq!(s.response[2].alarms, 0);
        assert_eq!(s.response[2].to_acknowledge, Spread::default());
    }

    #[test]
    fn per_bed_and_per_condition_figures() {
        let s = compute(&day_log(), 0, DAY, DAY, &beds(), BurdenSettings::default());
        let b1 = &s.per_bed[0].figures;
        assert_eq!(s.per_bed[0].bed, "bed-1");
        assert_eq!((b1.alarms, b1.audible, b1.audible_per_bed_day), (3, 2, 2.0));
        assert_eq!(b1.alarm_paused_share, 120_000.0 / DAY as f64);
        assert_eq!(b1.audio_paused_share, 0.0);
        let b2 = &s.per_bed[1].figures;
        assert_eq!(
            (b2.alarms, b2.technical, b2.device, b2.acknowledged_at_peer),
            (3, 1, 1, 1)
        );
        assert_eq!(b2.audio_paused_share, 120_000.0 / DAY as f64);
        assert_eq!(b2.audio_pauses, 1);
        let spo2 = s
            .per_condition
            .iter()
            .find(|c| c.condition == "limit:spo2_low")
            .unwrap();
        assert_eq!((spo2.alarms, spo2.audible, spo2.self_limiting), (2, 1, 1));
        assert_eq!(spo2.median_ack_ms, None);
        assert_eq!(s.per_condition[0].alarms, 2, "most alarms first");
        let station = s.per_condition.iter().find(|c| c.bed.is_none()).unwrap();
        assert_eq!(station.kind, AlarmKind::Technical);
        let days: Vec<(&str, u32, u32)> = s
            .per_bed_day
            .iter()
            .map(|d| (d.bed.as_str(), d.day, d.audible))
            .collect();
        assert_eq!(days, vec![("bed-1", 0, 2), ("bed-2", 0, 3)]);
    }

    #[test]
    fn a_period_that_cuts_an_alarm_in_half_counts_it_once_where_it_began() {
        let b = Some("bed-1");
        let rows = vec![
            row(DAY - 60_000, "raised", 1, b, "limit:hr_low", "medium"),
            by(
                detail(
                    row(DAY - 30_000, "audio_paused", 1, b, "limit:hr_low", "medium"),
                    "until 0",
                ),
                "ana",
            ),
            row(
                DAY + 30_000,
                "audio_pause_ended",
                1,
                b,
                "limit:hr_low",
                "medium",
            ),
            row(DAY + 60_000, "ended", 1, b, "limit:hr_low", "medium"),
        ];
        let first = compute(&rows, 0, DAY, 2 * DAY, &beds(), BurdenSettings::default());
        assert_eq!(first.unit.alarms, 1);
        assert_eq!(
            first.response[1].to_resolve.max_ms,
            Some(120_000),
            "its end is read after the period"
        );
        assert_eq!(
            first.per_bed[0].figures.audio_paused_share,
            30_000.0 / DAY as f64
        );
        let second = compute(
            &rows,
            DAY,
            2 * DAY,
            2 * DAY,
            &beds(),
            BurdenSettings::default(),
        );
        assert_eq!(second.unit.alarms, 0, "counted in the period it began in");
        assert_eq!(second.unit.audio_pauses, 0);
        assert_eq!(
            second.per_bed[0].figures.audio_paused_share,
            30_000.0 / DAY as f64,
            "the pause's second half"
        );
    }

    #[test]
    fn a_restart_in_the_middle_of_an_alarm_is_one_alarm() {
        let b = Some("bed-2");
        let rows = vec![
            row(1_000, "raised", 5, b, "limit:spo2_desat", "high"),
            by(
                detail(
                    row(20_000, "audio_paused", 5, b, "limit:spo2_desat", "high"),
                    "until 140000",
                ),
                "ana",
            ),
            // The station is killed; nothing ends the pause in the log.
            row(50_000, "restarted", 0, None, "", ""),
            detail(
                row(50_000, "restored", 9, b, "limit:spo2_desat", "high"),
                "alarm 5 before the restart, raised at 1000",
            ),
            by(
                row(60_000, "acknowledged", 9, b, "limit:spo2_desat", "high"),
                "ana",
            ),
            row(70_000, "ended", 9, b, "limit:spo2_desat", "high"),
        ];
        let s = compute(&rows, 0, DAY, DAY, &beds(), BurdenSettings::default());
        assert_eq!(s.unit.alarms, 1);
        assert_eq!(s.restarts, 1);
        assert_eq!(s.response[0].to_acknowledge.max_ms, Some(59_000));
        assert_eq!(s.response[0].to_resolve.max_ms, Some(69_000));
        assert_eq!(s.response[0].never_acknowledged, 0);
        assert_eq!(
            s.per_bed[1].figures.audio_paused_share,
            30_000.0 / DAY as f64,
            "a pause ends with the station"
        );
        // The acknowledgement made before the cause ended: not self-limiting.
        assert_eq!(s.unit.self_limiting, 0);

        // An alarm restored from before the rows read (its raise is older than the log
        // read) is not counted here, and its end is not taken for another's.
        let mut older = rows.clone();
        older.push(detail(
            row(80_000, "restored", 10, b, "limit:hr_low", "medium"),
            "alarm 3 before the restart, raised at 5",
        ));
        older.push(row(90_000, "ended", 10, b, "limit:hr_low", "medium"));
        let s = compute(&older, 0, DAY, DAY, &beds(), BurdenSettings::default());
        assert_eq!((s.unit.alarms, s.response[1].alarms), (1, 0));
    }

    #[test]
    fn floods_start_at_the_nth_alarm_and_end_a_window_after_the_count_falls() {
        // Twelve alarms 30 s apart: the tenth (270 s) starts the flood; the count falls to
        // nine when the third leaves the window (60 s + 600 s).
        let onsets: Vec<i64> = (0..12).map(|i| i * 30_000).collect();
        let f = floods("bed-3", &onsets, 10, 600_000);
        assert_eq!(
            f,
            vec![Flood {
                bed: "bed-3".into(),
                start_ms: 270_000,
                end_ms: 660_000,
                alarms: 12
            }]
        );
        // Nine are not a flood; two bursts far apart are two floods.
        assert!(floods("bed-3", &onsets[..9], 10, 600_000).is_empty());
        let mut two = onsets.clone();
        two.extend(onsets.iter().map(|t| t + DAY));
        assert_eq!(floods("bed-3", &two, 10, 600_000).len(), 2);
        // An alarm leaving the window at the instant another arrives keeps the count: the
        // flood does not end at 600 s (the first leaves as the eleventh comes), but at 660 s.
        let edge: Vec<i64> = (0..11).map(|i| i * 60_000).collect();
        let e = floods("bed-3", &edge, 10, 600_000);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].start_ms, e[0].end_ms, e[0].alarms),
            (540_000, 660_000, 11)
        );
    }

    #[test]
    fn floods_are_counted_per_bed_and_in_the_period_they_start() {
        let rows: Vec<AlarmLogRow> = (0..10)
            .map(|i| {
                row(
                    DAY - 300_000 + i * 20_000,
                    "raised",
                    i as u64 + 1,
                    Some("bed-1"),
                    "limit:hr_high",
                    "medium",
                )
            })
            .collect();
        let s = compute(&rows, 0, DAY, DAY, &beds(), BurdenSettings::default());
        assert_eq!(s.unit.floods, 1);
        assert_eq!(s.floods[0].start_ms, DAY - 300_000 + 180_000);
        // It ends when the first onset leaves the window, after the period's end.
        assert_eq!(s.floods[0].end_ms, DAY + 300_000);
        assert_eq!((s.unit.flood_ms, s.floods[0].alarms), (420_000, 10));
        assert_eq!(s.per_bed[0].figures.flood_ms, 420_000);
        assert_eq!(s.per_bed[0].figures.floods, 1);
        assert_eq!(s.per_bed[1].figures.floods, 0);
        let next = compute(
            &rows,
            DAY,
            2 * DAY,
            2 * DAY,
            &beds(),
            BurdenSettings::default(),
        );
        assert_eq!(next.unit.floods, 0);
    }

    #[test]
    fn spread_and_coverage_helpers() {
        assert_eq!(Spread::of(vec![]), Spread::default());
        assert_eq!(Spread::of(vec![5]).p90_ms, Some(5));
        let ten: Vec<i64> = (1..=10).collect();
        let s = Spread::of(ten);
        assert_eq!((s.p50_ms, s.p90_ms, s.max_ms), (Some(5), Some(9), Some(10)));
        assert_eq!(covered(&[(0, 10), (5, 20), (30, 40)], 0, 35), 25);
        assert_eq!(covered(&[(-5, 5)], 0, 100), 5);
        assert_eq!(technical_cause("tech:no_value:147842"), "lead off");
        assert_eq!(technical_cause("tech:no_value:150456"), "sensor off");
        assert_eq!(technical_cause("peer:4w"), "peer station");
    }
}
