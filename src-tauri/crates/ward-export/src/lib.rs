//! ward-export: the stored record shaped for people. Review (full disclosure and trends for
//! the window) and printable exports (ECG strips and trend reports, PNG or SVG, drawn by
//! plotters with a bundled font).
//!
//! What it is: read-only functions over a [`ward_store::Store`], with the time window passed
//! in. What it is not: it decides nothing about who may see or export (the station asks
//! `ward_access` first and audits the export), and it writes nothing but the file asked for.
//!
//! Alarm burden (issue 18): `burden` (the unit's alarm statistics, pure over log rows),
//! `whatif` (the limit review: the alarm engine replayed over stored values),
//! `alarm_report` (both read from a store; CSV and JSON), `burden_render` (the report drawn).
//!
//! Layout: `review` (waveform segments with min/max reduction, trends with their alarm rows),
//! `render` (strip and trend report: data gathering, then drawing generic over the plotters
//! backend).

pub mod alarm_report;
pub mod burden;
pub mod burden_render;
pub mod edf;
mod error;
pub mod fhir;
pub mod render;
pub mod review;
pub mod soak_render;
pub mod whatif;

pub use render::*;
pub use review::{ReviewTrend, ReviewWave};

pub use error::ExportError;
