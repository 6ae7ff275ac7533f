//! The census: who is in which bed. Pure decisions over the current census (no I/O, time
//! passed in), shared by the station (window, ADT feed) and the console
//! (`wardwatch patients`, which writes the database directly; the running station notices).
//!
//! The rule when a manual admission and the hospital's ADT feed meet (docs/hl7.md):
//! the ADT system is the source of truth for identity. A manual change is refused when it
//! would overwrite someone (admit to an occupied bed, transfer onto one); an ADT change always
//! applies, and a patient it displaces (a manual admission, or an ADT one the feed has
//! forgotten to discharge) leaves the bed with a `patient.replaced` event naming both.

use crate::error::CoreError;
use serde::Serialize;
use std::collections::BTreeMap;
use ward_model::{Category, ErrorCode, Patient};

/// Who made a census change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A charge nurse in the window or at the console.
    Manual,
    /// The hospital's ADT feed (HL7).
    Adt,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Manual => "manual",
            Source::Adt => "adt",
        }
    }

    pub fn parse(s: &str) -> Self {
        if s == "adt" {
            Source::Adt
        } else {
            Source::Manual
        }
    }
}

/// A patient in a bed, and how they came to be there.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Admission {
    pub patient: Patient,
    pub source: Source,
    /// The patient line every screen and strip shows.
    pub line: String,
    #[cfg_attr(feature = "ts", ts(type = "number"))]
    pub since_ms: i64,
}

impl Admission {
    pub fn new(patient: Patient, source: Source, since_ms: i64) -> Self {
        Self {
            line: patient.line(),
            patient,
            source,
            since_ms,
        }
    }

    /// The key of the alarm limits this admission asks for: a new patient, or a new
    /// category of the same patient, asks for the category's defaults again.
    pub fn limits_key(&self) -> String {
        format!("{}:{}", self.patient.mrn, self.patient.category)
    }
}

/// One census change asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Admit {
        bed: String,
        patient: Patient,
    },
    /// Move whoever is in `from` to `to`.
    Transfer {
        from: String,
        to: String,
    },
    Discharge {
        bed: String,
    },
    /// New demographics or category for a patient already admitted (matched by MRN).
    Update {
        patient: Patient,
    },
}

/// What a census change did to one bed.
#[derive(Debug, Clone, PartialEq)]
pub struct BedChange {
    pub bed: String,
    pub after: Option<Admission>,
}

/// An event for the audit trail (kind, bed, detail).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: &'static str,
    pub bed: String,
    pub detail: serde_json::Value,
}

/// The outcome of one operation: the beds it changed and what the trail says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub changes: Vec<BedChange>,
    pub events: Vec<Event>,
}

/// The unit's census: each configured bed and who is in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Census {
    beds: BTreeMap<String, Option<Admission>>,
}

fn bad(reason: String) -> CoreError {
    CoreError::invalid(ErrorCode::BadAdmission, reason)
}

fn who(a: &Admission) -> serde_json::Value {
    serde_json::json!({
        "mrn": a.patient.mrn,
        "authority": a.patient.authority,
        "patient": a.line,
        "source": a.source.as_str(),
    })
}

impl Census {
    /// An empty census over the configured beds.
    pub fn new<'a>(beds: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            beds: beds.into_iter().map(|b| (b.to_string(), None)).collect(),
        }
    }

    /// Sets a bed as stored (at start, or when the database changed under the station).
    /// Beds no longer in the config are ignored.
    pub fn load(&mut self, bed: &str, admission: Option<Admission>) {
        if let Some(slot) = self.beds.get_mut(bed) {
            *slot = admission;
        }
    }

    pub fn get(&self, bed: &str) -> Option<&Admission> {
        self.beds.get(bed).and_then(|a| a.as_ref())
    }

    pub fn beds(&self) -> impl Iterator<Item = (&str, Option<&Admission>)> {
        self.beds.iter().map(|(b, a)| (b.as_str(), a.as_ref()))
    }

    /// The bed a patient is in, by MRN (and authority when both name one).
    pub fn bed_of(&self, mrn: &str, authority: &str) -> Option<&str> {
        self.beds.iter().find_map(|(b, a)| {
            let p = &a.as_ref()?.patient;
            let same_authority =
                authority.is_empty() || p.authority.is_empty() || p.authority == authority;
            (p.mrn == mrn && same_authority).then_some(b.as_str())
        })
    }

    fn known(&self, bed: &str) -> Result<(), CoreError> {
        if self.beds.contains_key(bed) {
            Ok(())
        } else {
            Err(CoreError::invalid(
                ErrorCode::UnknownBed,
                format!("{bed:?} is not a bed of this station"),
            ))
        }
    }

    /// Applies `op` from `source` at `now_ms`: the census changes only when it succeeds.
    pub fn apply(&mut self, op: &Op, source: Source, now_ms: i64) -> Result<Outcome, CoreError> {
        let mut out = Outcome::default();
        match op {
            Op::Admit { bed, patient } => {
                self.known(bed)?;
                patient.validate().map_err(|e| bad(format!("{bed}: {e}")))?;
                // The same patient already here: an update (ADT repeats A01s).
                if let Some(here) = self.get(bed) {
                    if here.patient.mrn == patient.mrn {
                        return self.apply(
                            &Op::Update {
                                patient: patient.clone(),
                            },
                            source,
                            now_ms,
                        );
                    }
                }
                if let Some(other) = self.bed_of(&patient.mrn, &patient.authority) {
                    let other = other.to_string();
                    if source == Source::Manual {
                        return Err(bad(format!(
                            "MRN {} is already in bed {other}: transfer them instead",
                            patient.mrn
                        )));
                    }
                    // The feed admits someone we have elsewhere: they moved.
                    self.put(&other, None, &mut out);
                }
                if let Some(prev) = self.get(bed).cloned() {
                    if source == Source::Manual {
                        return Err(bad(format!(
                            "bed {bed} has {}: discharge or transfer first",
                            prev.line
                        )));
                    }
                    out.events.push(Event {
                        kind: "patient.replaced",
                        bed: bed.clone(),
                        detail: serde_json::json!({
                            "replaced": who(&prev),
                            "by": who(&Admission::new(patient.clone(), source, now_ms)),
                        }),
                    });
                }
                let a = Admission::new(patient.clone(), source, now_ms);
                out.events.push(Event {
                    kind: "patient.admitted",
                    bed: bed.clone(),
                    detail: who(&a),
                });
                self.put(bed, Some(a), &mut out);
            }
            Op::Transfer { from, to } => {
                self.known(from)?;
                self.known(to)?;
                if from == to {
                    return Err(bad(format!("transfer from {from} to itself")));
                }
                let moving = self
                    .get(from)
                    .cloned()
                    .ok_or_else(|| bad(format!("bed {from} has no patient to transfer")))?;
                if let Some(there) = self.get(to).cloned() {
                    if source == Source::Manual {
                        return Err(bad(format!(
                            "bed {to} has {}: discharge or transfer them first",
                            there.line
                        )));
                    }
                    out.events.push(Event {
                        kind: "patient.replaced",
                        bed: to.clone(),
                        detail: serde_json::json!({ "replaced": who(&there), "by": who(&moving) }),
                    });
                }
                let mut d = who(&moving);
                d["from"] = from.as_str().into();
                d["to"] = to.as_str().into();
                out.events.push(Event {
                    kind: "patient.transferred",
                    bed: to.clone(),
                    detail: d,
                });
                self.put(from, None, &mut out);
                let moved = Admission { source, ..moving };
                self.put(to, Some(moved), &mut out);
            }
            Op::Discharge { bed } => {
                self.known(bed)?;
                let gone = self
                    .get(bed)
                    .cloned()
                    .ok_or_else(|| bad(format!("bed {bed} has no patient to discharge")))?;
                out.events.push(Event {
                    kind: "patient.discharged",
                    bed: bed.clone(),
                    detail: who(&gone),
                });
                self.put(bed, None, &mut out);
            }
            Op::Update { patient } => {
                patient.validate().map_err(|e| bad(e.to_string()))?;
                let bed = self
                    .bed_of(&patient.mrn, &patient.authority)
                    .ok_or_else(|| bad(format!("MRN {} is not admitted here", patient.mrn)))?
                    .to_string();
                let Some(before) = self.get(&bed).cloned() else {
                    return Err(bad(format!("MRN {} is not admitted here", patient.mrn)));
                };
                if before.patient == *patient {
                    return Ok(out);
                }
                let a = Admission {
                    since_ms: before.since_ms,
                    ..Admission::new(patient.clone(), source, now_ms)
                };
                let mut d = who(&a);
                d["before"] = before.line.as_str().into();
                if before.patient.category != patient.category {
                    d["category"] = serde_json::json!({
                        "from": before.patient.category.as_str(),
                        "to": patient.category.as_str(),
                    });
                }
                out.events.push(Event {
                    kind: "patient.updated",
                    bed: bed.clone(),
                    detail: d,
                });
                self.put(&bed, Some(a), &mut out);
            }
        }
        Ok(out)
    }

    fn put(&mut self, bed: &str, a: Option<Admission>, out: &mut Outcome) {
        if let Some(slot) = self.beds.get_mut(bed) {
            *slot = a.clone();
        }
        out.changes.retain(|c| c.bed != bed);
        out.changes.push(BedChange {
            bed: bed.to_string(),
            after: a,
        });
    }
}

/// The category whose default limits a bed should have: its patient's, else the bed's own
/// (config).
pub fn limits_category(a: Option<&Admission>, bed_default: Category) -> Category {
    a.map(|a| a.patient.category).unwrap_or(bed_default)
}

/// The limits key a bed should have: its admission's, or "none" for an empty bed.
pub fn limits_key(a: Option<&Admission>) -> String {
    a.map(Admission::limits_key)
        .unwrap_or_else(|| "none".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ward_model::Sex;

    fn pt(mrn: &str, family: &str) -> Patient {
        Patient {
            mrn: mrn.into(),
            authority: "CITY".into(),
            family: family.into(),
            given: "Ann".into(),
            birth_date: "1950-01-02".into(),
            sex: Sex::F,
            category: Category::Adult,
            visit: None,
        }
    }

    fn census() -> Census {
        Census::new(["1", "2", "3"])
    }

    fn admit(bed: &str, p: Patient) -> Op {
        Op::Admit {
            bed: bed.into(),
            patient: p,
        }
    }

    fn kinds(o: &Outcome) -> Vec<&str> {
        o.events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn admit_transfer_update_discharge() {
        let mut c = census();
        let o = c
            .apply(&admit("1", pt("A1", "Doe")), Source::Manual, 10)
            .unwrap();
        assert_eq!(kinds(&o), ["patient.admitted"]);
        assert_eq!(
            c.get("1").unwrap().line,
            "DOE, Ann · MRN A1 · F · 1950-01-02 · adult"
        );
        let o = c
            .apply(
                &Op::Transfer {
                    from: "1".into(),
                    to: "3".into(),
                },
                Source::Manual,
                20,
            )
            .unwrap();
        assert_eq!(kinds(&o), ["patient.transferred"]);
        assert_eq!(o.changes.len(), 2);
        assert!(c.get("1").is_none());
        assert_eq!(
            c.get("3").unwrap().since_ms,
            10,
            "the admission keeps its start"
        );
        let mut p = pt("A1", "Doe");
        p.category = Category::Pediatric;
        let o = c
            .apply(&Op::Update { patient: p }, Source::Adt, 30)
            .unwrap();
        assert_eq!(o.events[0].detail["category"]["to"], "pediatric");
        assert_eq!(c.get("3").unwrap().limits_key(), "A1:pediatric");
        // The same update again changes nothing.
        let mut p = pt("A1", "Doe");
        p.category = Category::Pediatric;
        assert!(c
            .apply(&Op::Update { patient: p }, Source::Adt, 31)
            .unwrap()
            .events
            .is_empty());
        let o = c
            .apply(&Op::Discharge { bed: "3".into() }, Source::Manual, 40)
            .unwrap();
        assert_eq!(kinds(&o), ["patient.discharged"]);
        assert_eq!(limits_key(c.get("3")), "none");
    }

    #[test]
    fn manual_changes_never_overwrite_anyone() {
        let mut c = census();
        c.apply(&admit("1", pt("A1", "Doe")), Source::Manual, 10)
            .unwrap();
        c.apply(&admit("2", pt("B2", "Roe")), Source::Manual, 10)
            .unwrap();
        let before = c.clone();
        let e = |r: Result<Outcome, CoreError>| r.unwrap_err().to_string();
        assert!(e(c.apply(&admit("1", pt("C3", "Poe")), Source::Manual, 11))
            .contains("bed 1 has DOE, Ann"));
        assert!(e(c.apply(&admit("3", pt("A1", "Doe")), Source::Manual, 11))
            .contains("MRN A1 is already in bed 1"));
        let t = |from: &str, to: &str| Op::Transfer {
            from: from.into(),
            to: to.into(),
        };
        assert!(e(c.apply(&t("1", "2"), Source::Manual, 11)).contains("bed 2 has ROE"));
        assert!(e(c.apply(&t("3", "1"), Source::Manual, 11)).contains("no patient to transfer"));
        assert!(e(c.apply(&t("1", "1"), Source::Manual, 11)).contains("to itself"));
        assert!(e(c.apply(&admit("9", pt("C3", "Poe")), Source::Manual, 11))
            .contains("\"9\" is not a bed"));
        assert!(
            e(c.apply(&Op::Discharge { bed: "3".into() }, Source::Manual, 11))
                .contains("no patient to discharge")
        );
        let mut nameless = pt("C3", "");
        nameless.family.clear();
        assert!(e(c.apply(&admit("3", nameless), Source::Manual, 11))
            .contains("patient family is empty"));
        assert!(e(c.apply(
            &Op::Update {
                patient: pt("Z9", "X")
            },
            Source::Adt,
            11
        ))
        .contains("MRN Z9 is not admitted here"));
        assert_eq!(c, before, "nothing changed by any refusal");
    }

    #[test]
    fn the_adt_feed_is_the_source_of_truth() {
        let mut c = census();
        c.apply(&admit("1", pt("M1", "Manual")), Source::Manual, 10)
            .unwrap();
        // ADT admits someone else to bed 1: the manual admission is replaced, both in the trail.
        let o = c
            .apply(&admit("1", pt("H1", "Hosp")), Source::Adt, 20)
            .unwrap();
        assert_eq!(kinds(&o), ["patient.replaced", "patient.admitted"]);
        assert_eq!(o.events[0].detail["replaced"]["mrn"], "M1");
        assert_eq!(o.events[0].detail["replaced"]["source"], "manual");
        assert_eq!(c.get("1").unwrap().source, Source::Adt);
        // ADT admits a patient it has elsewhere: they move.
        let o = c
            .apply(&admit("2", pt("H1", "Hosp")), Source::Adt, 30)
            .unwrap();
        assert!(c.get("1").is_none());
        assert_eq!(c.get("2").unwrap().patient.mrn, "H1");
        assert_eq!(o.changes.len(), 2);
        // A repeated A01 for the same patient and bed is an update (none when identical).
        assert!(c
            .apply(&admit("2", pt("H1", "Hosp")), Source::Adt, 40)
            .unwrap()
            .events
            .is_empty());
        // ADT transfers onto an occupied bed: replaced.
        c.apply(&admit("3", pt("M3", "Manual")), Source::Manual, 50)
            .unwrap();
        let o = c
            .apply(
                &Op::Transfer {
                    from: "2".into(),
                    to: "3".into(),
                },
                Source::Adt,
                60,
            )
            .unwrap();
        assert_eq!(kinds(&o), ["patient.replaced", "patient.transferred"]);
        assert_eq!(c.bed_of("H1", ""), Some("3"));
        assert_eq!(
            c.bed_of("H1", "OTHER"),
            None,
            "another authority's H1 is someone else"
        );
    }

    #[test]
    fn the_limits_follow_the_patient_category_or_the_bed() {
        let mut c = census();
        assert_eq!(
            limits_category(c.get("1"), Category::Neonatal),
            Category::Neonatal
        );
        let mut p = pt("A1", "Doe");
        p.category = Category::Pediatric;
        c.apply(&admit("1", p), Source::Manual, 1).unwrap();
        assert_eq!(
            limits_category(c.get("1"), Category::Adult),
            Category::Pediatric
        );
        assert_eq!(limits_key(c.get("1")), "A1:pediatric");
    }
}
