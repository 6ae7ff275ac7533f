//! The soak run's chart (`wardwatch bench soak`): the station's CPU, memory, open files and
//! database size, and the probe alarm's latency and its acknowledgement's, one panel each,
//! against the minutes of the run. Plotters, PNG or SVG.

use crate::error::ExportError;
use crate::render::{err, render, Drawing, Format, Rendered, FAMILY, SERIES, TEXT};
use plotters::coord::Shift;
use plotters::prelude::*;

pub const SOAK_SIZE: (u32, u32) = (1600, 1400);

/// One minute's sample of the station under soak.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SoakSample {
    pub minute: f64,
    /// Share of one core over the minute, in per cent.
    pub cpu_pct: f64,
    pub rss_mb: f64,
    pub open_files: u64,
    pub db_mb: f64,
    /// The minute's probe: from the publish of the value to the alarm raised (ms); none when
    /// no probe ran or it was missed.
    pub alarm_latency_ms: Option<f64>,
    /// From the scripted acknowledgement's publish at the peer to the alarm acknowledged here.
    pub ack_latency_ms: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct SoakChart {
    pub title: String,
    pub samples: Vec<SoakSample>,
}

pub fn render_soak(c: &SoakChart, format: Format) -> Result<Rendered, ExportError> {
    render(format, SOAK_SIZE.0, SOAK_SIZE.1, c)
}

impl Drawing for SoakChart {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), ExportError> {
        area.fill(&WHITE).map_err(err)?;
        let (head, body) = area.split_vertically(50);
        head.draw(&Text::new(
            self.title.clone(),
            (20, 14),
            (FAMILY, 24.0).into_font().color(&TEXT),
        ))
        .map_err(err)?;
        let panels = body.split_evenly((3, 2));
        let s = &self.samples;
        let series: [(&str, Vec<(f64, f64)>); 6] = [
            (
                "Station CPU (% of one core)",
                s.iter().map(|x| (x.minute, x.cpu_pct)).collect(),
            ),
            (
                "Station RSS (MB)",
                s.iter().map(|x| (x.minute, x.rss_mb)).collect(),
            ),
            (
                "Open files",
                s.iter().map(|x| (x.minute, x.open_files as f64)).collect(),
            ),
            (
                "Database (MB)",
                s.iter().map(|x| (x.minute, x.db_mb)).collect(),
            ),
            (
                "Alarm latency, value published to alarm raised (ms)",
                s.iter()
                    .filter_map(|x| Some((x.minute, x.alarm_latency_ms?)))
                    .collect(),
            ),
            (
                "Acknowledgement at the peer to applied here (ms)",
                s.iter()
                    .filter_map(|x| Some((x.minute, x.ack_latency_ms?)))
                    .collect(),
            ),
        ];
        let end = s.last().map_or(1.0, |x| x.minute).max(1.0);
        for (panel, (caption, points)) in panels.iter().zip(series) {
            // From zero, so a slow growth is seen at its true size.
            let top = points.iter().map(|p| p.1).fold(1.0f64, f64::max) * 1.15;
            let mut chart = ChartBuilder::on(panel)
                .margin(14)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .caption(caption, (FAMILY, 20.0))
                .build_cartesian_2d(0.0..end, 0.0..top)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("minutes")
                .label_style((FAMILY, 13.0))
                .draw()
                .map_err(err)?;
            // The latencies are one measurement a minute, some minutes without: dots, so a
            // missing minute is not drawn as a line across it.
            if caption.contains("(ms)") {
                chart
                    .draw_series(points.iter().map(|p| Circle::new(*p, 3, SERIES.filled())))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(points, SERIES.stroke_width(2)))
                    .map_err(err)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_draws_six_panels_as_a_png() {
        let c = SoakChart {
            title: "Soak".into(),
            samples: (0..90)
                .map(|m| SoakSample {
                    minute: m as f64,
                    cpu_pct: 9.0 + (m % 7) as f64,
                    rss_mb: 70.0,
                    open_files: 140,
                    db_mb: m as f64 * 7.0,
                    alarm_latency_ms: (m % 20 != 0).then_some(12.0 + (m % 5) as f64),
                    ack_latency_ms: (m % 20 != 0).then_some(30.0),
                })
                .collect(),
        };
        let png = render_soak(&c, Format::Png).unwrap();
        assert_eq!((png.width, png.height), SOAK_SIZE);
        assert_eq!(&png.bytes[1..4], b"PNG");
        let svg = render_soak(&c, Format::Svg).unwrap();
        let text = String::from_utf8(svg.bytes).unwrap();
        assert!(text.contains("Open files") && text.contains("Database (MB)"));
        assert!(text.contains("Alarm latency") && text.contains("Acknowledgement at the peer"));
    }
}
