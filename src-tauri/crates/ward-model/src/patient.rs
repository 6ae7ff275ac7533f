//! Patients: who is in a bed. The identity the hospital gave them (MRN and its assigning
//! authority), the demographics every screen, strip and outbound message carries, and the
//! patient category that chooses the bed's default alarm limits.
//!
//! Plain data with its validation; admitting, transferring and discharging live in ward-core,
//! HL7 in ward-hl7.

use crate::ModelError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Patient category: chooses a bed's default alarm limits (ward-alarm `rules::defaults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum Category {
    #[default]
    Adult,
    Pediatric,
    Neonatal,
}

impl Category {
    pub const ALL: [Category; 3] = [Category::Adult, Category::Pediatric, Category::Neonatal];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Adult => "adult",
            Category::Pediatric => "pediatric",
            Category::Neonatal => "neonatal",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Administrative sex as HL7 table 0001 has it (F, M, O, U; A and N read as O and U).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Sex {
    F,
    M,
    O,
    #[default]
    U,
}

impl Sex {
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::F => "F",
            Sex::M => "M",
            Sex::O => "O",
            Sex::U => "U",
        }
    }

    /// HL7 table 0001; an empty field is "unknown".
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "F" | "f" => Some(Sex::F),
            "M" | "m" => Some(Sex::M),
            "O" | "o" | "A" | "a" => Some(Sex::O),
            "U" | "u" | "N" | "n" | "" => Some(Sex::U),
            _ => None,
        }
    }
}

/// A patient as admitted to a bed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct Patient {
    /// The hospital's identifier (medical record number), PID-3.1.
    pub mrn: String,
    /// Who issued the MRN (PID-3.4), e.g. "CITYHOSP".
    pub authority: String,
    pub family: String,
    pub given: String,
    /// `YYYY-MM-DD`, or empty when unknown.
    pub birth_date: String,
    pub sex: Sex,
    pub category: Category,
    /// Visit (encounter) number, PV1-19, when the hospital gives one.
    #[serde(default)]
    pub visit: Option<String>,
}

/// The longest any patient text may be: enough for real names, short enough that a hostile
/// feed cannot fill the screen or the database.
pub const MAX_TEXT: usize = 80;

impl Patient {
    /// Checks every field, naming the first that is wrong.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field: &'static str, reason: String| ModelError::Patient { field, reason };
        let text = |field: &'static str, v: &str, required: bool| {
            if required && v.trim().is_empty() {
                return Err(bad(field, "is empty".into()));
            }
            if v.chars().count() > MAX_TEXT {
                return Err(bad(field, format!("is longer than {MAX_TEXT} characters")));
            }
            if v.chars().any(char::is_control) {
                return Err(bad(field, "contains control characters".into()));
            }
            Ok(())
        };
        text("mrn", &self.mrn, true)?;
        text("authority", &self.authority, false)?;
        text("family", &self.family, true)?;
        text("given", &self.given, false)?;
        if let Some(v) = &self.visit {
            text("visit", v, false)?;
        }
        if !self.birth_date.is_empty() && !valid_date(&self.birth_date) {
            return Err(bad(
                "birth_date",
                format!("{:?} is not a date YYYY-MM-DD", self.birth_date),
            ));
        }
        Ok(())
    }

    /// "DOE, Jane · MRN 123456 · F · 1984-02-29 · adult": the patient line of tiles, strips
    /// and reports.
    pub fn line(&self) -> String {
        let name = if self.given.is_empty() {
            self.family.to_uppercase()
        } else {
            format!("{}, {}", self.family.to_uppercase(), self.given)
        };
        let mut s = format!("{name} · MRN {}", self.mrn);
        if self.sex != Sex::U {
            s += &format!(" · {}", self.sex.as_str());
        }
        if !self.birth_date.is_empty() {
            s += &format!(" · {}", self.birth_date);
        }
        s + &format!(" · {}", self.category)
    }
}

/// `YYYY-MM-DD` with a real month and day (leap years included).
pub fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|p| p.parse::<u32>().ok());
    let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) else {
        return false;
    };
    if !s
        .bytes()
        .enumerate()
        .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
    {
        return false;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1900..=2200).contains(&y) && (1..=days).contains(&d)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn jane() -> Patient {
        Patient {
            mrn: "123456".into(),
            authority: "CITYHOSP".into(),
            family: "Doe".into(),
            given: "Jane".into(),
            birth_date: "1984-02-29".into(),
            sex: Sex::F,
            category: Category::Adult,
            visit: Some("V-77".into()),
        }
    }

    #[test]
    fn a_valid_patient_passes_and_has_its_line() {
        let p = jane();
        p.validate().unwrap();
        assert_eq!(p.line(), "DOE, Jane · MRN 123456 · F · 1984-02-29 · adult");
    }

    #[test]
    fn each_bad_field_is_named() {
        type Edit = fn(&mut Patient);
        let cases: Vec<(Edit, &str)> = vec![
            (|p| p.mrn = " ".into(), "mrn is empty"),
            (|p| p.family = String::new(), "family is empty"),
            (|p| p.given = "x".repeat(81), "given is longer than 80"),
            (
                |p| p.authority = "A\rB".into(),
                "authority contains control",
            ),
            (
                |p| p.birth_date = "1983-02-29".into(),
                "birth_date \"1983-02-29\"",
            ),
            (
                |p| p.birth_date = "19840229".into(),
                "birth_date \"19840229\"",
            ),
            (|p| p.visit = Some("\u{7}".into()), "visit contains control"),
        ];
        for (edit, want) in cases {
            let mut p = jane();
            edit(&mut p);
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} should contain {want}");
        }
    }

    #[test]
    fn categories_and_sexes_read_their_names() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
        }
        assert_eq!(Category::parse("Adult"), None);
        assert_eq!(Sex::parse("A"), Some(Sex::O));
        assert_eq!(Sex::parse(""), Some(Sex::U));
        assert_eq!(Sex::parse("X"), None);
        assert!(valid_date("2000-02-29") && !valid_date("1900-02-29") && !valid_date("2024-13-01"));
        assert!(!valid_date("2024-1a-01") && !valid_date("+024-01-01"));
    }
}
