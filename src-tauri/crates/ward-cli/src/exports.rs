//! `wardwatch export strip | trend | fhir | edf`: the same ECG strip, trend report, FHIR
//! Bundle and EDF+ file as the window's export buttons, from the station's database, for IT and for scripts. Works while the
//! station runs (the database is read through its own connection). Each export is written to
//! the audit trail with the console user, as the window's are with the nurse.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use ward_core::export::{parse_time, Format, Request};
use ward_core::Config;
use ward_store::{AuditEvent, Record, Store};

#[derive(Subcommand)]
pub enum ExportCommand {
    /// ECG strip (25 mm/s, 10 mm/mV, standard grid) of 10-30 s, PNG or SVG by --out's name.
    Strip {
        #[command(flatten)]
        common: Common,
        /// Start: "2026-11-21 10:42:05" (station time), RFC 3339, or ms since 1970.
        #[arg(long)]
        from: String,
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
    /// Trend report (HR, SpO2, RR, NIBP, Temp with alarm onsets) over the hours up to --to.
    Trend {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 24)]
        hours: u32,
        /// End of the window (default: now), in the same forms as strip's --from.
        #[arg(long)]
        to: Option<String>,
    },
    /// FHIR R4 Bundle (JSON): the patient, the monitor, every numeric and the waveforms as
    /// SampledData, from --from for --minutes.
    Fhir {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        from: String,
        #[arg(long, default_value_t = 5)]
        minutes: u32,
    },
    /// EDF+ full disclosure (every waveform channel, alarms as annotations), from --from for
    /// --minutes.
    Edf {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        from: String,
        #[arg(long, default_value_t = 5)]
        minutes: u32,
    },
}

#[derive(Args)]
pub struct Common {
    #[arg(long, env = "WARDWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Bed id, as in the config (bed-03).
    #[arg(long)]
    bed: String,
    /// Output file; .png or .svg.
    #[arg(long)]
    out: PathBuf,
}

/// A data export (FHIR, EDF+) of `minutes` from `from`.
fn data_request(
    common: Common,
    from: &str,
    minutes: u32,
    make: impl FnOnce(String, i64, i64) -> Request,
) -> anyhow::Result<(Common, Request)> {
    anyhow::ensure!(
        (1..=1440).contains(&minutes),
        "--minutes must be 1 to 1440 (24 h), not {minutes}"
    );
    let from_ms = parse_time(from)?;
    let req = make(
        common.bed.clone(),
        from_ms,
        from_ms + minutes as i64 * 60_000,
    );
    Ok((common, req))
}

pub fn export(c: ExportCommand) -> anyhow::Result<()> {
    let (common, req) = match c {
        ExportCommand::Strip {
            common,
            from,
            seconds,
        } => {
            let format = Format::from_path(&common.out)?;
            let req = Request::Strip {
                bed: common.bed.clone(),
                from_ms: parse_time(&from)?,
                seconds,
                format,
            };
            (common, req)
        }
        ExportCommand::Trend { common, hours, to } => {
            anyhow::ensure!(
                (1..=31 * 24).contains(&hours),
                "--hours must be 1 to 744 (31 days), not {hours}"
            );
            let format = Format::from_path(&common.out)?;
            let to_ms = match to {
                Some(t) => parse_time(&t)?,
                None => ward_core::now_ms(),
            };
            let req = Request::Trend {
                bed: common.bed.clone(),
                from_ms: to_ms - hours as i64 * 3_600_000,
                to_ms,
                format,
            };
            (common, req)
        }
        ExportCommand::Fhir {
            common,
            from,
            minutes,
        } => data_request(common, &from, minutes, |bed, from_ms, to_ms| {
            Request::Fhir {
                bed,
                from_ms,
                to_ms,
            }
        })?,
        ExportCommand::Edf {
            common,
            from,
            minutes,
        } => data_request(common, &from, minutes, |bed, from_ms, to_ms| Request::Edf {
            bed,
            from_ms,
            to_ms,
        })?,
    };
    let cfg = Config::load(common.config.as_deref(), toml::Table::new())?;
    let label = cfg
        .beds
        .iter()
        .find(|b| b.id.as_str() == common.bed)
        .map(|b| b.label.clone())
        .with_context(|| format!("there is no bed {:?} in {}", common.bed, cfg.source))?;
    let db = cfg.db_path();
    anyhow::ensure!(
        db.exists(),
        "no station database at {} (has the station run with this config?)",
        db.display()
    );
    let rendered = req.render(&Store::open_read_only(&db)?, &cfg.station_name, &label)?;
    rendered.write(&common.out)?;
    Store::open(&db)?.write_batch(&[Record::Audit(AuditEvent {
        origin: cfg.station_id.clone(),
        t_ms: ward_core::now_ms(),
        actor: crate::accounts::console_actor(),
        kind: req.audit_kind().into(),
        bed: Some(common.bed.clone()),
        detail: serde_json::json!({
            "file": common.out.display().to_string(),
            "from_ms": req.from_ms(),
            "to_ms": req.to_ms(),
        })
        .to_string(),
    })])?;
    if rendered.width > 0 {
        println!(
            "wrote {} ({} x {} px, {} bytes)",
            common.out.display(),
            rendered.width,
            rendered.height,
            rendered.bytes.len()
        );
    } else {
        println!(
            "wrote {} ({} bytes)",
            common.out.display(),
            rendered.bytes.len()
        );
    }
    Ok(())
}
