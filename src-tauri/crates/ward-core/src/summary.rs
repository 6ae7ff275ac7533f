//! The headless station's live text summary: one line per bed, then the counters that tell
//! IT whether anything is being refused or dropped.

use crate::handle::WardSnapshot;
use crate::live::{BedView, Connection};
use std::fmt::Write;
use ward_model::codes::*;

fn numeric(bed: &BedView, code: u32) -> String {
    // Temperature reads in tenths; every other numeric here is whole.
    let decimals = if code == MDC_TEMP || code == MDC_TEMP_BODY {
        1
    } else {
        0
    };
    bed.numerics
        .iter()
        .find(|n| n.code == code)
        .and_then(|n| n.value)
        .map(|v| format!("{v:.decimals$}"))
        .unwrap_or_else(|| "--".into())
}

fn ago(now_ms: i64, t: Option<i64>) -> String {
    match t {
        None => "never".into(),
        Some(t) => format!("{:.1}s ago", (now_ms - t).max(0) as f64 / 1000.0),
    }
}

/// A long span for people: "52 s ago", "12.5 min ago", "71.9 h ago".
fn span_ago(ms: i64) -> String {
    let s = ms.max(0) as f64 / 1000.0;
    if s < 120.0 {
        format!("{s:.0} s ago")
    } else if s < 7200.0 {
        format!("{:.1} min ago", s / 60.0)
    } else {
        format!("{:.1} h ago", s / 3600.0)
    }
}

pub fn render(s: &WardSnapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} — broker {} — {} beds",
        s.station,
        s.broker,
        s.beds.len()
    );
    let _ = writeln!(
        out,
        "{:<8} {:<10} {:<8} {:>11} {:>4} {:>5} {:>4} {:>8} {:>5}  PATIENT",
        "BED", "DEVICE", "STATE", "LAST SEEN", "HR", "SpO2", "RR", "NIBP", "TEMP"
    );
    for b in &s.beds {
        let state = match b.connection {
            Connection::Never => "never",
            Connection::Online => "online",
            Connection::Silent => "SILENT",
            Connection::Offline => "OFFLINE",
        };
        let nibp = format!(
            "{}/{}",
            numeric(b, MDC_PRESS_BLD_NONINV_SYS),
            numeric(b, MDC_PRESS_BLD_NONINV_DIA)
        );
        let temp = match numeric(b, MDC_TEMP_BODY).as_str() {
            "--" => numeric(b, MDC_TEMP),
            t => t.to_string(),
        };
        let _ = writeln!(
            out,
            "{:<8} {:<10} {:<8} {:>11} {:>4} {:>5} {:>4} {:>8} {:>5}  {}",
            b.label,
            b.device.as_deref().unwrap_or("-"),
            state,
            ago(s.now_ms, b.last_seen_ms),
            numeric(b, MDC_ECG_HEART_RATE),
            numeric(b, MDC_PULS_OXIM_SAT_O2),
            numeric(b, MDC_RESP_RATE),
            nibp,
            temp,
            b.patient
                .as_ref()
                .map(|p| p.line.as_str())
                .unwrap_or("no patient admitted"),
        );
    }
    for d in &s.unassigned {
        let _ = writeln!(
            out,
            "unassigned device {} ({:?}, last seen {})",
            d.device,
            d.connection,
            ago(s.now_ms, d.last_seen_ms)
        );
    }
    let a = &s.alarms;
    if !a.driver_ok {
        let _ = writeln!(
            out,
            "!!! ALARM SYSTEM NOT RUNNING: the alarm driver has stopped ticking"
        );
    }
    if a.alarms.is_empty() {
        let _ = writeln!(out, "alarms: none");
    }
    for x in &a.alarms {
        let place = x
            .bed
            .as_ref()
            .and_then(|b| s.beds.iter().find(|v| v.id == *b))
            .map(|v| v.label.clone())
            .unwrap_or_else(|| "Station".into());
        let state = match &x.inactivation {
            ward_alarm::Inactivation::None => String::new(),
            ward_alarm::Inactivation::Acknowledged { by, .. } => format!(" [acknowledged by {by}]"),
            ward_alarm::Inactivation::AudioPaused { until_ms, .. } => {
                format!(" [audio paused {}s]", (until_ms - s.now_ms).max(0) / 1000)
            }
            ward_alarm::Inactivation::AlarmPaused { until_ms, .. } => {
                format!(" [alarm paused {}s]", (until_ms - s.now_ms).max(0) / 1000)
            }
            ward_alarm::Inactivation::AudioOff { .. } => " [audio off]".into(),
        };
        let _ = writeln!(
            out,
            "ALARM {:<6} {:<8} {}{}{}{} (#{}, since {})",
            x.priority.as_str().to_uppercase(),
            place,
            x.label,
            x.value.map(|v| format!(" {v}")).unwrap_or_default(),
            if x.cause_active { "" } else { " [latched]" },
            state,
            x.id,
            ago(s.now_ms, Some(x.onset_ms)),
        );
    }
    if let Some(au) = &a.audio {
        let _ = writeln!(
            out,
            "alarm audio: {} — {}",
            if au.ok { "ok" } else { "UNAVAILABLE" },
            au.detail
        );
    }
    let m = &s.metrics;
    let y = &m.sync;
    if y.enabled {
        let _ = writeln!(
            out,
            "hospital core {}: {} | backlog {} event(s){}{}",
            y.upstream,
            if y.connected {
                "connected"
            } else {
                "NOT CONNECTED"
            },
            y.backlog,
            y.oldest_unsynced_ms
                .map(|t| format!(", oldest {}", ago(s.now_ms, Some(t))))
                .unwrap_or_default(),
            y.last_error
                .as_deref()
                .filter(|_| !y.connected)
                .map(|e| format!(" | {e}"))
                .unwrap_or_default(),
        );
    }
    for l in &m.hl7_links {
        let _ = writeln!(
            out,
            "HL7 {} to {}: {} | backlog {} | refused {}{}",
            l.dest.to_uppercase(),
            l.to,
            if l.connected {
                "connected"
            } else {
                "NOT CONNECTED"
            },
            l.backlog,
            l.failed,
            l.last_error
                .as_deref()
                .filter(|_| !l.connected)
                .map(|e| format!(" | {e}"))
                .unwrap_or_default(),
        );
    }
    if !m.hl7.is_empty() {
        let counts: Vec<String> = m.hl7.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "HL7: {}", counts.join(" "));
    }
    let refused: Vec<String> = m
        .ingest
        .iter()
        .filter(|(k, _)| k.starts_with("bad_") || k.starts_with("invalid"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(
        out,
        "clients {} | msgs in {} dropped {} | malformed {} too-large {} bad-topic {} | refused payloads: {} | stored {} rows, queue-full {}, write errors {}",
        m.broker.connections_active,
        m.broker.messages_in,
        m.broker.messages_dropped,
        m.broker.malformed_packets,
        m.broker.packets_too_large,
        m.broker.invalid_topics,
        if refused.is_empty() { "none".to_string() } else { refused.join(" ") },
        m.store.records_written,
        m.store.queue_full,
        m.store.write_errors,
    );
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    let _ = writeln!(
        out,
        "database {:.1} MiB ({:.1} MiB in use){}{} | waveforms since {} | commit p99 {:.1} ms{}",
        mb(m.store.db_file_bytes),
        mb(m.store.db_used_bytes),
        m.store
            .cap_bytes
            .map(|c| format!(" of {:.0} MiB cap", mb(c)))
            .unwrap_or_default(),
        if m.store.evicted_for_size > 0 {
            format!(", {} rows evicted for size", m.store.evicted_for_size)
        } else {
            String::new()
        },
        m.store
            .oldest_wave_ms
            .map(|t| span_ago(s.now_ms - t))
            .unwrap_or_else(|| "(none yet)".into()),
        m.store.commit_p99_us as f64 / 1000.0,
        if m.store.cap_unreachable {
            " | CAP REACHED BY ALARM LOG AND AUDIT ALONE: raise store.max_db_mb"
        } else {
            ""
        },
    );
    out
}
