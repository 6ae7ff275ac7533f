//! `wardwatch report alarms`: the unit's alarm statistics and limit review over the last
//! days, as PNG, SVG, CSV or JSON (by each --out's extension), from the station's database.
//! The same figures as the window's Unit statistics; works while the station runs. Written to
//! the audit trail with the console user, like the other exports.

use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;
use ward_core::export::{alarm_report, burden_render, Format};
use ward_core::Config;
use ward_store::{AuditEvent, Record, Store};

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Alarm burden: alarms by priority and kind, audible alarms per bed per day, floods,
    /// response times, pauses, technical causes, and the limit review (docs/alarms.md).
    Alarms {
        #[arg(long, env = "WARDWATCH_CONFIG")]
        config: Option<PathBuf>,
        /// The period: the last this many days up to now.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Output file(s): .png, .svg, .csv or .json; repeat for several.
        #[arg(long, required = true)]
        out: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy)]
enum Kind {
    Image(Format),
    Csv,
    Json,
}

fn kind(p: &std::path::Path) -> anyhow::Result<Kind> {
    match p
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => Ok(Kind::Csv),
        Some("json") => Ok(Kind::Json),
        _ => Format::from_path(p).map(Kind::Image).map_err(|_| {
            anyhow::anyhow!(
                "{}: the file name must end in .png, .svg, .csv or .json",
                p.display()
            )
        }),
    }
}

pub fn command(c: ReportCommand) -> anyhow::Result<()> {
    let ReportCommand::Alarms { config, days, out } = c;
    // Every name is checked before anything is computed or written.
    let kinds = out
        .iter()
        .map(|p| kind(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cfg = Config::load(config.as_deref(), toml::Table::new())?;
    let db = cfg.db_path();
    anyhow::ensure!(
        db.exists(),
        "no station database at {} (has the station run with this config?)",
        db.display()
    );
    let rules = ward_core::burden::stored_rules(&cfg)?;
    let now = ward_core::now_ms();
    let report = ward_core::burden::report(&cfg, &rules, days, now)?;
    for (path, k) in out.iter().zip(kinds) {
        let bytes = match k {
            Kind::Image(f) => burden_render::render_report(&report, f)?.bytes,
            Kind::Csv => alarm_report::to_csv(&report).into_bytes(),
            Kind::Json => alarm_report::to_json(&report)?.into_bytes(),
        };
        std::fs::write(path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    let u = &report.stats.unit;
    println!(
        "{} alarms in {} days over {} beds: {} audible ({:.1} per bed per day), {} floods, {} technical",
        u.alarms,
        days,
        report.stats.beds.len(),
        u.audible,
        u.audible_per_bed_day,
        u.floods,
        u.technical
    );
    Store::open(&db)?.write_batch(&[Record::Audit(AuditEvent {
        origin: cfg.station_id.clone(),
        t_ms: now,
        actor: crate::accounts::console_actor(),
        kind: "export.alarm_report".into(),
        bed: None,
        detail: serde_json::json!({
            "files": out.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "from_ms": report.stats.from_ms,
            "to_ms": report.stats.to_ms,
        })
        .to_string(),
    })])?;
    Ok(())
}
