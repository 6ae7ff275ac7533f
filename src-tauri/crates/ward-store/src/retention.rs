//! Retention: the ring buffer's two bounds, time and size.
//!
//! Time: waveform chunks and raw 1 Hz vitals are kept for `waveforms` (full disclosure, 72 h
//! by default); the 1-minute trend rollups and device events for `trends` (30 days).
//!
//! Size: when the pages in use pass 98 % of `max_bytes`, the oldest data is evicted until
//! they are under 96 %: waveform chunks first (the bulk), then raw vitals, then device events,
//! then the oldest rollups. The alarm log, the audit trail (and so the unsynced outbox), users,
//! assignments and limits are never evicted; if they alone fill the cap, the cap is reported
//! as unreachable and nothing else happens.
//!
//! Space is reused, not returned: deleted rows' pages go to SQLite's free list and the next
//! inserts take them, so once the window (or the cap) is full the file stops growing. The file
//! never shrinks by itself (no VACUUM: it would rewrite gigabytes while the station runs).

use crate::{Store, StoreError};
use rusqlite::params;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Waveform chunks and raw vitals.
    pub waveforms: Duration,
    /// 1-minute trend rollups and device events.
    pub trends: Duration,
    /// The cap on the database's pages in use; `None`: time bounds only.
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneStats {
    pub wave_chunks: usize,
    pub vitals: usize,
    pub rollups: usize,
    pub events: usize,
    /// Rows evicted because of the size cap (included in the counts above).
    pub evicted_for_size: usize,
    /// The cap cannot be met by evicting data: the rows that are never evicted fill it.
    pub cap_unreachable: bool,
}

impl PruneStats {
    pub fn total(&self) -> usize {
        self.wave_chunks + self.vitals + self.rollups + self.events
    }
}

/// How big the database is and what it still covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SizeReport {
    /// The file's pages (what it takes on disk, without the WAL).
    pub file_bytes: u64,
    /// Pages holding data; the rest are free and will be reused.
    pub used_bytes: u64,
    /// The oldest waveform chunk's start, when there is one.
    pub oldest_wave_ms: Option<i64>,
}

/// Which [`PruneStats`] field an eviction step counts into.
type Counter = fn(&mut PruneStats) -> &mut usize;

/// Rows deleted per statement: small enough that the writer never holds the lock for long
/// (a station that was off for a week prunes in many short transactions).
const SLICE: i64 = 5000;
/// Waveform chunks evicted per step for the size cap, re-measuring between steps: about
/// 0.5 MB at the simulator's rates, so the cap is met closely without overshooting.
const SIZE_SLICE: i64 = 1000;

impl Store {
    /// Deletes what is older than the retention windows, then enforces the size cap.
    pub fn prune(&mut self, now_ms: i64, keep: Retention) -> Result<PruneStats, StoreError> {
        let wave_cut_ms = now_ms.saturating_sub(keep.waveforms.as_millis() as i64);
        let trend_cut_ms = now_ms.saturating_sub(keep.trends.as_millis() as i64);
        let mut stats = PruneStats {
            wave_chunks: self.delete_in_slices(
                "DELETE FROM wave_chunks WHERE id IN (SELECT id FROM wave_chunks WHERE t0_us < ?1 LIMIT ?2)",
                wave_cut_ms.saturating_mul(1000),
            )?,
            vitals: self.delete_in_slices(
                "DELETE FROM vitals WHERE id IN (SELECT id FROM vitals WHERE ts_ms < ?1 LIMIT ?2)",
                wave_cut_ms,
            )?,
            // A rollup row is dropped once its whole minute is outside the window.
            rollups: self.delete_in_slices(
                "DELETE FROM vitals_1m WHERE (bed, code, minute) IN (SELECT bed, code, minute FROM vitals_1m WHERE minute < ?1 LIMIT ?2)",
                trend_cut_ms.div_euclid(60_000),
            )?,
            events: self.delete_in_slices(
                "DELETE FROM device_events WHERE id IN (SELECT id FROM device_events WHERE ts_ms < ?1 LIMIT ?2)",
                trend_cut_ms,
            )?,
            ..PruneStats::default()
        };
        if let Some(max) = keep.max_bytes {
            self.enforce_size(max, &mut stats)?;
        }
        Ok(stats)
    }

    fn delete_in_slices(&mut self, sql: &str, cut: i64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self.conn.execute(sql, params![cut, SLICE])?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// The size cap alone: the writer calls this after every batch, so the file never
    /// outgrows the cap by more than one batch, whatever the prune interval.
    pub fn enforce_cap(&mut self, max_bytes: u64) -> Result<PruneStats, StoreError> {
        let mut stats = PruneStats::default();
        self.enforce_size(max_bytes, &mut stats)?;
        Ok(stats)
    }

    /// Evicts the oldest data until the pages in use are under 96 % of `max_bytes`, if they
    /// are over 98 %. The 2 % between the marks is the hysteresis that keeps eviction from
    /// running on every batch.
    fn enforce_size(&mut self, max_bytes: u64, stats: &mut PruneStats) -> Result<(), StoreError> {
        let high = max_bytes / 100 * 98;
        let low = max_bytes / 100 * 96;
        if self.used_bytes()? <= high {
            return Ok(());
        }
        // Oldest first, by the time indexes; each step one short transaction.
        let steps: [(&str, Counter); 4] = [
            (
                "DELETE FROM wave_chunks WHERE id IN (SELECT id FROM wave_chunks ORDER BY t0_us LIMIT ?1)",
                |s| &mut s.wave_chunks,
            ),
            (
                "DELETE FROM vitals WHERE id IN (SELECT id FROM vitals ORDER BY ts_ms LIMIT ?1)",
                |s| &mut s.vitals,
            ),
            (
                "DELETE FROM device_events WHERE id IN (SELECT id FROM device_events ORDER BY ts_ms LIMIT ?1)",
                |s| &mut s.events,
            ),
            (
                "DELETE FROM vitals_1m WHERE (bed, code, minute) IN (SELECT bed, code, minute FROM vitals_1m ORDER BY minute LIMIT ?1)",
                |s| &mut s.rollups,
            ),
        ];
        for (sql, counter) in steps {
            loop {
                if self.used_bytes()? <= low {
                    return Ok(());
                }
                let n = self.conn.execute(sql, params![SIZE_SLICE])?;
                *counter(stats) += n;
                stats.evicted_for_size += n;
                if n == 0 {
                    break;
                }
            }
        }
        stats.cap_unreachable = self.used_bytes()? > high;
        Ok(())
    }

    fn pragma_u64(&self, name: &str) -> Result<u64, StoreError> {
        let v: i64 = self
            .conn
            .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))?;
        Ok(v.max(0) as u64)
    }

    /// Pages holding data, in bytes: three header reads, cheap enough for every batch.
    fn used_bytes(&self) -> Result<u64, StoreError> {
        let pages = self.pragma_u64("page_count")?;
        let free = self.pragma_u64("freelist_count")?;
        Ok(pages.saturating_sub(free) * self.pragma_u64("page_size")?)
    }

    /// The file's size in pages, the pages in use and the oldest waveform kept.
    pub fn size(&self) -> Result<SizeReport, StoreError> {
        let page = self.pragma_u64("page_size")?;
        let pages = self.pragma_u64("page_count")?;
        let free = self.pragma_u64("freelist_count")?;
        let oldest_wave_ms = self
            .conn
            .query_row("SELECT MIN(t0_us) FROM wave_chunks", [], |r| {
                r.get::<_, Option<i64>>(0)
            })?
            .map(|us| us.div_euclid(1000));
        Ok(SizeReport {
            file_bytes: pages * page,
            used_bytes: pages.saturating_sub(free) * page,
            oldest_wave_ms,
        })
    }
}
