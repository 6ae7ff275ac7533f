//! The store writer: one OS thread owning the SQLite connection, writing batches.
//!
//! Overflow policy: the queue holds [`QUEUE_CAPACITY`] records; when it is full, new records
//! are refused and counted (`store_queue_full`), never blocking the broker.
//!
//! A failed write (disk full, I/O error) keeps its records and retries every half second,
//! without a restart. While it fails, the records are of two kinds:
//! - the alarm log, audit trail, settings, users and admissions are held until written,
//!   however long that takes (they are few), and are written *first* when writing works again;
//! - waveforms, vitals and device events are held for `store.hold_when_failing_s`, then
//!   dropped (also past [`MAX_PENDING`]), counted, and recorded as a gap in full disclosure
//!   ("from … to …", with the reason) once writing works again; review shows it.
//!
//! Acknowledgement holds ([`ward_broker::AckHold`]) travel in the same queue, behind the
//! records of their message, and are dropped once the batch holding those records is
//! committed: only then does the broker acknowledge a device's QoS 1/2 message, so a crash or
//! power cut never loses a value the device was told had arrived. While writes fail the holds
//! are dropped at once (the device is acknowledged, the rows held as above): a station that
//! stopped acknowledging its monitors would stop receiving them, and stop alarming.
//!
//! The batch window (`store.batch_ms`, 200 ms by default) bounds what a power cut loses of
//! the ring buffer. An alarm-log row or an audit event does not wait for it: the batch it
//! joins is committed within [`URGENT_WINDOW`] (long enough to take the audit event and the
//! other rows of the same alarm change along), so what the alarm log and the trail lose to a
//! power cut is the few milliseconds between the alarm and its commit, not a batch window.
//! The tone never waits for any of it.
//!
//! Both are loud: counters and the last error in the metrics (the alarm driver raises the
//! storage technical alarm from them, with the reason), and error lines in the log.

use crate::clock::now_ms;
use crate::error::CoreError;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use ward_store::{PruneStats, Record, Retention, Store};

pub const QUEUE_CAPACITY: usize = 200_000;
/// How long a batch holding an alarm-log row or an audit event may still gather.
pub const URGENT_WINDOW: Duration = Duration::from_millis(10);

/// The alarm log and the audit trail: committed without waiting out the batch window.
fn urgent(item: &Item) -> bool {
    matches!(item, Item::Record(Record::Alarm(_) | Record::Audit(_)))
}
pub const MAX_PENDING: usize = 1_000_000;

#[derive(Default)]
pub(crate) struct WriterCounters {
    /// Accepted into the queue (for the lag: queued - written - dropped).
    pub records_queued: AtomicU64,
    pub records_written: AtomicU64,
    pub batches: AtomicU64,
    pub write_errors: AtomicU64,
    pub queue_full: AtomicU64,
    pub dropped_after_errors: AtomicU64,
    /// 1 while writes fail (cleared by the first batch written in full).
    pub failing: AtomicU64,
    /// The last write error, as SQLite said it.
    pub last_error: std::sync::Mutex<Option<String>>,
    pub pruned_rows: AtomicU64,
    pub last_commit_us: AtomicU64,
    pub max_commit_us: AtomicU64,
    /// Over the last [`COMMIT_WINDOW`] commits.
    pub commit_p50_us: AtomicU64,
    pub commit_p99_us: AtomicU64,
    pub evicted_for_size: AtomicU64,
    /// 1 while the rows that are never evicted alone fill the size cap.
    pub cap_unreachable: AtomicU64,
    pub db_file_bytes: AtomicU64,
    pub db_used_bytes: AtomicU64,
    /// The oldest waveform still held (ms since the epoch; 0: none).
    pub oldest_wave_ms: AtomicU64,
    /// store.max_db_mb in bytes (0: no cap).
    pub cap_bytes: AtomicU64,
}

/// Commits over which the commit-time percentiles are taken (about three minutes at the
/// default 200 ms batch interval).
const COMMIT_WINDOW: usize = 1000;

#[derive(Debug, Clone, Serialize, Default)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct StoreMetrics {
    pub records_written: u64,
    /// Records queued but not yet written (or dropped): the writer's backlog.
    pub lag: u64,
    pub batches: u64,
    pub write_errors: u64,
    pub queue_full: u64,
    pub dropped_after_errors: u64,
    /// Writes are failing now; `last_error` says why.
    pub failing: bool,
    pub last_error: Option<String>,
    pub pruned_rows: u64,
    pub last_commit_us: u64,
    pub max_commit_us: u64,
    pub commit_p50_us: u64,
    pub commit_p99_us: u64,
    pub evicted_for_size: u64,
    pub cap_unreachable: bool,
    pub db_file_bytes: u64,
    pub db_used_bytes: u64,
    pub oldest_wave_ms: Option<i64>,
    pub cap_bytes: Option<u64>,
}

impl WriterCounters {
    pub fn snapshot(&self) -> StoreMetrics {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreMetrics {
            records_written: g(&self.records_written),
            lag: g(&self.records_queued)
                .saturating_sub(g(&self.records_written) + g(&self.dropped_after_errors)),
            batches: g(&self.batches),
            write_errors: g(&self.write_errors),
            queue_full: g(&self.queue_full),
            dropped_after_errors: g(&self.dropped_after_errors),
            failing: g(&self.failing) == 1,
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
            pruned_rows: g(&self.pruned_rows),
            last_commit_us: g(&self.last_commit_us),
            max_commit_us: g(&self.max_commit_us),
            commit_p50_us: g(&self.commit_p50_us),
            commit_p99_us: g(&self.commit_p99_us),
            evicted_for_size: g(&self.evicted_for_size),
            cap_unreachable: g(&self.cap_unreachable) == 1,
            db_file_bytes: g(&self.db_file_bytes),
            db_used_bytes: g(&self.db_used_bytes),
            oldest_wave_ms: match g(&self.oldest_wave_ms) {
                0 => None,
                ms => Some(ms as i64),
            },
            cap_bytes: Some(g(&self.cap_bytes)).filter(|&b| b > 0),
        }
    }
}

/// What the writer's queue carries: records, and the holds that keep back the broker's
/// acknowledgement of the message they came in until those records are committed.
// The queue held bare records before; a hold in a record-sized slot costs nothing more, and
// boxing every record would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Item {
    Record(Record),
    Hold(ward_broker::AckHold),
}

pub(crate) struct Writer {
    tx: SyncSender<Item>,
    /// Set by [`Writer::finish`]: the thread takes what is queued, writes it and ends. A flag
    /// rather than dropping the sender, because the writer is shared (ingest, the alarm
    /// driver, sync) and the last holder is not the one that decides when it stops.
    closing: Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    pub counters: Arc<WriterCounters>,
}

impl Writer {
    pub fn start(
        path: PathBuf,
        batch_interval: Duration,
        prune_every: Duration,
        retention: Retention,
        hold_when_failing: Duration,
    ) -> Result<Self, CoreError> {
        // Open on the caller's thread so a bad path fails start-up with a clear error.
        let store = Store::open(&path)?;
        let (tx, rx) = sync_channel(QUEUE_CAPACITY);
        let counters = Arc::new(WriterCounters::default());
        let c = counters.clone();
        let closing = Arc::new(AtomicBool::new(false));
        let closed = closing.clone();
        let thread = std::thread::Builder::new()
            .name("ward-store-writer".into())
            .spawn(move || {
                let timing = Timing {
                    batch_interval,
                    prune_every,
                    hold_when_failing,
                };
                run(store, rx, c, closed, timing, retention)
            })
            .map_err(|e| CoreError::Start(format!("cannot start the store writer thread: {e}")))?;
        Ok(Self {
            tx,
            closing,
            thread: std::sync::Mutex::new(Some(thread)),
            counters,
        })
    }

    /// Queues a record without blocking. Returns false (and counts) if the queue is full.
    pub fn send(&self, r: Record) -> bool {
        if self.closing.load(Ordering::Acquire) {
            self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        match self.tx.try_send(Item::Record(r)) {
            Ok(()) => {
                self.counters.records_queued.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues a record that must not be lost: when the queue is full it comes back to the
    /// caller, who keeps it and offers it again (the alarm log does this). The record is
    /// returned by value, as `try_send` hands it back; it is a few hundred bytes at most.
    #[allow(clippy::result_large_err)]
    pub fn offer(&self, r: Record) -> Result<(), Record> {
        if self.closing.load(Ordering::Acquire) {
            return Err(r);
        }
        match self.tx.try_send(Item::Record(r)) {
            Ok(()) => {
                self.counters.records_queued.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(Item::Record(r)))
            | Err(TrySendError::Disconnected(Item::Record(r))) => Err(r),
            // Only a record was sent.
            Err(_) => Ok(()),
        }
    }

    /// Queues a hold behind the records already queued: it is dropped (and the broker
    /// acknowledges its message) once they are committed. If the queue is full or closing
    /// it is dropped now: its records were refused and counted already.
    pub fn hold(&self, h: ward_broker::AckHold) {
        if !self.closing.load(Ordering::Acquire) {
            let _ = self.tx.try_send(Item::Hold(h));
        }
    }

    /// Records queued but not yet written (or dropped).
    pub fn lag(&self) -> u64 {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        g(&c.records_queued).saturating_sub(g(&c.records_written) + g(&c.dropped_after_errors))
    }

    /// Closes the queue and waits until everything queued is written.
    pub fn finish(&self) {
        self.closing.store(true, Ordering::Release);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            if t.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
    }
}

/// The writer's clocks: the batch window, the prune period, and how long data rows are
/// held while writes fail.
struct Timing {
    batch_interval: Duration,
    prune_every: Duration,
    hold_when_failing: Duration,
}

/// Waveforms, vitals and device events: the rows that may be dropped (counted, as a gap)
/// when the disk refuses them for longer than the hold. The time is the row's own.
fn data_time_ms(r: &Record) -> Option<(i64, i64)> {
    match r {
        Record::Vital(v) => Some((v.ts_ms, v.ts_ms)),
        Record::Event(e) => Some((e.ts_ms, e.ts_ms)),
        Record::Wave(w) => {
            let ms = w.samples.len() as i64 * 1_000_000 / w.rate_mhz.max(1) as i64;
            Some((w.t0_us / 1000, w.t0_us / 1000 + ms))
        }
        _ => None,
    }
}

/// What was dropped while writes failed, for the gap record.
#[derive(Default)]
struct Dropped {
    span: Option<(i64, i64)>,
    vitals: u64,
    waves: u64,
    events: u64,
}

impl Dropped {
    fn add(&mut self, r: &Record) {
        if let Some((a, b)) = data_time_ms(r) {
            self.span = Some(self.span.map_or((a, b), |(x, y)| (x.min(a), y.max(b))));
        }
        match r {
            Record::Vital(_) => self.vitals += 1,
            Record::Wave(_) => self.waves += 1,
            _ => self.events += 1,
        }
    }
}

fn run(
    mut store: Store,
    rx: Receiver<Item>,
    c: Arc<WriterCounters>,
    closing: Arc<AtomicBool>,
    timing: Timing,
    retention: Retention,
) {
    let Timing {
        batch_interval,
        prune_every,
        hold_when_failing,
    } = timing;
    let mut dropped = Dropped::default();
    let mut failing = false;
    let mut pending: Vec<Record> = Vec::new();
    // Holds whose records are in `pending` (or already written): dropped after the commit.
    let mut holds: Vec<ward_broker::AckHold> = Vec::new();
    let take =
        |item: Item, pending: &mut Vec<Record>, holds: &mut Vec<ward_broker::AckHold>| match item {
            Item::Record(r) => pending.push(r),
            Item::Hold(h) => holds.push(h),
        };
    let mut commits: std::collections::VecDeque<u64> = std::collections::VecDeque::new();
    // Size and coverage are read once at start so the metrics are right before the first
    // prune.
    report_size(&store, &c);
    c.cap_bytes
        .store(retention.max_bytes.unwrap_or(0), Ordering::Relaxed);
    let mut last_prune = Instant::now();
    let mut open = true;
    while open || !pending.is_empty() {
        // Gather for up to one batch interval, starting from the first record.
        if open {
            // Idle, it looks up at least once a second: finish() is a flag, not a message.
            match rx.recv_timeout(batch_interval.min(Duration::from_secs(1))) {
                Ok(r) => {
                    let mut until = Instant::now()
                        + if urgent(&r) {
                            URGENT_WINDOW.min(batch_interval)
                        } else {
                            batch_interval
                        };
                    take(r, &mut pending, &mut holds);
                    while let Some(left) = until.checked_duration_since(Instant::now()) {
                        match rx.recv_timeout(left) {
                            Ok(r) => {
                                if urgent(&r) {
                                    until = until.min(Instant::now() + URGENT_WINDOW);
                                }
                                take(r, &mut pending, &mut holds)
                            }
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => {
                                open = false;
                                break;
                            }
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            if open && closing.load(Ordering::Acquire) {
                // finish(): everything queued before it is taken and written, then the
                // thread ends.
                while let Ok(r) = rx.try_recv() {
                    take(r, &mut pending, &mut holds);
                }
                open = false;
            }
        }
        if !pending.is_empty() {
            let started = Instant::now();
            // After a failure, what must never be lost goes first, alone: the alarm log,
            // the audit trail and settings reach the disk before a backlog of waveforms.
            let result = if failing {
                let (keep, data): (Vec<Record>, Vec<Record>) =
                    pending.drain(..).partition(|r| data_time_ms(r).is_none());
                match store.write_batch(&keep) {
                    Ok(()) => {
                        c.records_written
                            .fetch_add(keep.len() as u64, Ordering::Relaxed);
                        pending = data;
                        store.write_batch(&pending)
                    }
                    Err(e) => {
                        pending = keep;
                        pending.extend(data);
                        Err(e)
                    }
                }
            } else {
                store.write_batch(&pending)
            };
            // Committed, or failed (then the rows are held as above and the devices are
            // acknowledged anyway: see the module's comment).
            holds.clear();
            match result {
                Ok(()) => {
                    let us = started.elapsed().as_micros() as u64;
                    c.records_written
                        .fetch_add(pending.len() as u64, Ordering::Relaxed);
                    c.batches.fetch_add(1, Ordering::Relaxed);
                    c.last_commit_us.store(us, Ordering::Relaxed);
                    c.max_commit_us.fetch_max(us, Ordering::Relaxed);
                    pending.clear();
                    commits.push_back(us);
                    if commits.len() > COMMIT_WINDOW {
                        commits.pop_front();
                    }
                    if c.batches.load(Ordering::Relaxed).is_multiple_of(20) {
                        let mut sorted: Vec<u64> = commits.iter().copied().collect();
                        sorted.sort_unstable();
                        c.commit_p50_us
                            .store(percentile(&sorted, 0.50), Ordering::Relaxed);
                        c.commit_p99_us
                            .store(percentile(&sorted, 0.99), Ordering::Relaxed);
                    }
                    if failing {
                        failing = false;
                        c.failing.store(0, Ordering::Relaxed);
                        let reason = c
                            .last_error
                            .lock()
                            .ok()
                            .and_then(|e| e.clone())
                            .unwrap_or_default();
                        tracing::warn!("store writes work again; everything held was written");
                        if let Some((from_ms, to_ms)) = dropped.span {
                            let gap = ward_store::StoreGap {
                                from_ms,
                                to_ms,
                                vitals: dropped.vitals,
                                waves: dropped.waves,
                                events: dropped.events,
                                reason,
                            };
                            tracing::error!(?gap, "full disclosure has a gap");
                            // Written next cycle with whatever arrives meanwhile.
                            pending.push(Record::Gap(gap));
                        }
                        dropped = Dropped::default();
                    }
                    // The cap is checked after every batch (three header reads), so the
                    // file never outgrows it by more than a batch, whatever prune_every is.
                    if let Some(max) = retention.max_bytes {
                        match store.enforce_cap(max) {
                            Ok(s) => count_eviction(&c, &s),
                            Err(e) => tracing::error!(error = %e, "size cap eviction failed"),
                        }
                    }
                }
                Err(e) => {
                    c.write_errors.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut last) = c.last_error.lock() {
                        *last = Some(e.to_string());
                    }
                    if !failing {
                        tracing::error!(error = %e, pending = pending.len(), "store write failed; holding records and retrying");
                    }
                    failing = true;
                    c.failing.store(1, Ordering::Relaxed);
                    // Data rows older than the hold go (and the oldest beyond MAX_PENDING);
                    // the rest never do.
                    let oldest_kept = now_ms() - hold_when_failing.as_millis() as i64;
                    let mut excess = pending.len().saturating_sub(MAX_PENDING);
                    let before = pending.len();
                    pending.retain(|r| match data_time_ms(r) {
                        Some((_, end)) if end < oldest_kept || excess > 0 => {
                            excess = excess.saturating_sub(1);
                            dropped.add(r);
                            false
                        }
                        _ => true,
                    });
                    c.dropped_after_errors
                        .fetch_add((before - pending.len()) as u64, Ordering::Relaxed);
                    if !open {
                        // Shutting down and the disk refuses: say so and stop retrying.
                        tracing::error!(
                            lost = pending.len(),
                            "store writer stopping with unwritten records"
                        );
                        c.dropped_after_errors
                            .fetch_add(pending.len() as u64, Ordering::Relaxed);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        // Holds whose records went in an earlier batch.
        holds.clear();
        if last_prune.elapsed() >= prune_every {
            last_prune = Instant::now();
            match store.prune(now_ms(), retention) {
                Ok(s) => count_eviction(&c, &s),
                Err(e) => tracing::error!(error = %e, "retention prune failed"),
            }
            report_size(&store, &c);
        }
    }
}

fn count_eviction(c: &WriterCounters, s: &PruneStats) {
    let n = s.total() as u64;
    c.pruned_rows.fetch_add(n, Ordering::Relaxed);
    c.evicted_for_size
        .fetch_add(s.evicted_for_size as u64, Ordering::Relaxed);
    if n > 0 {
        tracing::debug!(?s, "retention pruned rows");
    }
    if s.evicted_for_size > 0 || s.cap_unreachable {
        let was = c
            .cap_unreachable
            .swap(u64::from(s.cap_unreachable), Ordering::Relaxed);
        if s.cap_unreachable && was == 0 {
            tracing::error!(
                "store.max_db_mb is reached by the alarm log, audit trail and settings alone; \
                 raise it: nothing more can be evicted"
            );
        }
    }
}

fn report_size(store: &Store, c: &WriterCounters) {
    match store.size() {
        Ok(r) => {
            c.db_file_bytes.store(r.file_bytes, Ordering::Relaxed);
            c.db_used_bytes.store(r.used_bytes, Ordering::Relaxed);
            c.oldest_wave_ms.store(
                r.oldest_wave_ms.unwrap_or(0).max(0) as u64,
                Ordering::Relaxed,
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the database size"),
    }
}

/// The `p` quantile of sorted values (nearest rank); the default value when there are none.
/// One definition for the writer's commit times and every benchmark.
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The writer as the sink for parts that only queue records (sync's watermark).
impl ward_store::RecordSink for Writer {
    fn append(&self, records: Vec<Record>) -> bool {
        records.into_iter().all(|r| self.offer(r).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_store::VitalRow;

    fn vital(ts_ms: i64, value: f64) -> Record {
        Record::Vital(VitalRow {
            ts_ms,
            device: "mon-1".into(),
            bed: None,
            code: 147_842,
            unit: 264_864,
            value: Some(value),
        })
    }

    #[test]
    fn the_writer_enforces_the_size_cap_after_batches_and_counts_what_it_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cap.sqlite");
        let cap = 1024 * 1024;
        let w = Writer::start(
            db.clone(),
            Duration::from_millis(10),
            // No prune in this test: only the per-batch cap check can evict.
            Duration::from_secs(3600),
            Retention {
                waveforms: Duration::from_secs(3600),
                trends: Duration::from_secs(3600),
                max_bytes: Some(cap),
            },
            Duration::from_secs(120),
        )
        .unwrap();
        let now = now_ms();
        for i in 0..4000i64 {
            let r = Record::Wave(ward_store::WaveChunk {
                device: "mon-1".into(),
                bed: Some("bed-1".into()),
                channel: 131_330,
                t0_us: (now - 3_000_000 + i * 1000) * 1000,
                rate_mhz: 250_000,
                scale: 1.0,
                offset: 0.0,
                unit: 0,
                samples: vec![i as i16; 250],
            });
            while !w.send(r.clone()) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        w.finish();
        let m = w.counters.snapshot();
        assert!(m.evicted_for_size > 0, "{m:?}");
        assert!(!m.cap_unreachable);
        assert_eq!(m.cap_bytes, Some(cap));
        let size = Store::open_read_only(&db).unwrap().size().unwrap();
        assert!(size.used_bytes <= cap, "{size:?}");
        // The newest chunk is kept.
        let chunks = Store::open_read_only(&db)
            .unwrap()
            .wave_chunks("mon-1", 131_330)
            .unwrap();
        assert_eq!(chunks.last().unwrap().samples[0], 3999);
    }

    /// A writer keeping an hour of everything, with this batch window and prune period.
    fn hour_window_writer(db: &std::path::Path, batch: Duration, prune: Duration) -> Writer {
        let hour = Duration::from_secs(3600);
        let keep = Retention {
            waveforms: hour,
            trends: hour,
            max_bytes: None,
        };
        Writer::start(
            db.to_path_buf(),
            batch,
            prune,
            keep,
            Duration::from_secs(120),
        )
        .unwrap()
    }

    /// With a batch window of an hour, a vital waits in the queue; an alarm-log row arriving
    /// after it is committed at once, taking the vital along.
    #[test]
    fn an_alarm_log_row_does_not_wait_for_the_batch_window() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("urgent.sqlite");
        let hour = Duration::from_secs(3600);
        let w = hour_window_writer(&db, hour, hour);
        let now = now_ms();
        assert!(w.send(vital(now, 61.0)));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            w.counters.snapshot().records_written,
            0,
            "a vital alone waits for the window"
        );
        assert!(w.send(Record::Alarm(ward_store::AlarmLogRow {
            t_ms: now,
            kind: "raised".into(),
            alarm_id: Some(1),
            bed: Some("bed-01".into()),
            condition: "limit:spo2_low".into(),
            label: "SpO2 low".into(),
            priority: Some("high".into()),
            value: Some(85.0),
            limit: Some(90.0),
            user: None,
            detail: None,
            patient: None,
        })));
        // Generous: the window is an hour, so only the urgent path writes within this.
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while w.counters.snapshot().records_written < 2 {
            assert!(std::time::Instant::now() < until, "the alarm row waited");
            std::thread::sleep(Duration::from_millis(10));
        }
        let store = Store::open_read_only(&db).unwrap();
        assert_eq!(store.vitals("mon-1", 147_842).unwrap().len(), 1);
        assert_eq!(store.alarm_log_range(0, i64::MAX).unwrap().len(), 1);
        w.finish();
    }

    #[test]
    fn the_writer_thread_prunes_by_itself_and_finish_writes_everything_queued() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.sqlite");
        let w = hour_window_writer(&db, Duration::from_millis(10), Duration::from_millis(50));
        let now = now_ms();
        assert!(w.send(vital(now - 2 * 3_600_000, 60.0)));
        assert!(w.send(vital(now, 61.0)));
        // Retention runs on the thread's own schedule, with no call from outside.
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while w.counters.snapshot().pruned_rows == 0 {
            assert!(std::time::Instant::now() < until, "writer never pruned");
            std::thread::sleep(Duration::from_millis(10));
        }
        for i in 0..1000 {
            assert!(w.send(vital(now, 100.0 + i as f64)));
        }
        w.finish();
        let store = Store::open_read_only(&db).unwrap();
        let values: Vec<f64> = store
            .vitals("mon-1", 147_842)
            .unwrap()
            .into_iter()
            .filter_map(|r| r.value)
            .collect();
        assert_eq!(
            values.len(),
            1001,
            "the fresh row and all 1000 queued at finish"
        );
        assert_eq!(values[0], 61.0, "the row outside the window is gone");
        let m = w.counters.snapshot();
        assert_eq!(
            (m.records_written, m.pruned_rows, m.write_errors),
            (1002, 1, 0)
        );
    }
}
