//! ward-core: the station, composed. The Tauri shell and the `wardwatch` CLI both start a
//! [`Station`] and hold its [`StationHandle`] (or clones of its sub-handles).
//!
//! What it is: the composition of the station's parts and the data path between them: the
//! embedded broker, in-process ingest, the live view (numerics, connection state, trace
//! rings, binary frames for the UI), the store writer, the alarm driver (the thread around
//! the pure `ward_alarm` engine), the runtime file, the optional simulated ward (feature
//! `sim`), and one lifecycle that stops them in order, losing nothing the broker accepted.
//!
//! What it is not: no UI and no Tauri; and the concerns with rooms of their own are not
//! here: configuration (`ward_config`), users, sessions and permissions (`ward_access`),
//! sync with the hospital core and its credential (`ward_sync`), sound and OS notifications
//! (`ward_annunciate`), review and exports (`ward_export`). They are re-exported under their
//! old paths (`ward_core::config`, `::staff`, `::sync`, `::secrets`, `::export`, `::review`)
//! for callers that hold only this crate.
//!
//! Layout, read top-down: `station` (start: builds each part and registers its stop),
//! `lifecycle` (the ordered stop), `handle` (the station handle and its sub-handles),
//! `alarms` (the alarm driver), `ingest`, `live`, `writer`, `summary` (headless text view),
//! `error`, `clock`, `census` (who is in which bed: pure decisions), `burden` (the
//! unit's alarm statistics: the report, the 24 h figures in the metrics). This file only declares and re-exports; no module imports from it.

mod alarms;
pub mod burden;
pub mod census;
mod clock;
mod error;
mod handle;
pub mod hl7;
pub mod hl7_out;
mod ingest;
mod lifecycle;
pub mod live;
pub mod patients;
pub mod service;
mod station;
pub mod summary;
mod writer;

pub use alarms::{AlarmMetrics, AlarmSnapshot};
pub use clock::now_ms;
pub use error::CoreError;
pub use handle::{
    AdminHandle, AlarmsHandle, LiveHandle, PatientsHandle, ReviewHandle, StaffHandle,
    StationHandle, StationMetrics, UnitStatistics, WardSnapshot,
};
pub use live::{BedView, Connection, FrameCursor};
pub use station::Station;
pub use writer::{percentile, StoreMetrics};

pub use ward_access::{staff, Action, Denial, Session, UserChange, UserView};
pub use ward_alarm::{Alarm, AlarmCommand, AlarmError, LimitRule, LogEntry};
pub use ward_config::{self as config, Config};
pub use ward_export::{self as export, review};
pub use ward_model::{Category, ErrorCode, ErrorKind, Patient, Sex};
pub use ward_store::AlarmLogRow;
pub use ward_sync::{self as sync, secrets};
