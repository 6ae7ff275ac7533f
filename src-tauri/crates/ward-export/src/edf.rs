//! EDF+ (European Data Format, continuous: EDF+C) export of a bed's full disclosure: every
//! stored waveform channel at its own rate, physical units and ranges from the packets'
//! scale and offset, the patient in the header, and the alarm log as EDF+ annotations — the
//! open format that research tools and other review software read.
//!
//! Samples are the stored 16-bit values, unchanged (digital range -32768..32767, physical
//! range mapped through the scale and offset, rounded to EDF's 8 characters). A stretch with
//! no stored samples is written as the digital minimum and annotated "no data", since EDF+C
//! has no gaps.

use crate::error::ExportError;
use ward_model::codes::TraceKind;
use ward_model::Patient;
use ward_store::{Store, WaveChunk};

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// `s` in exactly `n` ASCII characters (printable only), left-aligned, space-padded.
fn field(s: &str, n: usize) -> String {
    let mut t: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .take(n)
        .collect();
    while t.len() < n {
        t.push(' ');
    }
    t
}

/// A number in at most 8 characters (EDF's width), as exactly as fits.
fn num8(v: f64) -> String {
    for decimals in (0..=6).rev() {
        let s = format!("{v:.decimals$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        if s.len() <= 8 {
            return s;
        }
    }
    format!("{}", v.round() as i64).chars().take(8).collect()
}

fn edf_date(d: &str) -> String {
    // YYYY-MM-DD -> DD-MMM-YYYY
    let p: Vec<&str> = d.split('-').collect();
    match (
        p.first(),
        p.get(1).and_then(|m| m.parse::<usize>().ok()),
        p.get(2),
    ) {
        (Some(y), Some(m), Some(day)) if (1..=12).contains(&m) => {
            format!("{day}-{}-{y}", MONTHS[m - 1])
        }
        _ => "X".into(),
    }
}

/// EDF+ patient identification: code, sex, birth date, name (spaces as underscores).
fn patient_field(p: Option<&Patient>) -> String {
    let Some(p) = p else {
        return "X X X X".into();
    };
    let name = format!("{}, {}", p.family, p.given).replace(' ', "_");
    let sex = match p.sex {
        ward_model::Sex::F => "F",
        ward_model::Sex::M => "M",
        _ => "X",
    };
    let birth = if p.birth_date.is_empty() {
        "X".into()
    } else {
        edf_date(&p.birth_date)
    };
    format!("{} {sex} {birth} {name}", p.mrn.replace(' ', "_"))
}

struct Channel {
    label: &'static str,
    unit: &'static str,
    rate_hz: f64,
    scale: f64,
    offset: f64,
    samples: Vec<i16>,
}

fn unit_label(unit: u32) -> &'static str {
    match unit {
        ward_model::codes::UNIT_MV => "mV",
        _ => "",
    }
}

/// The EDF+ file for `bed` over `[from_ms, to_ms)`.
pub fn file(
    store: &Store,
    station: &str,
    bed: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<u8>, ExportError> {
    if to_ms <= from_ms || to_ms - from_ms > 24 * 3_600_000 {
        return Err(ExportError::BadRequest(
            "an EDF+ export covers 1 s to 24 h".into(),
        ));
    }
    let mut chans: Vec<(TraceKind, Vec<WaveChunk>)> = Vec::new();
    for kind in [TraceKind::Ecg, TraceKind::Pleth, TraceKind::Resp] {
        let c = store.wave_window(bed, kind.code(), from_ms * 1000, to_ms * 1000)?;
        if !c.is_empty() {
            chans.push((kind, c));
        }
    }
    if chans.is_empty() {
        return Err(ExportError::BadRequest(format!(
            "no waveform is stored for {bed} in that window"
        )));
    }
    // A record length (1-10 s) that holds a whole number of samples of every channel.
    let rates: Vec<f64> = chans
        .iter()
        .map(|(_, c)| c[0].rate_mhz as f64 / 1000.0)
        .collect();
    let record_s = (1..=10)
        .find(|d| {
            rates
                .iter()
                .all(|r| ((r * *d as f64) - (r * *d as f64).round()).abs() < 1e-6)
        })
        .unwrap_or(1) as i64;
    let n_records = ((to_ms - from_ms) + record_s * 1000 - 1) / (record_s * 1000);
    let mut gaps: Vec<(f64, f64, &'static str)> = Vec::new();
    let mut channels = Vec::new();
    for (kind, chunks) in &chans {
        let first = &chunks[0];
        let rate = first.rate_mhz as f64 / 1000.0;
        let per_record = (rate * record_s as f64).round() as usize;
        let total = per_record * n_records as usize;
        let mut samples = vec![i16::MIN; total];
        let mut filled = vec![false; total];
        for c in chunks {
            let period_us = 1e9 / c.rate_mhz.max(1) as f64;
            for (i, s) in c.samples.iter().enumerate() {
                let t_us = c.t0_us as f64 + i as f64 * period_us;
                let at = ((t_us - from_ms as f64 * 1000.0) * rate / 1e6).round();
                if at >= 0.0 && (at as usize) < total {
                    samples[at as usize] = *s;
                    filled[at as usize] = true;
                }
            }
        }
        // Gaps longer than a second are annotated.
        let label = match kind {
            TraceKind::Ecg => "ECG II",
            TraceKind::Pleth => "Pleth",
            TraceKind::Resp => "Resp",
        };
        let mut i = 0;
        while i < total {
            if filled[i] {
                i += 1;
                continue;
            }
            let start = i;
            while i < total && !filled[i] {
                i += 1;
            }
            if (i - start) as f64 >= rate {
                gaps.push((start as f64 / rate, (i - start) as f64 / rate, label));
            }
        }
        channels.push(Channel {
            label,
            unit: unit_label(first.unit),
            rate_hz: rate,
            scale: first.scale as f64,
            offset: first.offset as f64,
            samples,
        });
    }
    // Annotations: the alarm log of the bed, and the gaps.
    let mut notes: Vec<(f64, Option<f64>, String)> = store
        .alarm_log_between(bed, from_ms, to_ms)?
        .into_iter()
        .map(|r| {
            let who = r.user.map(|u| format!(" by {u}")).unwrap_or_default();
            let pri = r
                .priority
                .map(|p| format!("{} ", p.to_uppercase()))
                .unwrap_or_default();
            (
                (r.t_ms - from_ms) as f64 / 1000.0,
                None,
                format!("{pri}{} {}{who}", r.label, r.kind.replace('_', " ")),
            )
        })
        .collect();
    for (onset, dur, label) in &gaps {
        notes.push((*onset, Some(*dur), format!("no data {label}")));
    }
    let tal = |onset: f64, dur: Option<f64>, text: &str| {
        let mut t = format!("+{}", num_plain(onset));
        if let Some(d) = dur {
            t += &format!("\x15{}", num_plain(d));
        }
        t += &format!("\x14{}\x14\0", text.replace(['\x14', '\x15', '\0'], " "));
        t.into_bytes()
    };
    let mut per_record: Vec<Vec<u8>> = (0..n_records)
        .map(|r| format!("+{}\x14\x14\0", r * record_s).into_bytes())
        .collect();
    for (onset, dur, text) in &notes {
        let r = ((*onset / record_s as f64).floor() as i64).clamp(0, n_records - 1) as usize;
        per_record[r].extend(tal(*onset, *dur, text));
    }
    let ann_bytes = per_record.iter().map(Vec::len).max().unwrap_or(0).max(60);
    let ann_samples = ann_bytes.div_ceil(2);

    let who = store
        .patients_between(bed, from_ms, to_ms)?
        .last()
        .and_then(|(_, j)| serde_json::from_str::<Patient>(j).ok());
    let start = chrono::DateTime::from_timestamp_millis(from_ms)
        .ok_or_else(|| ExportError::BadRequest("start time out of range".into()))?
        .with_timezone(&chrono::Local);
    use chrono::{Datelike, Timelike};
    let ns = channels.len() + 1;
    let mut h = String::new();
    h += &field("0", 8);
    h += &field(&patient_field(who.as_ref()), 80);
    h += &field(
        &format!(
            "Startdate {:02}-{}-{} X X {}_{}",
            start.day(),
            MONTHS[start.month0() as usize],
            start.year(),
            station.replace(' ', "_"),
            bed
        ),
        80,
    );
    h += &field(
        &format!(
            "{:02}.{:02}.{:02}",
            start.day(),
            start.month(),
            start.year() % 100
        ),
        8,
    );
    h += &field(
        &format!(
            "{:02}.{:02}.{:02}",
            start.hour(),
            start.minute(),
            start.second()
        ),
        8,
    );
    h += &field(&((ns + 1) * 256).to_string(), 8);
    h += &field("EDF+C", 44);
    h += &field(&n_records.to_string(), 8);
    h += &field(&record_s.to_string(), 8);
    h += &field(&ns.to_string(), 4);
    let mut labels: Vec<String> = channels.iter().map(|c| c.label.to_string()).collect();
    labels.push("EDF Annotations".into());
    let each = |f: &dyn Fn(Option<&Channel>) -> String, w: usize| -> String {
        channels
            .iter()
            .map(Some)
            .chain(std::iter::once(None))
            .map(|c| field(&f(c), w))
            .collect()
    };
    h += &labels.iter().map(|l| field(l, 16)).collect::<String>();
    h += &each(&|_| String::new(), 80);
    h += &each(&|c| c.map(|c| c.unit.to_string()).unwrap_or_default(), 8);
    h += &each(
        &|c| {
            c.map(|c| num8(i16::MIN as f64 * c.scale + c.offset))
                .unwrap_or("-1".into())
        },
        8,
    );
    h += &each(
        &|c| {
            c.map(|c| num8(i16::MAX as f64 * c.scale + c.offset))
                .unwrap_or("1".into())
        },
        8,
    );
    h += &each(&|_| "-32768".into(), 8);
    h += &each(&|_| "32767".into(), 8);
    h += &each(&|_| String::new(), 80);
    h += &each(
        &|c| {
            c.map(|c| ((c.rate_hz * record_s as f64).round() as usize).to_string())
                .unwrap_or(ann_samples.to_string())
        },
        8,
    );
    h += &each(&|_| String::new(), 32);
    debug_assert_eq!(h.len(), (ns + 1) * 256);
    let mut out = h.into_bytes();
    for (r, ann) in per_record.iter().enumerate() {
        for c in &channels {
            let n = (c.rate_hz * record_s as f64).round() as usize;
            for s in &c.samples[r * n..(r + 1) * n] {
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
        let mut a = ann.clone();
        a.resize(ann_samples * 2, 0);
        out.extend_from_slice(&a);
    }
    Ok(out)
}

/// A number for a TAL: no exponent, no trailing zeros.
fn num_plain(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_fit_edf_widths() {
        assert_eq!(field("abc", 5), "abc  ");
        assert_eq!(field("Müller", 6), "M_ller");
        assert_eq!(num8(-32.768), "-32.768");
        assert_eq!(num8(-32768.0 * 0.000_123 + 1.5), "-2.53046");
        assert!(num8(-1234567.891).len() <= 8);
        assert_eq!(edf_date("1984-02-29"), "29-FEB-1984");
        assert_eq!(num_plain(12.5), "12.5");
        assert_eq!(num_plain(3.0), "3");
    }
}
