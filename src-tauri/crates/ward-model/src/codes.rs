//! IEEE 11073-10101 codes the station knows by name (code = partition * 65536 + term).
//! Any other code is still accepted and stored; these are the ones with a display name, a
//! fixed unit and a plausible range.

pub const MDC_ECG_HEART_RATE: u32 = 147_842;
pub const MDC_PULS_OXIM_SAT_O2: u32 = 150_456;
pub const MDC_PULS_OXIM_PULS_RATE: u32 = 149_530;
pub const MDC_RESP_RATE: u32 = 151_562;
pub const MDC_PRESS_BLD_NONINV_SYS: u32 = 150_021;
pub const MDC_PRESS_BLD_NONINV_DIA: u32 = 150_022;
pub const MDC_PRESS_BLD_NONINV_MEAN: u32 = 150_023;
pub const MDC_TEMP: u32 = 150_344;
pub const MDC_TEMP_BODY: u32 = 150_364;
pub const MDC_ECG_ELEC_POTL_II: u32 = 131_330;
pub const MDC_PULS_OXIM_PLETH: u32 = 150_452;
/// Respiration impedance waveform (MDC_IMPED_TTHOR).
pub const MDC_IMPED_TTHOR: u32 = 151_552;

pub const UNIT_BPM: u32 = 264_864;
pub const UNIT_PERCENT: u32 = 262_688;
pub const UNIT_MMHG: u32 = 266_016;
pub const UNIT_DEGC: u32 = 268_192;
pub const UNIT_RESP_PER_MIN: u32 = 264_928;
/// Millivolts (MDC_DIM_MILLI_VOLT).
pub const UNIT_MV: u32 = 266_418;
/// Dimensionless (MDC_DIM_DIMLESS), used for pleth and impedance traces.
pub const UNIT_DIMLESS: u32 = 262_656;

/// The 11073 "value not available" marker some devices send instead of a number.
pub const VALUE_NOT_AVAILABLE: f64 = 8_388_607.0;

/// A known numeric: its short label, the unit it must carry, and the range a real sensor can
/// report (outside it the value is treated as invalid, not as an extreme patient).
#[derive(Debug, Clone, Copy)]
pub struct KnownVital {
    pub code: u32,
    pub label: &'static str,
    pub unit: u32,
    pub unit_label: &'static str,
    pub min: f64,
    pub max: f64,
}

#[rustfmt::skip]
pub const KNOWN_VITALS: &[KnownVital] = &[
    KnownVital { code: MDC_ECG_HEART_RATE, label: "HR", unit: UNIT_BPM, unit_label: "bpm", min: 0.0, max: 350.0 },
    KnownVital { code: MDC_PULS_OXIM_PULS_RATE, label: "PR", unit: UNIT_BPM, unit_label: "bpm", min: 0.0, max: 350.0 },
    KnownVital { code: MDC_PULS_OXIM_SAT_O2, label: "SpO2", unit: UNIT_PERCENT, unit_label: "%", min: 0.0, max: 100.0 },
    KnownVital { code: MDC_RESP_RATE, label: "RR", unit: UNIT_RESP_PER_MIN, unit_label: "/min", min: 0.0, max: 150.0 },
    KnownVital { code: MDC_PRESS_BLD_NONINV_SYS, label: "NIBP-S", unit: UNIT_MMHG, unit_label: "mmHg", min: 0.0, max: 350.0 },
    KnownVital { code: MDC_PRESS_BLD_NONINV_DIA, label: "NIBP-D", unit: UNIT_MMHG, unit_label: "mmHg", min: 0.0, max: 300.0 },
    KnownVital { code: MDC_PRESS_BLD_NONINV_MEAN, label: "NIBP-M", unit: UNIT_MMHG, unit_label: "mmHg", min: 0.0, max: 300.0 },
    KnownVital { code: MDC_TEMP, label: "Temp", unit: UNIT_DEGC, unit_label: "°C", min: 10.0, max: 50.0 },
    KnownVital { code: MDC_TEMP_BODY, label: "Temp", unit: UNIT_DEGC, unit_label: "°C", min: 10.0, max: 50.0 },
];

pub fn known_vital(code: u32) -> Option<&'static KnownVital> {
    KNOWN_VITALS.iter().find(|k| k.code == code)
}

/// Waveform channels the live view knows how to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TraceKind {
    Ecg,
    Pleth,
    Resp,
}

impl TraceKind {
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            MDC_ECG_ELEC_POTL_II => Some(TraceKind::Ecg),
            MDC_PULS_OXIM_PLETH => Some(TraceKind::Pleth),
            MDC_IMPED_TTHOR => Some(TraceKind::Resp),
            _ => None,
        }
    }
    pub fn code(self) -> u32 {
        match self {
            TraceKind::Ecg => MDC_ECG_ELEC_POTL_II,
            TraceKind::Pleth => MDC_PULS_OXIM_PLETH,
            TraceKind::Resp => MDC_IMPED_TTHOR,
        }
    }
    /// Index used in the binary live frame sent to the UI.
    pub fn index(self) -> u8 {
        self as u8
    }
}

/// How a known numeric is named to other systems: its 11073 reference id (HL7 v2 coding
/// system `MDC`, FHIR `urn:iso:std:iso:11073:10101`), its unit's reference id and UCUM code,
/// and the LOINC vital-signs code where FHIR's vital-signs profile has one
/// (../shared/reference/clinical.md §3).
#[derive(Debug, Clone, Copy)]
pub struct Reference {
    pub code: u32,
    pub name: &'static str,
    pub unit: u32,
    pub unit_name: &'static str,
    pub ucum: &'static str,
    pub loinc: Option<(&'static str, &'static str)>,
}

#[rustfmt::skip]
pub const REFERENCES: &[Reference] = &[
    Reference { code: MDC_ECG_HEART_RATE, name: "MDC_ECG_HEART_RATE", unit: UNIT_BPM, unit_name: "MDC_DIM_BEAT_PER_MIN", ucum: "/min", loinc: Some(("8867-4", "Heart rate")) },
    Reference { code: MDC_PULS_OXIM_PULS_RATE, name: "MDC_PULS_OXIM_PULS_RATE", unit: UNIT_BPM, unit_name: "MDC_DIM_BEAT_PER_MIN", ucum: "/min", loinc: None },
    Reference { code: MDC_PULS_OXIM_SAT_O2, name: "MDC_PULS_OXIM_SAT_O2", unit: UNIT_PERCENT, unit_name: "MDC_DIM_PERCENT", ucum: "%", loinc: Some(("2708-6", "Oxygen saturation in Arterial blood")) },
    Reference { code: MDC_RESP_RATE, name: "MDC_RESP_RATE", unit: UNIT_RESP_PER_MIN, unit_name: "MDC_DIM_RESP_PER_MIN", ucum: "/min", loinc: Some(("9279-1", "Respiratory rate")) },
    Reference { code: MDC_PRESS_BLD_NONINV_SYS, name: "MDC_PRESS_BLD_NONINV_SYS", unit: UNIT_MMHG, unit_name: "MDC_DIM_MMHG", ucum: "mm[Hg]", loinc: Some(("8480-6", "Systolic blood pressure")) },
    Reference { code: MDC_PRESS_BLD_NONINV_DIA, name: "MDC_PRESS_BLD_NONINV_DIA", unit: UNIT_MMHG, unit_name: "MDC_DIM_MMHG", ucum: "mm[Hg]", loinc: Some(("8462-4", "Diastolic blood pressure")) },
    Reference { code: MDC_PRESS_BLD_NONINV_MEAN, name: "MDC_PRESS_BLD_NONINV_MEAN", unit: UNIT_MMHG, unit_name: "MDC_DIM_MMHG", ucum: "mm[Hg]", loinc: None },
    Reference { code: MDC_TEMP, name: "MDC_TEMP", unit: UNIT_DEGC, unit_name: "MDC_DIM_DEGC", ucum: "Cel", loinc: Some(("8310-5", "Body temperature")) },
    Reference { code: MDC_TEMP_BODY, name: "MDC_TEMP_BODY", unit: UNIT_DEGC, unit_name: "MDC_DIM_DEGC", ucum: "Cel", loinc: Some(("8310-5", "Body temperature")) },
    Reference { code: MDC_ECG_ELEC_POTL_II, name: "MDC_ECG_ELEC_POTL_II", unit: UNIT_MV, unit_name: "MDC_DIM_MILLI_VOLT", ucum: "mV", loinc: None },
    Reference { code: MDC_PULS_OXIM_PLETH, name: "MDC_PULS_OXIM_PLETH", unit: UNIT_DIMLESS, unit_name: "MDC_DIM_DIMLESS", ucum: "1", loinc: None },
    Reference { code: MDC_IMPED_TTHOR, name: "MDC_IMPED_TTHOR", unit: UNIT_DIMLESS, unit_name: "MDC_DIM_DIMLESS", ucum: "1", loinc: None },
];

pub fn reference(code: u32) -> Option<&'static Reference> {
    REFERENCES.iter().find(|r| r.code == code)
}

/// The reference id and UCUM code of a unit the station knows.
pub fn unit_names(unit: u32) -> Option<(&'static str, &'static str)> {
    REFERENCES
        .iter()
        .find(|r| r.unit == unit)
        .map(|r| (r.unit_name, r.ucum))
}
