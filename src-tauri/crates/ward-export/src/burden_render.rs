//! The alarm burden report drawn with plotters (PNG or SVG, the same code): the key figures,
//! audible alarms per bed per day, the floods on a timeline, and the distribution of the
//! time to acknowledge by priority. The window shows the same SVG.

use crate::alarm_report::AlarmReport;
use crate::burden::ACK_BUCKETS;
use crate::error::ExportError;
use crate::render::{
    err, local, render, Drawing, Format, Rendered, FAMILY, MARK_HIGH, MARK_LOW, MARK_MEDIUM,
    SERIES, TEXT,
};
use plotters::coord::Shift;
use plotters::prelude::*;

pub const BURDEN_SIZE: (u32, u32) = (1600, 1500);

pub fn render_report(r: &AlarmReport, format: Format) -> Result<Rendered, ExportError> {
    render(format, BURDEN_SIZE.0, BURDEN_SIZE.1, r)
}

impl Drawing for AlarmReport {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), ExportError> {
        draw(area, self)
    }
}

fn pct(x: f64) -> String {
    format!("{:.1} %", x * 100.0)
}

fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &AlarmReport,
) -> Result<(), ExportError> {
    area.fill(&WHITE).map_err(err)?;
    let s = &r.stats;
    let u = &s.unit;
    let days = (s.to_ms - s.from_ms) as f64 / 86_400_000.0;
    let lines = [
        format!(
            "Alarm burden · {} · {} to {} ({:.1} days, {} beds)",
            r.station,
            local(s.from_ms, "%Y-%m-%d %H:%M"),
            local(s.to_ms, "%Y-%m-%d %H:%M"),
            days,
            s.beds.len()
        ),
        format!(
            "{} alarms: {} high, {} medium, {} low · {} physiological, {} technical ({}), {} device",
            u.alarms, u.high, u.medium, u.low, u.physiological, u.technical, pct(u.technical_share), u.device
        ),
        format!(
            "{} audible = {:.1} per bed per day · {} self-limiting (≤ {} s) · {} floods ({} in flood) · {} restarts",
            u.audible,
            u.audible_per_bed_day,
            u.self_limiting,
            s.settings.self_limiting_ms / 1000,
            u.floods,
            duration(u.flood_ms),
            s.restarts
        ),
        format!(
            "Audio paused {} of bed-time ({} pauses) · alarm paused {} ({} pauses) · {} acknowledged at other stations",
            pct(u.audio_paused_share),
            u.audio_pauses,
            pct(u.alarm_paused_share),
            u.alarm_pauses,
            u.acknowledged_at_peer
        ),
    ];
    let (title, body) = area.split_vertically(150);
    for (i, line) in lines.iter().enumerate() {
        let size = if i == 0 { 26.0 } else { 19.0 };
        title
            .draw(&Text::new(
                line.clone(),
                (20, 12 + 34 * i as i32),
                (FAMILY, size).into_font().color(&TEXT),
            ))
            .map_err(err)?;
    }
    let panels = body.split_evenly((3, 1));
    per_bed_day(&panels[0], r)?;
    flood_timeline(&panels[1], r)?;
    ack_distribution(&panels[2], r)?;
    Ok(())
}

fn per_bed_day<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &AlarmReport,
) -> Result<(), ExportError> {
    let beds = &r.stats.per_bed;
    let top = beds
        .iter()
        .map(|b| b.figures.audible_per_bed_day)
        .fold(1.0f64, f64::max)
        * 1.15;
    let n = beds.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .caption("Audible alarms per bed per day", (FAMILY, 22.0))
        .build_cartesian_2d(0.0..n as f64, 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(2 * n.min(64) + 1)
        .y_labels(6)
        .x_label_formatter(&|x| centre_label(*x, |i| beds.get(i).map(|b| b.bed.clone())))
        .label_style((FAMILY, 13.0))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(beds.iter().enumerate().map(|(i, b)| {
            let x = i as f64;
            Rectangle::new(
                [(x + 0.1, 0.0), (x + 0.9, b.figures.audible_per_bed_day)],
                SERIES.filled(),
            )
        }))
        .map_err(err)?;
    Ok(())
}

/// The label of slot `i` when `x` is its centre (`i + 0.5`), else nothing: categories on a
/// continuous axis, one label each.
fn centre_label(x: f64, name: impl Fn(usize) -> Option<String>) -> String {
    let i = x.floor();
    if i >= 0.0 && (x - i - 0.5).abs() < 0.01 {
        name(i as usize).unwrap_or_default()
    } else {
        String::new()
    }
}

/// 45000 -> "45 s", 5400000 -> "1 h 30 min".
fn duration(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

fn flood_timeline<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &AlarmReport,
) -> Result<(), ExportError> {
    let s = &r.stats;
    let beds: Vec<&String> = s.beds.iter().collect();
    let n = beds.len().max(1);
    let span = s.to_ms - s.from_ms;
    let fmt = if span > 2 * 86_400_000 {
        "%d %H:%M"
    } else {
        "%H:%M"
    };
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .caption(
            format!(
                "Floods (≥ {} alarms of one bed in {} min)",
                s.settings.flood_alarms,
                s.settings.flood_window_ms / 60_000
            ),
            (FAMILY, 22.0),
        )
        .build_cartesian_2d(s.from_ms..s.to_ms, 0.0..n as f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_labels(8)
        .x_label_formatter(&|ms| local(*ms, fmt))
        .y_labels(2 * n.min(32) + 1)
        .y_label_formatter(&|y| centre_label(*y, |i| beds.get(i).map(|b| b.to_string())))
        .label_style((FAMILY, 13.0))
        .draw()
        .map_err(err)?;
    // A flood of minutes in a week would be thinner than a pixel: at least 1/300 of the axis.
    let min_w = span / 300;
    chart
        .draw_series(s.floods.iter().filter_map(|f| {
            let i = beds.iter().position(|b| **b == f.bed)? as f64;
            let end = f.end_ms.max(f.start_ms + min_w).min(s.to_ms);
            let start = f.start_ms.min(end - min_w);
            Some(Rectangle::new(
                [(start, i + 0.15), (end, i + 0.85)],
                MARK_HIGH.filled(),
            ))
        }))
        .map_err(err)?;
    Ok(())
}

fn ack_distribution<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    r: &AlarmReport,
) -> Result<(), ExportError> {
    let hist: Vec<(String, Vec<u32>)> = r
        .stats
        .response
        .iter()
        .map(|p| (p.priority.clone(), p.ack_histogram.clone()))
        .collect();
    let top = hist
        .iter()
        .flat_map(|(_, h)| h.iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.15;
    let k = ACK_BUCKETS.len();
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .caption(
            "Time to acknowledge (high red, medium yellow, low cyan)",
            (FAMILY, 22.0),
        )
        .build_cartesian_2d(0.0..k as f64, 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(k * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 {
                ACK_BUCKETS
                    .get(i)
                    .map(|b| b.2.to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .label_style((FAMILY, 13.0))
        .draw()
        .map_err(err)?;
    for (j, (p, h)) in hist.iter().enumerate() {
        let c = match p.as_str() {
            "high" => MARK_HIGH,
            "medium" => MARK_MEDIUM,
            _ => MARK_LOW,
        };
        let w = 0.8 / hist.len().max(1) as f64;
        chart
            .draw_series(h.iter().enumerate().map(|(i, v)| {
                let x0 = i as f64 + 0.1 + j as f64 * w;
                Rectangle::new([(x0, 0.0), (x0 + w, *v as f64)], c.filled())
            }))
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::burden::{compute, BurdenSettings};
    use ward_store::AlarmLogRow;

    fn raised(t: i64, id: u64, bed: &str, prio: &str) -> AlarmLogRow {
        AlarmLogRow {
            t_ms: t,
            kind: "raised".into(),
            alarm_id: Some(id),
            bed: Some(bed.into()),
            condition: "limit:spo2_low".into(),
            label: "SpO2 low".into(),
            priority: Some(prio.into()),
            value: Some(88.0),
            limit: Some(90.0),
            user: None,
            detail: None,
            patient: None,
        }
    }

    #[test]
    fn the_report_page_draws_each_chart_in_png_and_svg() {
        let day = 86_400_000;
        let t0 = 1_764_000_000_000;
        // A flood at bed-02 (12 alarms in 6 minutes), acknowledged ones at bed-01.
        let mut rows: Vec<AlarmLogRow> = (0..12)
            .map(|i| {
                raised(
                    t0 + 3_600_000 + i * 30_000,
                    i as u64 + 1,
                    "bed-02",
                    "medium",
                )
            })
            .collect();
        rows.push(raised(t0 + 7_200_000, 100, "bed-01", "high"));
        let mut ack = raised(t0 + 7_245_000, 100, "bed-01", "high");
        ack.kind = "acknowledged".into();
        ack.user = Some("ana".into());
        rows.push(ack);
        let beds: Vec<String> = (1..=4).map(|i| format!("bed-0{i}")).collect();
        let report = AlarmReport {
            station: "4 West".into(),
            at_ms: t0 + day,
            stats: compute(
                &rows,
                t0,
                t0 + day,
                t0 + day,
                &beds,
                BurdenSettings::default(),
            ),
            reviews: Vec::new(),
        };
        assert_eq!(report.stats.unit.floods, 1);
        let svg = String::from_utf8(render_report(&report, Format::Svg).unwrap().bytes).unwrap();
        for text in [
            "Alarm burden · 4 West",
            "Audible alarms per bed per day",
            "Floods (≥ 10 alarms",
            "Time to acknowledge",
            "bed-04",
            "30-60 s",
        ] {
            assert!(svg.contains(text), "{text}");
        }
        let png = render_report(&report, Format::Png).unwrap();
        assert_eq!((png.width, png.height), BURDEN_SIZE);
        crate::render::tests::keep_artifact("alarm-report-sample.png", &png.bytes);
    }
}
