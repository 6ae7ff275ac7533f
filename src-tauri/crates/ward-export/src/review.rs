//! Review: full disclosure and trends shaped for the window and the exports, from the store.
//!
//! Waveforms come back as physical values in segments of contiguous samples (a gap in the
//! stored data is a gap in the drawing, never bridged). A wide window can be reduced to
//! min/max pairs per bucket, which keeps every peak visible at any zoom.

use crate::error::ExportError;
use serde::Serialize;
use ward_model::codes::{self, known_vital};
use ward_store::{AlarmLogRow, Store, TrendPoint, TrendResolution};

/// Station-local hours and minutes, as the patient line says when a patient came.
fn hhmm(ms: i64) -> String {
    use chrono::TimeZone;
    chrono::Local
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// The vitals a trend view and report show, in display order.
pub const TREND_CODES: &[u32] = &[
    codes::MDC_ECG_HEART_RATE,
    codes::MDC_PULS_OXIM_SAT_O2,
    codes::MDC_RESP_RATE,
    codes::MDC_PRESS_BLD_NONINV_SYS,
    codes::MDC_PRESS_BLD_NONINV_DIA,
    codes::MDC_PRESS_BLD_NONINV_MEAN,
    codes::MDC_TEMP_BODY,
];

/// The longest window one review request may ask for: a screen of full disclosure is
/// minutes, and a day of ECG would be 21 million samples.
pub const MAX_WAVE_WINDOW_MS: i64 = 30 * 60_000;
/// Trends go back at most 31 days (the rollups' longest useful window).
pub const MAX_TREND_WINDOW_MS: i64 = 31 * 86_400_000;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct WaveSegment {
    /// Time of the first value (ms since the epoch, fractional).
    pub t0_ms: f64,
    /// Time between values in ms (for reduced segments, between pairs).
    pub step_ms: f64,
    /// Physical values; when `reduced`, alternating min and max of each step.
    pub values: Vec<f32>,
}

/// The patient line of whoever was in `bed` during `[from_ms, to_ms)` (the admission
/// history, not today's census: a strip of last night names last night's patient). When the
/// bed changed hands in the window, each patient with the time they came; the part of the
/// window before the first admission is said too.
pub fn patient_line(
    store: &Store,
    bed: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<String, ExportError> {
    let who: Vec<(i64, String)> = store
        .patients_between(bed, from_ms, to_ms)?
        .into_iter()
        .filter_map(|(t, j)| {
            Some((
                t,
                serde_json::from_str::<ward_model::Patient>(&j).ok()?.line(),
            ))
        })
        .collect();
    if who.is_empty() {
        return Ok("no patient admitted".into());
    }
    let mut parts = Vec::new();
    if who[0].0 > from_ms {
        parts.push(format!("no patient admitted until {}", hhmm(who[0].0)));
    }
    for (i, (t, line)) in who.iter().enumerate() {
        if i == 0 && *t <= from_ms {
            parts.push(line.clone());
        } else {
            parts.push(format!("{line} from {}", hhmm(*t)));
        }
    }
    Ok(parts.join("; "))
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ReviewWave {
    pub bed: String,
    pub channel: u32,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Stored samples in the window (before any reduction).
    pub samples: u64,
    pub reduced: bool,
    pub segments: Vec<WaveSegment>,
    /// Who was in the bed in this window (review names the patient of its time).
    pub patient: String,
    /// Spans the station could not write (disk full) overlapping the window: "full
    /// disclosure has a gap from … to …".
    pub gaps: Vec<ward_store::StoreGap>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TrendSeries {
    pub code: u32,
    pub label: String,
    pub unit: String,
    pub points: Vec<TrendPoint>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ReviewTrend {
    pub bed: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub resolution: TrendResolution,
    pub series: Vec<TrendSeries>,
    /// The bed's alarm log rows in the window (markers on the trend).
    pub alarms: Vec<AlarmLogRow>,
}

fn check_window(from_ms: i64, to_ms: i64, max_ms: i64, what: &str) -> Result<(), ExportError> {
    if to_ms <= from_ms {
        return Err(ExportError::BadRequest(format!(
            "{what}: the window ends ({to_ms}) before it starts ({from_ms})"
        )));
    }
    if to_ms - from_ms > max_ms {
        return Err(ExportError::BadRequest(format!(
            "{what}: a window of {} s is longer than the {} s allowed",
            (to_ms - from_ms) / 1000,
            max_ms / 1000
        )));
    }
    Ok(())
}

/// One bed's channel over `[from_ms, to_ms)`. With `max_points` > 0 and more samples than
/// that, each segment is reduced to min/max pairs so that about `max_points` values return.
pub fn wave(
    store: &Store,
    bed: &str,
    channel: u32,
    from_ms: i64,
    to_ms: i64,
    max_points: usize,
) -> Result<ReviewWave, ExportError> {
    check_window(from_ms, to_ms, MAX_WAVE_WINDOW_MS, "waveform review")?;
    let chunks = store.wave_window(bed, channel, from_ms * 1000, to_ms * 1000)?;
    let samples: u64 = chunks.iter().map(|c| c.samples.len() as u64).sum();
    // Join chunks that follow on (same rate, next sample where expected) into one segment.
    let mut segments: Vec<WaveSegment> = Vec::new();
    for c in &chunks {
        let step_ms = 1e6 / c.rate_mhz.max(1) as f64;
        let t0_ms = c.t0_us as f64 / 1000.0;
        let values = c.samples.iter().map(|&s| s as f32 * c.scale + c.offset);
        match segments.last_mut() {
            Some(last)
                if (last.step_ms - step_ms).abs() < 1e-9
                    && (last.t0_ms + last.values.len() as f64 * step_ms - t0_ms).abs()
                        < step_ms / 2.0 =>
            {
                last.values.extend(values)
            }
            _ => segments.push(WaveSegment {
                t0_ms,
                step_ms,
                values: values.collect(),
            }),
        }
    }
    let reduced = max_points > 0 && samples as usize > max_points;
    if reduced {
        // Pairs per segment in proportion to its share of the samples.
        let per_pair = (samples as f64 / (max_points as f64 / 2.0)).ceil().max(1.0) as usize;
        for s in &mut segments {
            let mut out = Vec::with_capacity(s.values.len() / per_pair * 2 + 2);
            for b in s.values.chunks(per_pair) {
                let (lo, hi) = b
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                out.push(lo);
                out.push(hi);
            }
            s.values = out;
            s.step_ms *= per_pair as f64;
        }
    }
    Ok(ReviewWave {
        bed: bed.to_string(),
        channel,
        from_ms,
        to_ms,
        samples,
        reduced,
        segments,
        patient: patient_line(store, bed, from_ms, to_ms)?,
        gaps: store.gaps_between(from_ms, to_ms)?,
    })
}

/// One bed's trend of every [`TREND_CODES`] vital over `[from_ms, to_ms)`, raw up to two
/// hours and by minute beyond, with the bed's alarm log rows in the window.
pub fn trend(
    store: &Store,
    bed: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<ReviewTrend, ExportError> {
    check_window(from_ms, to_ms, MAX_TREND_WINDOW_MS, "trend review")?;
    let resolution = TrendResolution::for_span_ms(to_ms - from_ms);
    let mut series = Vec::new();
    for &code in TREND_CODES {
        let k = known_vital(code);
        series.push(TrendSeries {
            code,
            label: k.map(|k| k.label).unwrap_or("?").to_string(),
            unit: k.map(|k| k.unit_label).unwrap_or("").to_string(),
            points: store.trend(bed, code, from_ms, to_ms, resolution)?,
        });
    }
    Ok(ReviewTrend {
        bed: bed.to_string(),
        from_ms,
        to_ms,
        resolution,
        series,
        alarms: store.alarm_log_between(bed, from_ms, to_ms)?,
    })
}

/// The newest value of `code` at the bed in the five minutes up to `at_ms`: the numerics
/// printed on a strip.
pub fn value_at(
    store: &Store,
    bed: &str,
    code: u32,
    at_ms: i64,
) -> Result<Option<f64>, ExportError> {
    Ok(store
        .trend(bed, code, at_ms - 300_000, at_ms + 1, TrendResolution::Raw)?
        .last()
        .map(|p| p.value))
}

/// The 30 s a nurse reviews around an alarm: 15 s before it and 15 s after.
pub fn around(t_ms: i64) -> (i64, i64) {
    (t_ms - 15_000, t_ms + 15_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_store::{Record, WaveChunk};

    fn store_with_gap() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("r.sqlite")).unwrap();
        let chunk = |t0_s: i64| {
            Record::Wave(WaveChunk {
                device: "mon".into(),
                bed: Some("bed-01".into()),
                channel: codes::MDC_ECG_ELEC_POTL_II,
                t0_us: t0_s * 1_000_000,
                rate_mhz: 250_000,
                scale: 0.01,
                offset: 0.0,
                unit: codes::UNIT_MV,
                samples: (0..250).map(|i| (i % 50) as i16).collect(),
            })
        };
        // Seconds 100, 101, then a gap, then 103.
        s.write_batch(&[chunk(100), chunk(101), chunk(103)])
            .unwrap();
        (dir, s)
    }

    fn ecg_100_to_104(s: &Store, max_points: usize) -> ReviewWave {
        wave(
            s,
            "bed-01",
            codes::MDC_ECG_ELEC_POTL_II,
            100_000,
            104_000,
            max_points,
        )
        .unwrap()
    }

    #[test]
    fn contiguous_chunks_join_and_a_gap_starts_a_new_segment() {
        let (_d, s) = store_with_gap();
        let w = ecg_100_to_104(&s, 0);
        assert_eq!(w.samples, 750);
        assert_eq!(w.segments.len(), 2);
        assert_eq!(w.segments[0].values.len(), 500);
        assert_eq!(w.segments[1].t0_ms, 103_000.0);
        assert!((w.segments[0].values[49] - 0.49).abs() < 1e-6);
    }

    #[test]
    fn a_reduced_window_keeps_every_peak() {
        let (_d, s) = store_with_gap();
        let w = ecg_100_to_104(&s, 60);
        assert!(w.reduced);
        let n: usize = w.segments.iter().map(|s| s.values.len()).sum();
        assert!(n <= 64, "{n}");
        let max = w
            .segments
            .iter()
            .flat_map(|s| s.values.iter())
            .fold(f32::MIN, |a, &b| a.max(b));
        assert!((max - 0.49).abs() < 1e-6);
    }

    #[test]
    fn windows_are_checked() {
        let (_d, s) = store_with_gap();
        let e = wave(&s, "bed-01", 1, 5, 5, 0).unwrap_err().to_string();
        assert!(e.contains("ends"), "{e}");
        let e = wave(&s, "bed-01", 1, 0, 3_600_000, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("longer than the 1800 s"), "{e}");
        let e = trend(&s, "bed-01", 0, 40 * 86_400_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("trend review"), "{e}");
    }
}
