//! Printable exports: an ECG strip (10-30 s on standard ECG paper) and a trend report, as PNG
//! or SVG, drawn by plotters from the store.
//!
//! Text uses DejaVu Sans compiled into the binary (assets/fonts, with its licence), registered
//! with plotters' ab_glyph backend: no system font lookup, so a headless station with no fonts
//! installed exports the same strip as a desktop. SVG text names the family and is drawn by
//! whatever opens the file.
//!
//! The strip's geometry is fixed and public ([`strip_geometry`]) so tests can check the paper
//! and the trace against the physics: 25 mm/s, 10 mm/mV, 1 mm minor and 5 mm major grid, at
//! 8 pixels per millimetre (about 200 dpi), ten seconds per row.
//!
//! Layout: data gathering ([`StripData::load`], [`TrendData`]) is separate from drawing, which
//! is generic over the plotters backend so PNG and SVG are the same code.

use crate::error::ExportError;
use crate::review::{self, ReviewTrend};
use chrono::TimeZone;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::OnceLock;
use ward_model::codes;
use ward_store::Store;

static FONT: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans.ttf");
pub(crate) const FAMILY: &str = "sans-serif";

/// Pixels per millimetre of paper.
pub const PX_PER_MM: i32 = 8;
/// Paper speed and gain (the ECG standard's defaults).
pub const MM_PER_S: f64 = 25.0;
pub const MM_PER_MV: f64 = 10.0;
pub const ROW_SECONDS: u32 = 10;
const MARGIN_MM: i32 = 5;
const HEADER_MM: i32 = 18;
const ROW_MM: i32 = 40;

/// Grid and trace colours; tests find the grid and the trace by them.
pub const MINOR_GRID: RGBColor = RGBColor(250, 200, 200);
pub const MAJOR_GRID: RGBColor = RGBColor(220, 90, 90);
pub const TRACE: RGBColor = RGBColor(0, 0, 0);
pub(crate) const TEXT: RGBColor = RGBColor(20, 20, 20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    /// From the output file's extension.
    pub fn from_path(p: &Path) -> Result<Self, ExportError> {
        match p
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("png") => Ok(Self::Png),
            Some("svg") => Ok(Self::Svg),
            _ => Err(ExportError::Render(format!(
                "{}: the file name must end in .png or .svg",
                p.display()
            ))),
        }
    }
}

/// A rendered image: its size in pixels and the file's bytes.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

impl Rendered {
    pub fn write(&self, path: &Path) -> Result<(), ExportError> {
        std::fs::write(path, &self.bytes)
            .map_err(|e| ExportError::Render(format!("cannot write {}: {e}", path.display())))
    }
}

/// Strip geometry in pixels: (width, height, top of the first row, left edge of the paper).
pub fn strip_geometry(seconds: u32) -> (u32, u32, i32, i32) {
    let rows = seconds.div_ceil(ROW_SECONDS) as i32;
    let width_mm = 2 * MARGIN_MM + (ROW_SECONDS as f64 * MM_PER_S) as i32;
    let height_mm = MARGIN_MM + HEADER_MM + rows * ROW_MM + MARGIN_MM;
    (
        (width_mm * PX_PER_MM) as u32,
        (height_mm * PX_PER_MM) as u32,
        (MARGIN_MM + HEADER_MM) * PX_PER_MM,
        MARGIN_MM * PX_PER_MM,
    )
}

fn fonts() -> Result<(), ExportError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    if *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok()) {
        Ok(())
    } else {
        Err(ExportError::Render(
            "the bundled font cannot be read".into(),
        ))
    }
}

pub(crate) fn local(ms: i64, fmt: &str) -> String {
    chrono::Local
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format(fmt).to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

pub(crate) fn err<E: std::fmt::Display>(e: E) -> ExportError {
    ExportError::Render(e.to_string())
}

/// Everything a strip shows, read from the store.
#[derive(Debug, Clone)]
pub struct StripData {
    /// Who the strip is of (the first line, as on every printed record).
    pub patient: String,
    pub title: String,
    pub numerics: String,
    pub from_ms: i64,
    pub seconds: u32,
    /// Runs of contiguous samples: (seconds from `from_ms`, millivolts).
    pub runs: Vec<Vec<(f64, f32)>>,
}

impl StripData {
    /// ECG lead II of `bed` for `seconds` (10-30) from `from_ms`. Refuses a strip with no
    /// stored ECG at all rather than printing empty paper.
    pub fn load(
        store: &Store,
        station: &str,
        bed: &str,
        bed_label: &str,
        from_ms: i64,
        seconds: u32,
    ) -> Result<Self, ExportError> {
        if !(10..=30).contains(&seconds) {
            return Err(ExportError::BadRequest(format!(
                "an ECG strip is 10 to 30 seconds long, not {seconds}"
            )));
        }
        let to_ms = from_ms + seconds as i64 * 1000;
        let w = review::wave(store, bed, codes::MDC_ECG_ELEC_POTL_II, from_ms, to_ms, 0)?;
        if w.samples == 0 {
            return Err(ExportError::BadRequest(format!(
                "no ECG is stored for {bed} between {} and {}",
                local(from_ms, "%Y-%m-%d %H:%M:%S"),
                local(to_ms, "%H:%M:%S")
            )));
        }
        let runs = w
            .segments
            .iter()
            .map(|s| {
                s.values
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        (
                            (s.t0_ms + i as f64 * s.step_ms - from_ms as f64) / 1000.0,
                            v,
                        )
                    })
                    .collect()
            })
            .collect();
        let at = |code| review::value_at(store, bed, code, to_ms);
        let fmt = |v: Option<f64>, digits: usize| {
            v.map(|v| format!("{v:.digits$}"))
                .unwrap_or_else(|| "--".into())
        };
        let numerics = format!(
            "HR {} bpm   SpO2 {} %   RR {} /min   NIBP {}/{} ({}) mmHg   Temp {} °C",
            fmt(at(codes::MDC_ECG_HEART_RATE)?, 0),
            fmt(at(codes::MDC_PULS_OXIM_SAT_O2)?, 0),
            fmt(at(codes::MDC_RESP_RATE)?, 0),
            fmt(at(codes::MDC_PRESS_BLD_NONINV_SYS)?, 0),
            fmt(at(codes::MDC_PRESS_BLD_NONINV_DIA)?, 0),
            fmt(at(codes::MDC_PRESS_BLD_NONINV_MEAN)?, 0),
            fmt(at(codes::MDC_TEMP_BODY)?, 1),
        );
        let patient = review::patient_line(store, bed, from_ms, to_ms)?;
        let title = format!(
            "{bed_label} ({bed})   {station}   ECG II   {} – {} ({})   {MM_PER_S} mm/s   {MM_PER_MV} mm/mV",
            local(from_ms, "%Y-%m-%d %H:%M:%S"),
            local(to_ms, "%H:%M:%S"),
            local(from_ms, "%:z"),
        );
        Ok(Self {
            patient,
            title,
            numerics,
            from_ms,
            seconds,
            runs,
        })
    }

    pub fn render(&self, format: Format) -> Result<Rendered, ExportError> {
        let (w, h, _, _) = strip_geometry(self.seconds);
        render(format, w, h, self)
    }
}

/// Something drawn the same way on every plotters backend.
pub(crate) trait Drawing {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), ExportError>;
}

impl Drawing for StripData {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), ExportError> {
        draw_strip(area, self)
    }
}

impl Drawing for TrendData {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), ExportError> {
        draw_report(area, self)
    }
}

pub(crate) fn render<D: Drawing>(
    format: Format,
    w: u32,
    h: u32,
    d: &D,
) -> Result<Rendered, ExportError> {
    fonts()?;
    let bytes = match format {
        Format::Png => {
            let mut buf = vec![255u8; w as usize * h as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
                d.draw(&root)?;
                root.present().map_err(err)?;
            }
            let mut out = Vec::new();
            {
                let mut enc = png::Encoder::new(&mut out, w, h);
                enc.set_color(png::ColorType::Rgb);
                enc.set_depth(png::BitDepth::Eight);
                let mut wr = enc.write_header().map_err(err)?;
                wr.write_image_data(&buf).map_err(err)?;
            }
            out
        }
        Format::Svg => {
            let mut s = String::new();
            {
                let root = SVGBackend::with_string(&mut s, (w, h)).into_drawing_area();
                d.draw(&root)?;
                root.present().map_err(err)?;
            }
            s.into_bytes()
        }
    };
    Ok(Rendered {
        width: w,
        height: h,
        bytes,
    })
}

fn draw_strip<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &StripData,
) -> Result<(), ExportError> {
    area.fill(&WHITE).map_err(err)?;
    let (w, _, top, left) = strip_geometry(d.seconds);
    let mm = PX_PER_MM;
    let font = |px: i32| (FAMILY, px as f64).into_font().color(&TEXT);
    // One embedded face (DejaVu Sans, regular): the patient line is first, not bold.
    area.draw(&Text::new(d.patient.clone(), (left, mm), font(4 * mm)))
        .map_err(err)?;
    area.draw(&Text::new(d.title.clone(), (left, 7 * mm), font(4 * mm)))
        .map_err(err)?;
    area.draw(&Text::new(
        d.numerics.clone(),
        (left, 13 * mm),
        font(4 * mm),
    ))
    .map_err(err)?;
    let paper_w = (ROW_SECONDS as f64 * MM_PER_S) as i32 * mm;
    debug_assert!(left + paper_w <= w as i32);
    let rows = d.seconds.div_ceil(ROW_SECONDS) as i32;
    for r in 0..rows {
        let y0 = top + r * ROW_MM * mm;
        // Minor lines first so the major ones draw over them.
        for major in [false, true] {
            let (color, width, step) = if major {
                (MAJOR_GRID, 2, 5)
            } else {
                (MINOR_GRID, 1, 1)
            };
            let style = ShapeStyle::from(&color).stroke_width(width);
            let row_s = (d.seconds as i32 - r * ROW_SECONDS as i32).min(ROW_SECONDS as i32);
            let row_w = (row_s as f64 * MM_PER_S) as i32 * mm;
            for x_mm in (0..=row_w / mm).step_by(step) {
                let x = left + x_mm * mm;
                area.draw(&PathElement::new(
                    vec![(x, y0), (x, y0 + ROW_MM * mm)],
                    style,
                ))
                .map_err(err)?;
            }
            for y_mm in (0..=ROW_MM).step_by(step) {
                let y = y0 + y_mm * mm;
                area.draw(&PathElement::new(vec![(left, y), (left + row_w, y)], style))
                    .map_err(err)?;
            }
        }
        let row_start_ms = d.from_ms + (r as i64) * ROW_SECONDS as i64 * 1000;
        area.draw(&Text::new(
            local(row_start_ms, "%H:%M:%S"),
            (left + mm, y0 + mm),
            font(3 * mm),
        ))
        .map_err(err)?;
    }
    // The trace, one path per run per row: a gap in the data is a gap on paper.
    let trace = ShapeStyle::from(&TRACE).stroke_width(2);
    let half = ROW_MM * mm / 2;
    for run in &d.runs {
        let mut path: Vec<(i32, i32)> = Vec::new();
        let mut row = None;
        for &(t, mv) in run {
            let r = (t / ROW_SECONDS as f64).floor() as i32;
            if row != Some(r) && !path.is_empty() {
                area.draw(&PathElement::new(std::mem::take(&mut path), trace))
                    .map_err(err)?;
            }
            row = Some(r);
            let x =
                left + ((t - r as f64 * ROW_SECONDS as f64) * MM_PER_S * mm as f64).round() as i32;
            let mid = top + r * ROW_MM * mm + half;
            let dy = (mv as f64 * MM_PER_MV * mm as f64).round() as i32;
            path.push((x, mid - dy.clamp(-half, half)));
        }
        if !path.is_empty() {
            area.draw(&PathElement::new(path, trace)).map_err(err)?;
        }
    }
    Ok(())
}

/// What to export, as the window, the CLI and the audit trail name it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    /// ECG strip of `seconds` (10-30) from `from_ms`.
    Strip {
        bed: String,
        from_ms: i64,
        seconds: u32,
        format: Format,
    },
    /// Trend report over `[from_ms, to_ms)`.
    Trend {
        bed: String,
        from_ms: i64,
        to_ms: i64,
        format: Format,
    },
    /// FHIR R4 Bundle (JSON) of `[from_ms, to_ms)`: patient, monitor, numerics, waveforms.
    Fhir {
        bed: String,
        from_ms: i64,
        to_ms: i64,
    },
    /// EDF+ full disclosure of `[from_ms, to_ms)`, alarms as annotations.
    Edf {
        bed: String,
        from_ms: i64,
        to_ms: i64,
    },
}

impl Request {
    pub fn bed(&self) -> &str {
        match self {
            Request::Strip { bed, .. }
            | Request::Trend { bed, .. }
            | Request::Fhir { bed, .. }
            | Request::Edf { bed, .. } => bed,
        }
    }
    pub fn from_ms(&self) -> i64 {
        match self {
            Request::Strip { from_ms, .. }
            | Request::Trend { from_ms, .. }
            | Request::Fhir { from_ms, .. }
            | Request::Edf { from_ms, .. } => *from_ms,
        }
    }
    pub fn to_ms(&self) -> i64 {
        match self {
            Request::Strip {
                from_ms, seconds, ..
            } => from_ms + *seconds as i64 * 1000,
            Request::Trend { to_ms, .. }
            | Request::Fhir { to_ms, .. }
            | Request::Edf { to_ms, .. } => *to_ms,
        }
    }
    pub fn audit_kind(&self) -> &'static str {
        match self {
            Request::Strip { .. } => "export.strip",
            Request::Trend { .. } => "export.trend",
            Request::Fhir { .. } => "export.fhir",
            Request::Edf { .. } => "export.edf",
        }
    }
    /// `ecg-bed-03-20261121-104205.png`: bed and local start time, so a folder of exports
    /// sorts by bed and time.
    pub fn file_name(&self) -> String {
        let ext_of = |f: &Format| match f {
            Format::Png => "png",
            Format::Svg => "svg",
        };
        let (kind, ext) = match self {
            Request::Strip { format, .. } => ("ecg", ext_of(format)),
            Request::Trend { format, .. } => ("trend", ext_of(format)),
            Request::Fhir { .. } => ("fhir", "json"),
            Request::Edf { .. } => ("disclosure", "edf"),
        };
        format!(
            "{kind}-{}-{}.{ext}",
            self.bed(),
            local(self.from_ms(), "%Y%m%d-%H%M%S")
        )
    }

    pub fn render(
        &self,
        store: &Store,
        station: &str,
        bed_label: &str,
    ) -> Result<Rendered, ExportError> {
        match self {
            Request::Strip {
                bed,
                from_ms,
                seconds,
                format,
            } => {
                StripData::load(store, station, bed, bed_label, *from_ms, *seconds)?.render(*format)
            }
            Request::Trend {
                bed,
                from_ms,
                to_ms,
                format,
            } => TrendData::load(store, station, bed, bed_label, *from_ms, *to_ms)?.render(*format),
            Request::Fhir {
                bed,
                from_ms,
                to_ms,
            } => {
                check_window(*from_ms, *to_ms)?;
                Ok(Rendered {
                    width: 0,
                    height: 0,
                    bytes: crate::fhir::bundle(store, station, bed, *from_ms, *to_ms)?.into_bytes(),
                })
            }
            Request::Edf {
                bed,
                from_ms,
                to_ms,
            } => Ok(Rendered {
                width: 0,
                height: 0,
                bytes: crate::edf::file(store, station, bed, *from_ms, *to_ms)?,
            }),
        }
    }
}

/// A data export covers a positive window of at most 24 hours.
fn check_window(from_ms: i64, to_ms: i64) -> Result<(), ExportError> {
    if to_ms <= from_ms || to_ms - from_ms > 24 * 3_600_000 {
        return Err(ExportError::BadRequest(
            "an export covers 1 s to 24 h".into(),
        ));
    }
    Ok(())
}

/// A time as people type it: RFC 3339 (`2026-11-21T10:42:05+01:00`), local
/// `2026-11-21 10:42[:05]`, or milliseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, ExportError> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            if let Some(t) = chrono::Local.from_local_datetime(&naive).earliest() {
                return Ok(t.timestamp_millis());
            }
        }
    }
    Err(ExportError::BadRequest(format!(
        "{s:?} is not a time: use 2026-11-21 10:42:05 (station time), RFC 3339 or milliseconds since 1970"
    )))
}

/// A trend report: one panel per vital over the window, alarm onsets marked.
pub struct TrendData {
    pub title: String,
    pub trend: ReviewTrend,
}

/// Trend report size in pixels.
pub const REPORT_SIZE: (u32, u32) = (1600, 1400);
/// Alarm marker colours by priority (IEC 60601-1-8 colours: red, yellow, cyan).
pub const MARK_HIGH: RGBColor = RGBColor(220, 0, 0);
pub const MARK_MEDIUM: RGBColor = RGBColor(230, 170, 0);
pub const MARK_LOW: RGBColor = RGBColor(0, 170, 200);
/// Series colour in the report.
pub const SERIES: RGBColor = RGBColor(0, 70, 160);

impl TrendData {
    pub fn load(
        store: &Store,
        station: &str,
        bed: &str,
        bed_label: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Self, ExportError> {
        let trend = review::trend(store, bed, from_ms, to_ms)?;
        let title = format!(
            "{}\n{bed_label} ({bed})   {station}   trends {} – {} ({})   {}",
            review::patient_line(store, bed, from_ms, to_ms)?,
            local(from_ms, "%Y-%m-%d %H:%M"),
            local(to_ms, "%Y-%m-%d %H:%M"),
            local(from_ms, "%:z"),
            match trend.resolution {
                ward_store::TrendResolution::Raw => "every value",
                ward_store::TrendResolution::Minute => "1-minute means",
            }
        );
        Ok(Self { title, trend })
    }

    pub fn render(&self, format: Format) -> Result<Rendered, ExportError> {
        render(format, REPORT_SIZE.0, REPORT_SIZE.1, self)
    }
}

fn draw_report<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    d: &TrendData,
) -> Result<(), ExportError> {
    area.fill(&WHITE).map_err(err)?;
    let (title, body) = area.split_vertically(84);
    // First line the patient, then bed, station and period.
    for (i, line) in d.title.lines().enumerate() {
        title
            .draw(&Text::new(
                line.to_string(),
                (20, 14 + 32 * i as i32),
                (FAMILY, 24.0).into_font().color(&TEXT),
            ))
            .map_err(err)?;
    }
    let t = &d.trend;
    // Panels: HR, SpO2, RR, NIBP (three series), Temp.
    let groups: [&[u32]; 5] = [
        &[codes::MDC_ECG_HEART_RATE],
        &[codes::MDC_PULS_OXIM_SAT_O2],
        &[codes::MDC_RESP_RATE],
        &[
            codes::MDC_PRESS_BLD_NONINV_SYS,
            codes::MDC_PRESS_BLD_NONINV_MEAN,
            codes::MDC_PRESS_BLD_NONINV_DIA,
        ],
        &[codes::MDC_TEMP_BODY],
    ];
    // A gap of more than three steps is not bridged.
    let gap_ms = match t.resolution {
        ward_store::TrendResolution::Raw => 10_000,
        ward_store::TrendResolution::Minute => 180_000,
    };
    let onsets: Vec<(i64, RGBColor)> = t
        .alarms
        .iter()
        .filter(|a| a.kind == "raised")
        .map(|a| {
            let c = match a.priority.as_deref() {
                Some("high") => MARK_HIGH,
                Some("medium") => MARK_MEDIUM,
                _ => MARK_LOW,
            };
            (a.t_ms, c)
        })
        .collect();
    for (panel, codes) in body.split_evenly((groups.len(), 1)).iter().zip(groups) {
        let series: Vec<_> = t
            .series
            .iter()
            .filter(|s| codes.contains(&s.code))
            .collect();
        let label = series
            .iter()
            .map(|s| s.label.as_str())
            .collect::<Vec<_>>()
            .join(" / ");
        let unit = series.first().map(|s| s.unit.clone()).unwrap_or_default();
        let (lo, hi) = series
            .iter()
            .flat_map(|s| s.points.iter())
            .fold((f64::MAX, f64::MIN), |(lo, hi), p| {
                (lo.min(p.min), hi.max(p.max))
            });
        let (lo, hi) = if lo > hi {
            (0.0, 1.0)
        } else {
            let pad = ((hi - lo) * 0.1).max(1.0);
            (lo - pad, hi + pad)
        };
        let mut chart = ChartBuilder::on(panel)
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(70)
            .caption(format!("{label} ({unit})"), (FAMILY, 20.0))
            .build_cartesian_2d(t.from_ms..t.to_ms, lo..hi)
            .map_err(err)?;
        let span = t.to_ms - t.from_ms;
        let fmt = if span > 2 * 86_400_000 {
            "%d %H:%M"
        } else if span > 600_000 {
            "%H:%M"
        } else {
            "%H:%M:%S"
        };
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(5)
            .x_label_formatter(&|ms| local(*ms, fmt))
            .label_style((FAMILY, 14.0))
            .draw()
            .map_err(err)?;
        for (ms, c) in &onsets {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(*ms, lo), (*ms, hi)],
                    ShapeStyle::from(c).stroke_width(2),
                )))
                .map_err(err)?;
        }
        for s in series {
            let mut run: Vec<(i64, f64)> = Vec::new();
            let mut flush = |run: &mut Vec<(i64, f64)>| -> Result<(), ExportError> {
                if !run.is_empty() {
                    chart
                        .draw_series(LineSeries::new(
                            std::mem::take(run),
                            ShapeStyle::from(&SERIES).stroke_width(2),
                        ))
                        .map_err(err)?;
                }
                Ok(())
            };
            for p in &s.points {
                if run.last().is_some_and(|(t, _)| p.t_ms - t > gap_ms) {
                    flush(&mut run)?;
                }
                run.push((p.t_ms, p.value));
            }
            flush(&mut run)?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ward_store::{Record, VitalRow, WaveChunk};

    #[test]
    fn the_patient_line_names_who_was_in_the_bed_then() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("p.sqlite")).unwrap();
        let census = |t: i64, p: Option<&str>| {
            Record::Census {
            bed: "bed-01".into(),
            patient: p.map(|family| {
                format!(
                    r#"{{"mrn":"{family}-1","authority":"","family":"{family}","given":"","birth_date":"","sex":"U","category":"adult"}}"#
                )
            }),
            source: "manual".into(),
            t_ms: t,
            user: "t".into(),
        }
        };
        s.write_batch(&[census(1_000, Some("Ant"))]).unwrap();
        s.write_batch(&[census(5_000, None)]).unwrap();
        s.write_batch(&[census(9_000, Some("Bee"))]).unwrap();
        let line = |a, b| review::patient_line(&s, "bed-01", a, b).unwrap();
        assert_eq!(line(0, 500), "no patient admitted");
        assert_eq!(line(1_000, 2_000), "ANT · MRN Ant-1 · adult");
        assert_eq!(
            line(6_000, 8_000),
            "no patient admitted",
            "between two patients"
        );
        let both = line(2_000, 10_000);
        assert!(
            both.starts_with("ANT · MRN Ant-1 · adult; BEE · MRN Bee-1 · adult from "),
            "{both}"
        );
        assert!(line(500, 2_000).starts_with("no patient admitted until "));
    }

    /// 10 s of ECG at 250 Hz for bed-01: a 1 Hz sine of 1 mV amplitude from `t0_ms`, in one
    /// chunk a second, and HR 72 each second.
    pub(crate) fn sine_store(t0_ms: i64) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("x.sqlite")).unwrap();
        let mut batch = Vec::new();
        for sec in 0..10i64 {
            batch.push(Record::Wave(WaveChunk {
                device: "mon".into(),
                bed: Some("bed-01".into()),
                channel: codes::MDC_ECG_ELEC_POTL_II,
                t0_us: (t0_ms + sec * 1000) * 1000,
                rate_mhz: 250_000,
                scale: 0.001,
                offset: 0.0,
                unit: codes::UNIT_MV,
                samples: (0..250)
                    .map(|i| ((i as f64 / 250.0 * std::f64::consts::TAU).sin() * 1000.0) as i16)
                    .collect(),
            }));
            batch.push(Record::Vital(VitalRow {
                ts_ms: t0_ms + sec * 1000,
                device: "mon".into(),
                bed: Some("bed-01".into()),
                code: codes::MDC_ECG_HEART_RATE,
                unit: codes::UNIT_BPM,
                value: Some(72.0),
            }));
        }
        s.write_batch(&batch).unwrap();
        (dir, s)
    }

    const T0: i64 = 1_800_000_000_000;

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        (info.width, info.height, buf)
    }

    #[test]
    fn a_png_strip_has_the_paper_grid_and_the_trace_where_the_physics_puts_it() {
        let (_d, s) = sine_store(T0);
        let strip = StripData::load(&s, "Ward 7", "bed-01", "Bed 1", T0, 10).unwrap();
        assert!(
            strip.numerics.starts_with("HR 72 bpm"),
            "{}",
            strip.numerics
        );
        let out = strip.render(Format::Png).unwrap();
        let (w, h, top, left) = strip_geometry(10);
        assert_eq!((w, h), (2080, 544));
        let (pw, ph, px) = decode(&out.bytes);
        assert_eq!((pw, ph), (w, h));
        let at = |x: i32, y: i32| {
            let i = (y as usize * w as usize + x as usize) * 3;
            RGBColor(px[i], px[i + 1], px[i + 2])
        };
        let paper_w = 250 * PX_PER_MM;
        // Major lines every 5 mm along the row's top edge: the whole width is grid.
        let major_on_top = (left..left + paper_w)
            .filter(|&x| at(x, top) == MAJOR_GRID)
            .count();
        assert!(major_on_top as i32 > paper_w * 9 / 10, "{major_on_top}");
        // 51 major verticals (0..=250 mm step 5) and minor lines between them at 1 mm.
        let y = top + 3; // just below the top edge, away from the trace
        let majors = (left..=left + paper_w)
            .filter(|&x| at(x, y) == MAJOR_GRID)
            .count();
        let minors = (left..=left + paper_w)
            .filter(|&x| at(x, y) == MINOR_GRID)
            .count();
        assert!((51..=51 * 3).contains(&majors), "{majors}");
        assert!(minors >= 200, "{minors}");
        // The trace: black pixels span the 10 s (250 mm) and ±1 mV (±10 mm) around the row's
        // middle, within the 2 px stroke.
        let (mut x0, mut x1, mut y0, mut y1) = (i32::MAX, i32::MIN, i32::MAX, i32::MIN);
        for yy in 0..h as i32 {
            for xx in 0..w as i32 {
                if at(xx, yy) == TRACE {
                    x0 = x0.min(xx);
                    x1 = x1.max(xx);
                    y0 = y0.min(yy);
                    y1 = y1.max(yy);
                }
            }
        }
        let mid = top + 20 * PX_PER_MM;
        let amp = 10 * PX_PER_MM;
        assert!(
            (x0 - left).abs() <= 2,
            "trace starts at {x0}, paper at {left}"
        );
        assert!((x1 - (left + paper_w)).abs() <= 3, "trace ends at {x1}");
        assert!((y0 - (mid - amp)).abs() <= 2, "top {y0} vs {}", mid - amp);
        assert!(
            (y1 - (mid + amp)).abs() <= 2,
            "bottom {y1} vs {}",
            mid + amp
        );
        keep_artifact("ecg-strip.png", &out.bytes);
    }

    /// (x, y) points of every polyline drawn in `color`.
    fn polylines(svg: &str, color: RGBColor) -> Vec<Vec<(i32, i32)>> {
        let stroke = format!("stroke=\"#{:02X}{:02X}{:02X}\"", color.0, color.1, color.2);
        svg.split("<polyline")
            .skip(1)
            .filter(|e| e.contains(&stroke))
            .map(|e| {
                let pts = e
                    .split("points=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                pts.split_whitespace()
                    .map(|p| {
                        let (x, y) = p.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn an_svg_strip_has_the_same_grid_and_trace_and_a_thirty_second_strip_has_three_rows() {
        let (_d, s) = sine_store(T0);
        let out = StripData::load(&s, "Ward 7", "bed-01", "Bed 1", T0, 10)
            .unwrap()
            .render(Format::Svg)
            .unwrap();
        let svg = String::from_utf8(out.bytes.clone()).unwrap();
        let (w, h, top, left) = strip_geometry(10);
        assert!(
            svg.contains(&format!("width=\"{w}\" height=\"{h}\"")),
            "{}",
            &svg[..200]
        );
        // Grid: 51 + 9 major lines and 251 + 41 minor ones in the one row.
        assert_eq!(polylines(&svg, MAJOR_GRID).len(), 51 + 9);
        assert_eq!(polylines(&svg, MINOR_GRID).len(), 251 + 41);
        let trace: Vec<(i32, i32)> = polylines(&svg, TRACE).concat();
        assert_eq!(trace.len(), 2500, "every sample is a point");
        let xs = trace.iter().map(|p| p.0);
        let ys = trace.iter().map(|p| p.1);
        let (mid, amp) = (top + 20 * PX_PER_MM, 10 * PX_PER_MM);
        assert_eq!(xs.clone().min().unwrap(), left);
        assert!((xs.max().unwrap() - (left + 250 * PX_PER_MM)).abs() <= 1);
        assert_eq!(ys.clone().min().unwrap(), mid - amp);
        assert_eq!(ys.max().unwrap(), mid + amp);
        assert!(svg.contains("Bed 1 (bed-01)") && svg.contains("HR 72 bpm"));
        keep_artifact("ecg-strip.svg", &out.bytes);

        // 30 s: three rows; the data covers the first 10 s only, so the trace stays in row 1.
        let out = StripData::load(&s, "Ward 7", "bed-01", "Bed 1", T0, 30)
            .unwrap()
            .render(Format::Svg)
            .unwrap();
        let (_, h30, _, _) = strip_geometry(30);
        assert_eq!((out.width, out.height), (w, h30));
        let svg = String::from_utf8(out.bytes).unwrap();
        assert_eq!(polylines(&svg, MAJOR_GRID).len(), 3 * (51 + 9));
    }

    #[test]
    fn strips_without_data_or_with_a_bad_length_are_refused_with_the_reason() {
        let (_d, s) = sine_store(T0);
        let e = StripData::load(&s, "W", "bed-02", "Bed 2", T0, 10).unwrap_err();
        assert!(e.to_string().contains("no ECG is stored for bed-02"), "{e}");
        let e = StripData::load(&s, "W", "bed-01", "Bed 1", T0, 5).unwrap_err();
        assert!(e.to_string().contains("10 to 30 seconds"), "{e}");
        let e = Format::from_path(Path::new("strip.jpg")).unwrap_err();
        assert!(e.to_string().contains(".png or .svg"), "{e}");
    }

    #[test]
    fn a_trend_report_draws_each_vital_and_marks_alarms() {
        let (_d, mut s) = sine_store(T0);
        s.write_batch(&[Record::Alarm(ward_store::AlarmLogRow {
            t_ms: T0 + 5_000,
            kind: "raised".into(),
            alarm_id: Some(1),
            bed: Some("bed-01".into()),
            condition: "hr_high".into(),
            label: "HR high".into(),
            priority: Some("high".into()),
            value: Some(150.0),
            limit: Some(120.0),
            user: None,
            detail: None,
            patient: None,
        })])
        .unwrap();
        let d = TrendData::load(&s, "Ward 7", "bed-01", "Bed 1", T0 - 60_000, T0 + 60_000).unwrap();
        let png = d.render(Format::Png).unwrap();
        let (w, h, px) = decode(&png.bytes);
        assert_eq!((w, h), REPORT_SIZE);
        let count = |c: RGBColor| px.chunks(3).filter(|p| p == &[c.0, c.1, c.2]).count();
        assert!(count(SERIES) > 100, "the HR series is drawn");
        assert!(count(MARK_HIGH) > 100, "the HIGH alarm is marked");
        let svg = String::from_utf8(d.render(Format::Svg).unwrap().bytes).unwrap();
        keep_artifact("trend-report.svg", svg.as_bytes());
        assert!(svg.contains("HR (bpm)") && svg.contains("NIBP-S / NIBP-D / NIBP-M (mmHg)"));
        keep_artifact("trend-report.png", &png.bytes);
        keep_artifact("trend-report.svg", svg.as_bytes());
    }

    #[test]
    fn times_are_read_in_the_forms_people_type() {
        assert_eq!(parse_time("1800000000000").unwrap(), 1_800_000_000_000);
        assert_eq!(
            parse_time("2027-01-15T08:00:00Z").unwrap(),
            1_800_000_000_000
        );
        assert_eq!(
            parse_time("2027-01-15T09:00:00+01:00").unwrap(),
            parse_time("2027-01-15T08:00:00Z").unwrap()
        );
        // Station-local forms agree with each other.
        assert_eq!(
            parse_time("2027-01-15 08:00").unwrap(),
            parse_time("2027-01-15 08:00:00").unwrap()
        );
        let e = parse_time("yesterday").unwrap_err().to_string();
        assert!(e.contains("\"yesterday\" is not a time"), "{e}");
    }

    #[test]
    fn export_file_names_sort_by_kind_bed_and_time() {
        let r = Request::Strip {
            bed: "bed-03".into(),
            from_ms: 0,
            seconds: 10,
            format: Format::Svg,
        };
        let name = r.file_name();
        assert!(
            name.starts_with("ecg-bed-03-19") && name.ends_with(".svg"),
            "{name}"
        );
        assert_eq!(r.to_ms(), 10_000);
        assert_eq!(r.audit_kind(), "export.strip");
    }

    /// Keeps a sample export in the workspace's test-artifacts/ (beside the window test's
    /// screenshots), or in $WARDWATCH_ARTIFACTS, for people to look at.
    pub(crate) fn keep_artifact(name: &str, bytes: &[u8]) {
        let dir = std::env::var_os("WARDWATCH_ARTIFACTS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../test-artifacts")
            });
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
