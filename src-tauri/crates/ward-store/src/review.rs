//! Review queries: full disclosure (stored waveforms of one bed and channel over a time
//! window) and trends (one bed's vital over a window, raw or from the 1-minute rollups).
//!
//! Both are by bed, through the `(bed, …, time)` indexes, so the cost depends on the window
//! asked for, not on how much the ring buffer holds.

use crate::{AlarmLogRow, Store, StoreError, WaveChunk};
use rusqlite::params;

/// Which table a trend reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum TrendResolution {
    /// Every stored value (1 Hz from the simulator).
    Raw,
    /// One point per minute: mean, minimum and maximum of the minute's values.
    Minute,
}

impl TrendResolution {
    /// Raw up to two hours (at most 7,200 points at 1 Hz), minutes beyond.
    pub fn for_span_ms(span_ms: i64) -> Self {
        if span_ms <= 2 * 3_600_000 {
            Self::Raw
        } else {
            Self::Minute
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TrendPoint {
    /// The value's time (raw) or the minute's start (rollup).
    pub t_ms: i64,
    /// The value (raw) or the minute's mean.
    pub value: f64,
    pub min: f64,
    pub max: f64,
    /// How many values the point stands for.
    pub n: u32,
}

/// The longest a stored chunk can be (the chunker closes them at one second); a chunk that
/// starts this long before the window can still reach into it.
const MAX_CHUNK_US: i64 = 2_000_000;

impl Store {
    /// The waveform of one bed and channel in `[from_us, to_us)`, as chunks cut to the window,
    /// in time order. Samples are exactly as stored.
    pub fn wave_window(
        &self,
        bed: &str,
        channel: u32,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<WaveChunk>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT device, bed, channel, t0_us, rate_mhz, scale, offset, unit, samples FROM wave_chunks
             WHERE bed = ?1 AND channel = ?2 AND t0_us >= ?3 AND t0_us < ?4 ORDER BY t0_us",
        )?;
        let rows = st.query_map(
            params![bed, channel, from_us.saturating_sub(MAX_CHUNK_US), to_us],
            crate::wave_chunk,
        )?;
        let mut out = Vec::new();
        for c in rows {
            if let Some(c) = cut(c?, from_us, to_us) {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// One bed's vital `code` in `[from_ms, to_ms)`, oldest first. Values a device sent as
    /// "not available" are not points.
    pub fn trend(
        &self,
        bed: &str,
        code: u32,
        from_ms: i64,
        to_ms: i64,
        resolution: TrendResolution,
    ) -> Result<Vec<TrendPoint>, StoreError> {
        match resolution {
            TrendResolution::Raw => {
                let mut st = self.conn.prepare_cached(
                    "SELECT ts_ms, value FROM vitals
                     WHERE bed = ?1 AND code = ?2 AND ts_ms >= ?3 AND ts_ms < ?4 AND value IS NOT NULL
                     ORDER BY ts_ms, id",
                )?;
                let rows = st.query_map(params![bed, code, from_ms, to_ms], |r| {
                    let v: f64 = r.get(1)?;
                    Ok(TrendPoint {
                        t_ms: r.get(0)?,
                        value: v,
                        min: v,
                        max: v,
                        n: 1,
                    })
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            }
            TrendResolution::Minute => {
                // Minutes that start inside the window.
                let first = from_ms.div_euclid(60_000) + i64::from(from_ms.rem_euclid(60_000) != 0);
                let end = to_ms.div_euclid(60_000) + i64::from(to_ms.rem_euclid(60_000) != 0);
                let mut st = self.conn.prepare_cached(
                    "SELECT minute, n, v_sum, v_min, v_max FROM vitals_1m
                     WHERE bed = ?1 AND code = ?2 AND minute >= ?3 AND minute < ?4 ORDER BY minute",
                )?;
                let rows = st.query_map(params![bed, code, first, end], |r| {
                    let n: i64 = r.get(1)?;
                    let sum: f64 = r.get(2)?;
                    Ok(TrendPoint {
                        t_ms: r.get::<_, i64>(0)? * 60_000,
                        value: sum / n.max(1) as f64,
                        min: r.get(3)?,
                        max: r.get(4)?,
                        n: n.clamp(0, u32::MAX as i64) as u32,
                    })
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            }
        }
    }

    /// The gaps in full disclosure that overlap `[from_ms, to_ms)`, oldest first.
    pub fn gaps_between(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<crate::StoreGap>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT from_ms, to_ms, vitals, waves, events, reason FROM store_gaps
             WHERE to_ms >= ?1 AND from_ms < ?2 ORDER BY from_ms",
        )?;
        let rows = st.query_map(params![from_ms, to_ms], |r| {
            Ok(crate::StoreGap {
                from_ms: r.get(0)?,
                to_ms: r.get(1)?,
                vitals: r.get::<_, i64>(2)?.max(0) as u64,
                waves: r.get::<_, i64>(3)?.max(0) as u64,
                events: r.get::<_, i64>(4)?.max(0) as u64,
                reason: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every alarm log row in `[from_ms, to_ms)`, in the order written (alarm statistics).
    pub fn alarm_log_range(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<AlarmLogRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT t_ms, kind, alarm_id, bed, condition, label, priority, value, limit_value, user, detail, patient
             FROM alarm_log WHERE t_ms >= ?1 AND t_ms < ?2 ORDER BY id",
        )?;
        let rows = st.query_map(params![from_ms, to_ms], crate::alarm_log_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One bed's stored values of one measure in `[from_ms, to_ms)`, oldest first, "value
    /// not available" as `None` (the limit review replays them).
    pub fn bed_values(
        &self,
        bed: &str,
        code: u32,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, Option<f64>)>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT ts_ms, value FROM vitals
             WHERE bed = ?1 AND code = ?2 AND ts_ms >= ?3 AND ts_ms < ?4 ORDER BY ts_ms, id",
        )?;
        let rows = st.query_map(params![bed, code, from_ms, to_ms], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One bed's alarm log rows in `[from_ms, to_ms)`, oldest first: the markers on a trend.
    pub fn alarm_log_between(
        &self,
        bed: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<AlarmLogRow>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT t_ms, kind, alarm_id, bed, condition, label, priority, value, limit_value, user, detail, patient
             FROM alarm_log WHERE bed = ?1 AND t_ms >= ?2 AND t_ms < ?3 ORDER BY t_ms, id LIMIT 10000",
        )?;
        let rows = st.query_map(params![bed, from_ms, to_ms], crate::alarm_log_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// The part of `c` inside `[from_us, to_us)`; `None` when nothing is.
fn cut(mut c: WaveChunk, from_us: i64, to_us: i64) -> Option<WaveChunk> {
    let period = 1e9 / c.rate_mhz.max(1) as f64;
    let at = |i: usize| c.t0_us + (i as f64 * period).round() as i64;
    let n = c.samples.len();
    let first = (0..n).find(|&i| at(i) >= from_us)?;
    let end = (first..n).find(|&i| at(i) >= to_us).unwrap_or(n);
    if first == end {
        return None;
    }
    let t0 = at(first);
    c.samples.truncate(end);
    c.samples.drain(..first);
    c.t0_us = t0;
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(t0_us: i64, n: usize) -> WaveChunk {
        WaveChunk {
            device: "mon".into(),
            bed: Some("bed-01".into()),
            channel: 1,
            t0_us,
            rate_mhz: 250_000,
            scale: 1.0,
            offset: 0.0,
            unit: 0,
            samples: (0..n as i16).collect(),
        }
    }

    #[test]
    fn a_chunk_is_cut_to_the_window_on_sample_times() {
        // 250 Hz: a sample every 4 ms.
        let c = cut(chunk(1_000_000, 250), 1_010_000, 1_020_000).unwrap();
        assert_eq!(c.t0_us, 1_012_000);
        assert_eq!(c.samples, vec![3, 4]);
        assert!(cut(chunk(1_000_000, 250), 3_000_000, 4_000_000).is_none());
        assert_eq!(
            cut(chunk(1_000_000, 250), 0, 9_000_000)
                .unwrap()
                .samples
                .len(),
            250
        );
    }

    #[test]
    fn spans_up_to_two_hours_read_raw_values() {
        assert_eq!(
            TrendResolution::for_span_ms(3_600_000),
            TrendResolution::Raw
        );
        assert_eq!(
            TrendResolution::for_span_ms(8 * 3_600_000),
            TrendResolution::Minute
        );
    }
}
