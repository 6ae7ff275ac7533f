//! The census at run time: applies admissions, transfers, discharges and updates (from the
//! window, the ADT feed, or the console writing the database), keeps the census the screen
//! shows, and gives each bed the alarm limits of its patient's category.
//!
//! The database is the census's truth: every change is written (census row and audit event in
//! one transaction, on this module's own connection) before it is shown. The console
//! (`wardwatch patients`) writes the same tables while the station runs; `refresh` notices
//! through SQLite's `data_version` and reads the census again.
//!
//! Limits: a bed whose admission changed (new patient, new category, discharged) gets the
//! default limits of the category (its patient's, else the bed's configured one), through the
//! alarm engine's audited `SetRules` in the name of whoever made the change. `limits_for` in
//! the census row says which admission the limits were set for, so a change made while the
//! station was down is applied at start, once, and a restart changes no edited limit.

use crate::census::{self, Admission, Census, Op, Outcome, Source};
use crate::error::CoreError;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use ward_alarm::LimitRule;
use ward_config::Config;
use ward_model::{Category, Patient};
use ward_store::{AuditEvent, CensusRow, Record, Store};

/// The census from its stored rows over the configured beds; an unreadable row is logged and
/// read as an empty bed (it is still in the database for IT to see).
pub fn load(beds: &[String], rows: &[CensusRow]) -> Census {
    let mut c = Census::new(beds.iter().map(String::as_str));
    for r in rows {
        let Some(json) = &r.patient else {
            continue;
        };
        match serde_json::from_str::<Patient>(json) {
            Ok(p) => c.load(
                &r.bed,
                Some(Admission::new(p, Source::parse(&r.source), r.t_ms)),
            ),
            Err(e) => {
                tracing::error!(bed = %r.bed, error = %e, "census row unreadable; the bed shows no patient")
            }
        }
    }
    c
}

/// The records one census change writes: the changed beds' rows and the trail's events.
pub fn records(
    out: &Outcome,
    origin: &str,
    actor: &str,
    source: Source,
    now_ms: i64,
    extra: &serde_json::Value,
) -> Vec<Record> {
    let mut recs: Vec<Record> = out
        .changes
        .iter()
        .map(|c| Record::Census {
            bed: c.bed.clone(),
            patient: c
                .after
                .as_ref()
                .and_then(|a| serde_json::to_string(&a.patient).ok()),
            source: c
                .after
                .as_ref()
                .map(|a| a.source)
                .unwrap_or(source)
                .as_str()
                .into(),
            t_ms: now_ms,
            user: actor.into(),
        })
        .collect();
    for e in &out.events {
        let mut detail = e.detail.clone();
        if let (Some(d), Some(x)) = (detail.as_object_mut(), extra.as_object()) {
            d.extend(x.clone());
        }
        recs.push(Record::Audit(AuditEvent {
            origin: origin.into(),
            t_ms: now_ms,
            actor: actor.into(),
            kind: e.kind.into(),
            bed: Some(e.bed.clone()),
            detail: detail.to_string(),
        }));
    }
    recs
}

/// Applies `op` straight to a station database (the console; the station need not run).
pub fn apply_offline(cfg: &Config, op: &Op, actor: &str) -> Result<Outcome, CoreError> {
    let mut store = Store::open(&cfg.db_path())?;
    let beds: Vec<String> = cfg.beds.iter().map(|b| b.id.to_string()).collect();
    let mut census = load(&beds, &store.census()?);
    let now = crate::clock::now_ms();
    let out = census.apply(op, Source::Manual, now)?;
    let recs = records(
        &out,
        &cfg.station_id,
        actor,
        Source::Manual,
        now,
        &serde_json::json!({ "at": "console" }),
    );
    store.write_batch(&recs)?;
    Ok(out)
}

/// Sets a bed's limit rules in the alarm engine in someone's name (the engine logs the
/// change). A function rather than the alarm handle, so this module sits below `handle`.
pub type SetLimits = Box<dyn Fn(&str, Vec<LimitRule>, &str) -> Result<(), CoreError> + Send + Sync>;

/// The census as the station keeps it.
pub struct Patients {
    store: Mutex<Store>,
    census: Mutex<Census>,
    /// bed -> the admission key its limits were last set for.
    limits_for: Mutex<BTreeMap<String, String>>,
    bed_category: BTreeMap<String, Category>,
    beds: Vec<String>,
    version: Mutex<i64>,
    origin: String,
    set_limits: SetLimits,
}

impl Patients {
    pub(crate) fn open(cfg: &Config, set_limits: SetLimits) -> Result<Arc<Self>, CoreError> {
        let store = Store::open(&cfg.db_path())?;
        let beds: Vec<String> = cfg.beds.iter().map(|b| b.id.to_string()).collect();
        let rows = store.census()?;
        let census = load(&beds, &rows);
        let limits_for = rows
            .iter()
            .filter_map(|r| Some((r.bed.clone(), r.limits_for.clone()?)))
            .collect();
        let version = store.data_version()?;
        let p = Arc::new(Self {
            store: Mutex::new(store),
            census: Mutex::new(census),
            limits_for: Mutex::new(limits_for),
            bed_category: cfg
                .beds
                .iter()
                .map(|b| (b.id.to_string(), b.category))
                .collect(),
            beds,
            version: Mutex::new(version),
            origin: cfg.station_id.clone(),
            set_limits,
        });
        p.reconcile(None, "system");
        Ok(p)
    }

    fn lock<'a, T>(m: &'a Mutex<T>, what: &str) -> Result<std::sync::MutexGuard<'a, T>, CoreError> {
        m.lock()
            .map_err(|_| CoreError::Internal(format!("the {what} lock is poisoned")))
    }

    /// Every configured bed and who is in it.
    pub fn census(&self) -> Vec<(String, Option<Admission>)> {
        self.census
            .lock()
            .map(|c| c.beds().map(|(b, a)| (b.to_string(), a.cloned())).collect())
            .unwrap_or_default()
    }

    /// The census itself (ADT decisions read it).
    pub(crate) fn snapshot(&self) -> Census {
        self.census.lock().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn admission(&self, bed: &str) -> Option<Admission> {
        self.census.lock().ok()?.get(bed).cloned()
    }

    /// Applies one change: written (row and audit in one transaction) before it is shown,
    /// then the changed beds' limits follow their category.
    pub fn apply(
        &self,
        op: &Op,
        source: Source,
        actor: &str,
        extra: serde_json::Value,
    ) -> Result<Outcome, CoreError> {
        let out = {
            let mut census = Self::lock(&self.census, "census")?;
            let mut next = census.clone();
            let now = crate::clock::now_ms();
            let out = next.apply(op, source, now)?;
            if out.changes.is_empty() {
                return Ok(out);
            }
            let recs = records(&out, &self.origin, actor, source, now, &extra);
            Self::lock(&self.store, "census store")?.write_batch(&recs)?;
            *census = next;
            out
        };
        let beds: Vec<String> = out.changes.iter().map(|c| c.bed.clone()).collect();
        self.reconcile(Some(&beds), actor);
        Ok(out)
    }

    /// One audit event, written now on the census's connection (the ADT feed's answers).
    pub fn audit(&self, actor: &str, kind: &str, detail: serde_json::Value) {
        let ev = AuditEvent {
            origin: self.origin.clone(),
            t_ms: crate::clock::now_ms(),
            actor: actor.into(),
            kind: kind.into(),
            bed: None,
            detail: detail.to_string(),
        };
        match self.store.lock() {
            Ok(mut s) => {
                if let Err(e) = s.write_batch(&[Record::Audit(ev)]) {
                    tracing::error!(error = %e, kind, "cannot write an audit event");
                }
            }
            Err(_) => tracing::error!(kind, "the census store lock is poisoned"),
        }
    }

    /// Reads the census again when another connection (the console) changed the database.
    pub fn refresh(&self) {
        let Ok(store) = self.store.lock() else {
            return;
        };
        let Ok(v) = store.data_version() else {
            return;
        };
        let Ok(mut seen) = self.version.lock() else {
            return;
        };
        if *seen == v {
            return;
        }
        *seen = v;
        let rows = match store.census() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the census");
                return;
            }
        };
        drop(store);
        let fresh = load(&self.beds, &rows);
        if let Ok(mut c) = self.census.lock() {
            if *c == fresh {
                return;
            }
            *c = fresh;
        }
        // Who made the change is in its audit event; the limit change names the console.
        self.reconcile(None, "console");
    }

    /// Gives each bed (or the named ones) whose admission changed since its limits were set
    /// the defaults of its category.
    fn reconcile(&self, only: Option<&[String]>, actor: &str) {
        let census = self.snapshot();
        for (bed, adm) in census.beds() {
            if only.is_some_and(|o| !o.iter().any(|b| b == bed)) {
                continue;
            }
            let key = census::limits_key(adm);
            let done = self
                .limits_for
                .lock()
                .ok()
                .and_then(|l| l.get(bed).cloned());
            // A bed never admitted to keeps the limits it has (config or edited).
            if done.as_deref() == Some(key.as_str()) || (done.is_none() && adm.is_none()) {
                continue;
            }
            let category = census::limits_category(
                adm,
                self.bed_category.get(bed).copied().unwrap_or_default(),
            );
            let rules = ward_alarm::rules::defaults(category);
            match (self.set_limits)(bed, rules, actor) {
                Ok(_) => {
                    tracing::info!(bed, %category, key, "alarm limits set to the category defaults");
                    if let Ok(mut s) = self.store.lock() {
                        if let Err(e) = s.write_batch(&[Record::CensusLimits {
                            bed: bed.to_string(),
                            key: key.clone(),
                        }]) {
                            tracing::error!(bed, error = %e, "cannot record the limits' admission");
                        }
                    }
                    if let Ok(mut l) = self.limits_for.lock() {
                        l.insert(bed.to_string(), key);
                    }
                }
                Err(e) => tracing::error!(bed, error = %e, "cannot set the category's limits"),
            }
        }
    }
}

/// Reads the census rows of a database (the console's `patients list`).
pub fn list(db: &Path, beds: &[String]) -> Result<Census, CoreError> {
    let store = Store::open_read_only(db)?;
    Ok(load(beds, &store.census()?))
}
