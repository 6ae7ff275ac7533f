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
