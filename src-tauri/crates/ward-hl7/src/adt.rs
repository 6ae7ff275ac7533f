//! Reading the hospital's ADT feed: which event, which patient, which location.

use crate::er7::Message;
use crate::Hl7Error;
use ward_model::{Category, Patient, Sex};

/// What an ADT event asks of the census.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdtAction {
    /// A01 admit.
    Admit,
    /// A02 transfer: to PV1-3 from PV1-6.
    Transfer,
    /// A03 discharge.
    Discharge,
    /// A08 update patient information.
    Update,
    /// A11 cancel admit: the patient leaves the bed.
    CancelAdmit,
    /// A12 cancel transfer: back to PV1-3 (the location before the transfer).
    CancelTransfer,
    /// A13 cancel discharge: the patient is in PV1-3 again.
    CancelDischarge,
}

impl AdtAction {
    pub fn from_trigger(t: &str) -> Option<Self> {
        Some(match t {
            "A01" => AdtAction::Admit,
            "A02" => AdtAction::Transfer,
            "A03" => AdtAction::Discharge,
            "A08" => AdtAction::Update,
            "A11" => AdtAction::CancelAdmit,
            "A12" => AdtAction::CancelTransfer,
            "A13" => AdtAction::CancelDischarge,
            _ => return None,
        })
    }
}

/// PV1-3 or PV1-6: point of care, room, bed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub point_of_care: String,
    pub room: String,
    pub bed: String,
}

impl Location {
    fn read(m: &Message, field: usize) -> Option<Self> {
        let l = Location {
            point_of_care: m.get("PV1", field, 1),
            room: m.get("PV1", field, 2),
            bed: m.get("PV1", field, 3),
        };
        (l != Location::default()).then_some(l)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}^{}^{}", self.point_of_care, self.room, self.bed)
    }
}

/// One ADT message, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Adt {
    pub trigger: String,
    pub action: AdtAction,
    pub patient: Patient,
    pub location: Option<Location>,
    pub prior: Option<Location>,
}

/// The patient category from age at `today` (YYYY-MM-DD): neonatal under 29 days,
/// pediatric under 18 years, else adult; adult when the birth date is unknown.
pub fn category_from_age(birth_date: &str, today: &str) -> Category {
    let parse = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    let (Some(b), Some(t)) = (parse(birth_date), parse(today)) else {
        return Category::Adult;
    };
    if (t - b).num_days() < 29 {
        Category::Neonatal
    } else if t.years_since(b).unwrap_or(0) < 18 {
        Category::Pediatric
    } else {
        Category::Adult
    }
}

/// Reads an ADT message; `today` (YYYY-MM-DD) decides the category from the birth date.
pub fn read(m: &Message, today: &str) -> Result<Adt, Hl7Error> {
    let (code, trigger) = m.kind();
    if code != "ADT" {
        return Err(Hl7Error::Unsupported(format!(
            "message type {code:?}; only ADT is taken"
        )));
    }
    let action = AdtAction::from_trigger(&trigger).ok_or_else(|| {
        Hl7Error::Unsupported(format!(
            "ADT event {trigger:?}; taken are A01, A02, A03, A08, A11, A12, A13"
        ))
    })?;
    // The control id is what the sender matches our answer with, and what duplicates are
    // found by: a message without one cannot be answered meaningfully.
    if m.control_id().is_empty() {
        return Err(Hl7Error::Missing("MSH-10 (message control id)".into()));
    }
    if m.segment("PID").is_none() {
        return Err(Hl7Error::Missing("PID".into()));
    }
    // PID-3 repeats; the MR (medical record number) identifier if one is marked, else the first.
    let raw = m.raw("PID", 3);
    let ids: Vec<Vec<String>> = raw
        .split(m.sep.repetition)
        .map(|rep| rep.split(m.sep.component).map(|c| m.unescape(c)).collect())
        .collect();
    let id = ids
        .iter()
        .find(|c| c.get(4).map(String::as_str) == Some("MR"))
        .or_else(|| ids.first())
        .cloned()
        .unwrap_or_default();
    let mrn = id.first().cloned().unwrap_or_default();
    if mrn.is_empty() {
        return Err(Hl7Error::Missing("PID-3 (patient identifier)".into()));
    }
    let dob = m.get("PID", 7, 1);
    let birth_date = if dob.is_empty() {
        String::new()
    } else if dob
        .as_bytes()
        .get(..8)
        .is_some_and(|b| b.iter().all(u8::is_ascii_digit))
    {
        // Eight ASCII digits: byte slicing below is on character boundaries (the fuzzer
        // found a multi-byte character at byte 8).
        format!("{}-{}-{}", &dob[..4], &dob[4..6], &dob[6..8])
    } else {
        return Err(Hl7Error::Invalid(format!(
            "PID-7 {dob:?} is not a date YYYYMMDD"
        )));
    };
    let sex_field = m.get("PID", 8, 1);
    let sex = Sex::parse(&sex_field).ok_or_else(|| {
        Hl7Error::Invalid(format!("PID-8 {sex_field:?} is not F, M, O, U, A or N"))
    })?;
    let visit = Some(m.get("PV1", 19, 1)).filter(|v| !v.is_empty());
    let category = category_from_age(&birth_date, today);
    let patient = Patient {
        mrn,
        authority: id.get(3).cloned().unwrap_or_default(),
        family: m.get("PID", 5, 1),
        given: m.get("PID", 5, 2),
        birth_date,
        sex,
        category,
        visit,
    };
    patient
        .validate()
        .map_err(|e| Hl7Error::Invalid(e.to_string()))?;
    Ok(Adt {
        trigger,
        action,
        patient,
        location: Location::read(m, 3),
        prior: Location::read(m, 6),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(trigger: &str, pid: &str, pv1: &str) -> Message {
        Message::parse(&format!(
            "MSH|^~\\&|EPIC|CITY|WW|4W|20261204101500||ADT^{trigger}|C1|P|2.5\rEVN|{trigger}\r{pid}\r{pv1}"
        ))
        .unwrap()
    }

    const PID: &str = "PID|1||999^^^SSA^SS~123456^^^CITYHOSP^MR||DOE^JANE||19840229|F";

    #[test]
    fn an_admission_reads_patient_and_location() {
        let a = read(
            &msg("A01", PID, "PV1|1|I|4W^401^A||||||||||||||||V-77"),
            "2026-12-04",
        )
        .unwrap();
        assert_eq!(a.action, AdtAction::Admit);
        assert_eq!(a.patient.mrn, "123456", "the MR identifier, not the first");
        assert_eq!(a.patient.authority, "CITYHOSP");
        assert_eq!(a.patient.birth_date, "1984-02-29");
        assert_eq!(a.patient.category, Category::Adult);
        assert_eq!(a.patient.visit.as_deref(), Some("V-77"));
        assert_eq!(a.location.unwrap().to_string(), "4W^401^A");
        assert_eq!(a.prior, None);
    }

    #[test]
    fn category_follows_age() {
        assert_eq!(
            category_from_age("2026-11-20", "2026-12-04"),
            Category::Neonatal
        );
        assert_eq!(
            category_from_age("2026-10-01", "2026-12-04"),
            Category::Pediatric
        );
        assert_eq!(
            category_from_age("2008-12-05", "2026-12-04"),
            Category::Pediatric
        );
        assert_eq!(
            category_from_age("2008-12-04", "2026-12-04"),
            Category::Adult
        );
        assert_eq!(category_from_age("", "2026-12-04"), Category::Adult);
    }

    #[test]
    fn what_cannot_be_read_is_named() {
        for (m, want) in [
            (msg("A99", PID, "PV1|1"), "ADT event \"A99\""),
            (msg("A01", "PID|1||", "PV1|1"), "PID-3"),
            (msg("A01", "PID|1||1||DOE||1984-02-29", "PV1|1"), "PID-7"),
            (
                msg("A01", "PID|1||1||DOE||1234567\u{fffd}", "PV1|1"),
                "PID-7",
            ),
            (msg("A01", "PID|1||1||DOE||19840229|Q", "PV1|1"), "PID-8"),
            (
                msg("A01", "PID|1||1||||19840229|F", "PV1|1"),
                "patient family is empty",
            ),
            (msg("A01", "EVN|x", "PV1|1"), "PID"),
        ] {
            let e = read(&m, "2026-12-04").unwrap_err().to_string();
            assert!(e.contains(want), "{e} should contain {want}");
        }
        let no_id = Message::parse("MSH|^~\\&|A|B|C|D|1||ADT^A01||P|2.5\rPID|1||1||DOE").unwrap();
        assert!(read(&no_id, "2026-12-04")
            .unwrap_err()
            .to_string()
            .contains("MSH-10"));
        let oru = Message::parse("MSH|^~\\&|A|B|C|D|1||ORU^R01|1|P|2.6").unwrap();
        assert!(read(&oru, "2026-12-04")
            .unwrap_err()
            .to_string()
            .contains("ORU"));
    }
}
