//! The ring buffer over many windows, on a real SQLite file, with time simulated: a ward's
//! worth of waveform chunks and vitals arrive second by second, retention runs as the writer
//! runs it, and the file's size, what queries return, and what must never be evicted are
//! checked.
// Helpers here panic on failure like the tests that call them.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;
use ward_store::{
    AlarmLogRow, AuditEvent, Record, Retention, Store, TrendResolution, VitalRow, WaveChunk,
};

const BEDS: usize = 16;
const ECG: u32 = 131_330;
const HR: u32 = 147_842;
/// Simulated time starts here: 2027-01-15 08:00 UTC, a round minute (ms since the epoch).
const T0_MS: i64 = 1_800_000_000_000;

fn bed(b: usize) -> String {
    format!("bed-{b:02}")
}

/// One simulated second of the ward: per bed, ECG 250 Hz, pleth 125 Hz and resp 62 Hz chunks
/// (values from a small LCG, so pages do not compress into anything special) and HR, SpO2
/// and RR values.
fn second(t_s: i64, seed: &mut u64) -> Vec<Record> {
    let mut next = || {
        *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (*seed >> 48) as i16
    };
    let mut out = Vec::new();
    for b in 1..=BEDS {
        for (channel, rate_hz) in [(ECG, 250u32), (150_452, 125), (151_552, 62)] {
            out.push(Record::Wave(WaveChunk {
                device: format!("mon-{b:02}"),
                bed: Some(bed(b)),
                channel,
                t0_us: (T0_MS + t_s * 1000) * 1000,
                rate_mhz: rate_hz * 1000,
                scale: 0.005,
                offset: 0.0,
                unit: 266_418,
                samples: (0..rate_hz).map(|_| next()).collect(),
            }));
        }
        for (code, value) in [
            (HR, 60.0 + (t_s % 40) as f64),
            (150_456, 97.0),
            (151_562, 16.0),
        ] {
            out.push(Record::Vital(VitalRow {
                ts_ms: T0_MS + t_s * 1000 + b as i64,
                device: format!("mon-{b:02}"),
                bed: Some(bed(b)),
                code,
                unit: 264_864,
                value: Some(value),
            }));
        }
    }
    out
}

/// The rows that retention must never touch: alarm log lines and audit events (the outbox,
/// since no upstream ever acknowledged them).
fn keepers(t_s: i64) -> Vec<Record> {
    vec![
        Record::Alarm(AlarmLogRow {
            t_ms: T0_MS + t_s * 1000,
            kind: "raised".into(),
            alarm_id: Some(t_s as u64),
            bed: Some(bed(3)),
            condition: "hr_high".into(),
            label: "HR high".into(),
            priority: Some("medium".into()),
            value: Some(131.0),
            limit: Some(130.0),
            user: None,
            detail: None,
            patient: None,
        }),
        Record::Audit(AuditEvent {
            origin: "st-test".into(),
            t_ms: T0_MS + t_s * 1000,
            actor: "system".into(),
            kind: "alarm.raised".into(),
            bed: Some(bed(3)),
            detail: format!(r#"{{"t":{t_s}}}"#),
        }),
    ]
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Runs `seconds` of simulated ward against `db`, pruning every 5 s and enforcing the cap
/// after every batch as the writer thread does; returns the main file's size after each
/// prune, from `measure_from_s` on.
fn run(db: &Path, keep: Retention, seconds: i64, measure_from_s: i64) -> (Store, Vec<u64>) {
    let mut s = Store::open(db).unwrap();
    let mut seed = 42;
    let mut sizes = Vec::new();
    for t in 0..seconds {
        let mut batch = second(t, &mut seed);
        if t < 20 {
            batch.extend(keepers(t));
        }
        s.write_batch(&batch).unwrap();
        if let Some(max) = keep.max_bytes {
            s.enforce_cap(max).unwrap();
        }
        if t % 5 == 4 {
            let stats = s.prune(T0_MS + (t + 1) * 1000, keep).unwrap();
            assert!(!stats.cap_unreachable, "{stats:?}");
            if t >= measure_from_s {
                sizes.push(file_len(db));
            }
        }
    }
    (s, sizes)
}

fn spread(sizes: &[u64]) -> f64 {
    let min = *sizes.iter().min().unwrap() as f64;
    let max = *sizes.iter().max().unwrap() as f64;
    (max - min) / min
}

fn assert_keepers_survived(s: &Store) {
    assert_eq!(s.alarm_log(Some("bed-03"), 100).unwrap().len(), 20);
    let v = s.verify_audit().unwrap();
    assert!(v.ok(), "{v:?}");
    assert_eq!(s.audit_after(0, 100).unwrap().len(), 20, "the outbox");
}

#[test]
fn the_file_stops_growing_once_the_time_window_is_full_and_nothing_older_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ring.sqlite");
    let window_s = 180;
    let keep = Retention {
        waveforms: Duration::from_secs(window_s as u64),
        trends: Duration::from_secs(600),
        max_bytes: None,
    };
    // Eight windows; the size is measured from the third on (the first fills it, the second
    // lets the free list settle).
    let seconds = 8 * window_s;
    let (s, sizes) = run(&db, keep, seconds, 2 * window_s);
    let spread = spread(&sizes);
    eprintln!(
        "time window: {} sizes measured, {} .. {} bytes, spread {:.3} %",
        sizes.len(),
        sizes.iter().min().unwrap(),
        sizes.iter().max().unwrap(),
        spread * 100.0
    );
    assert!(spread <= 0.02, "file size spread {spread} over {sizes:?}");

    // Nothing outside the window: the last prune ran at `end`.
    let end_ms = T0_MS + seconds * 1000;
    let cut_ms = end_ms - window_s * 1000;
    let all = s
        .wave_window(&bed(1), ECG, 0, end_ms * 1000 + 1_000_000)
        .unwrap();
    assert_eq!(all.first().unwrap().t0_us, cut_ms * 1000);
    assert_eq!(all.len() as i64, window_s, "one chunk a second");
    let raw = s
        .trend(&bed(1), HR, 0, end_ms + 1000, TrendResolution::Raw)
        .unwrap();
    assert!(raw.iter().all(|p| p.t_ms >= cut_ms));
    assert_eq!(raw.len() as i64, window_s);
    // Rollups keep the longer trend window (600 s: ten minutes).
    let minutes = s
        .trend(&bed(1), HR, 0, end_ms + 60_000, TrendResolution::Minute)
        .unwrap();
    assert!(
        minutes.first().unwrap().t_ms >= end_ms - 600_000,
        "{minutes:?}"
    );
    assert!(minutes.len() >= 10);
    assert_keepers_survived(&s);
    assert_eq!(s.integrity_check().unwrap(), "ok");
}

#[test]
fn the_size_cap_holds_the_file_steady_and_evicts_the_oldest_waveforms_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("capped.sqlite");
    let max = 12 * 1024 * 1024;
    // A time window far longer than the run: only the cap evicts.
    let keep = Retention {
        waveforms: Duration::from_secs(24 * 3600),
        trends: Duration::from_secs(30 * 86_400),
        max_bytes: Some(max),
    };
    let seconds = 1500;
    let (s, sizes) = run(&db, keep, seconds, 1000);
    let spread = spread(&sizes);
    let size = s.size().unwrap();
    eprintln!(
        "size cap {max}: {} sizes measured, {} .. {} bytes, spread {:.3} %, oldest waveform kept {} s into the run",
        sizes.len(),
        sizes.iter().min().unwrap(),
        sizes.iter().max().unwrap(),
        spread * 100.0,
        (size.oldest_wave_ms.unwrap() - T0_MS) / 1000
    );
    assert!(spread <= 0.02, "file size spread {spread} over {sizes:?}");
    assert!(
        *sizes.iter().max().unwrap() <= max,
        "file {sizes:?} over the cap {max}"
    );
    assert!(size.used_bytes <= max);
    // The oldest waveforms went; the newest second is whole.
    let oldest = size.oldest_wave_ms.unwrap();
    assert!(oldest > T0_MS + 60_000, "nothing was evicted: {oldest}");
    let end_us = (T0_MS + seconds * 1000) * 1000;
    let last = s
        .wave_window(&bed(16), ECG, end_us - 1_000_000, end_us)
        .unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].samples.len(), 250);
    // Raw vitals were not needed for the cap (waveforms are the bulk) and are all there.
    let raw = s
        .trend(&bed(1), HR, 0, i64::MAX, TrendResolution::Raw)
        .unwrap();
    assert_eq!(raw.len() as i64, seconds);
    assert_keepers_survived(&s);
    assert_eq!(s.integrity_check().unwrap(), "ok");
}

#[test]
fn trends_return_exactly_what_was_stored_and_minutes_aggregate_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("t.sqlite")).unwrap();
    // Three minutes of HR at 1 Hz, one "not available" value, and one from a device at no
    // bed (no trend row).
    let mut batch = Vec::new();
    let mut sent = Vec::new();
    for i in 0..180i64 {
        let value = (i != 70).then_some(50.0 + (i % 60) as f64);
        batch.push(Record::Vital(VitalRow {
            ts_ms: T0_MS + i * 1000,
            device: "mon-01".into(),
            bed: Some(bed(1)),
            code: HR,
            unit: 264_864,
            value,
        }));
        if let Some(v) = value {
            sent.push((T0_MS + i * 1000, v));
        }
    }
    batch.push(Record::Vital(VitalRow {
        ts_ms: T0_MS,
        device: "loose".into(),
        bed: None,
        code: HR,
        unit: 264_864,
        value: Some(200.0),
    }));
    s.write_batch(&batch[..90]).unwrap();
    s.write_batch(&batch[90..]).unwrap();

    let raw = s
        .trend(&bed(1), HR, T0_MS, T0_MS + 180_000, TrendResolution::Raw)
        .unwrap();
    let got: Vec<(i64, f64)> = raw.iter().map(|p| (p.t_ms, p.value)).collect();
    assert_eq!(got, sent);
    // The window is half-open.
    let part = s
        .trend(
            &bed(1),
            HR,
            T0_MS + 10_000,
            T0_MS + 20_000,
            TrendResolution::Raw,
        )
        .unwrap();
    assert_eq!(part.len(), 10);
    assert_eq!(part[0].t_ms, T0_MS + 10_000);

    let minutes = s
        .trend(&bed(1), HR, T0_MS, T0_MS + 180_000, TrendResolution::Minute)
        .unwrap();
    assert_eq!(minutes.len(), 3);
    for (m, p) in minutes.iter().enumerate() {
        let vals: Vec<f64> = sent
            .iter()
            .filter(|(t, _)| (t - T0_MS) / 60_000 == m as i64)
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(p.t_ms, T0_MS + m as i64 * 60_000);
        assert_eq!(p.n as usize, vals.len());
        assert_eq!(p.min, vals.iter().cloned().fold(f64::MAX, f64::min));
        assert_eq!(p.max, vals.iter().cloned().fold(f64::MIN, f64::max));
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        assert!((p.value - mean).abs() < 1e-9, "{} vs {mean}", p.value);
    }
    // The minute starting before the window is not in it.
    let later = s
        .trend(
            &bed(1),
            HR,
            T0_MS + 1,
            T0_MS + 180_000,
            TrendResolution::Minute,
        )
        .unwrap();
    assert_eq!(later.len(), 2);
}

/// (time in µs, raw value) of every sample of 250 Hz chunks.
fn timed<'a>(chunks: impl Iterator<Item = &'a WaveChunk>) -> Vec<(i64, i16)> {
    chunks
        .flat_map(|c| {
            c.samples
                .iter()
                .enumerate()
                .map(move |(i, v)| (c.t0_us + i as i64 * 4000, *v))
        })
        .collect()
}

#[test]
fn a_waveform_window_across_chunks_returns_every_stored_sample_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("w.sqlite")).unwrap();
    let mut seed = 7;
    let mut batch = Vec::new();
    for t in 0..10 {
        batch.extend(second(t, &mut seed));
    }
    s.write_batch(&batch).unwrap();
    let sent = timed(batch.iter().filter_map(|r| match r {
        Record::Wave(c) if c.bed.as_deref() == Some("bed-02") && c.channel == ECG => Some(c),
        _ => None,
    }));
    // 2.5 s .. 7.5 s: starts and ends inside chunks.
    let (from, to) = ((T0_MS + 2500) * 1000, (T0_MS + 7500) * 1000);
    let got = timed(s.wave_window(&bed(2), ECG, from, to).unwrap().iter());
    let want: Vec<(i64, i16)> = sent
        .into_iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .collect();
    assert_eq!(got.len(), 1250);
    assert_eq!(got, want);
}

#[test]
fn a_cap_filled_by_rows_that_are_never_evicted_is_reported_and_they_all_stay() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("full.sqlite")).unwrap();
    let mut seed = 3;
    let mut batch = second(0, &mut seed);
    for t in 0..1500 {
        batch.extend(keepers(t));
    }
    s.write_batch(&batch).unwrap();
    // A cap below what the alarm log and audit trail take alone.
    let stats = s.enforce_cap(64 * 1024).unwrap();
    assert!(stats.cap_unreachable, "{stats:?}");
    assert_eq!(stats.wave_chunks, BEDS * 3, "every waveform went first");
    assert_eq!(s.alarm_log(None, 10_000).unwrap().len(), 1500);
    assert_eq!(s.audit_after(0, 10_000).unwrap().len(), 1500);
    assert!(s.verify_audit().unwrap().ok());
}
