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
            "{} audible = {:.1} per bed per day · {} self-limiting (≤ {} s) · {} floods ({} min) · {} restarts",
            u.audible,
            u.audible_per_bed_day,
            u.self_limiting,
            s.settings.self_limiting_ms / 1000,
            u.floods,
            u.flood_ms / 60_000,
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
        .build_cartesian_2d((0..n).into_segmented(), 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.min(64))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => beds.get(*i).map(|b| b.bed.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .label_style((FAMILY, 13.0))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(beds.iter().enumerate().map(|(i, b)| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), b.figures.audible_per_bed_day),
                ],
                SERIES.filled(),
            );
            bar.set_margin(0, 0, 3, 3);
            bar
        }))
        .map_err(err)?;
    Ok(())
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
        .build_cartesian_2d(s.from_ms..s.to_ms, (0..n).into_segmented())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .x_label_formatter(&|ms| local(*ms, fmt))
        .y_labels(n.min(32))
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => beds.get(*i).map(|b| b.to_string()).unwrap_or_default(),
            _ => String::new(),
        })
        .label_style((FAMILY, 13.0))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(s.floods.iter().filter_map(|f| {
            let i = beds.iter().position(|b| **b == f.bed)?;
            let mut bar = Rectangle::new(
                [
                    (f.start_ms, SegmentValue::Exact(i)),
                    (f.end_ms.min(s.to_ms), SegmentValue::Exact(i + 1)),
                ],
                MARK_HIGH.filled(),
            );
            bar.set_margin(2, 2, 0, 0);
            Some(bar)
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
