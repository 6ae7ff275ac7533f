//! The messages the station sends (docs/hl7.md has each field):
//! - IHE PCD-01 "Communicate PCD Data": ORU^R01, HL7 v2.6, profile IHE_PCD_001 (DEC);
//! - IHE PCD-04 "Report Alert": ORU^R40, profile IHE_PCD_ACM_001 (ACM), and its heartbeat.
//!
//! Builders only: the census, the numerics and the alarm log are read by ward-core and
//! passed in as plain values, with HL7 timestamps already formatted.

use crate::ack::Sender;
use crate::er7::{comps, esc, write};
use ward_model::codes::{reference, unit_names};
use ward_model::Patient;

pub const DEC_PROFILE: &str = "1.3.6.1.4.1.19376.1.6.1.1.1";
pub const ACM_PROFILE: &str = "1.3.6.1.4.1.19376.1.6.4.4.4";
/// MDC_EVT_ALARM and MDC_EVT_ACTIVE (the heartbeat), ../shared/reference/clinical.md §3.
pub const MDC_EVT_ALARM: u32 = 196_616;
pub const MDC_EVT_ACTIVE: u32 = 196_614;
/// The alert attributes of an ACM report (11073-10101 attribute ids).
const ATTR_EVENT_PHASE: (&str, &str) = ("68481", "MDC_ATTR_EVENT_PHASE");
const ATTR_ALARM_STATE: (&str, &str) = ("68482", "MDC_ATTR_ALARM_STATE");
const ATTR_INACTIVATION: (&str, &str) = ("68483", "MDC_ATTR_ALARM_INACTIVATION_STATE");
const ATTR_PRIORITY: (&str, &str) = ("68484", "MDC_ATTR_ALARM_PRIORITY");
const ATTR_ALERT_TYPE: (&str, &str) = ("68485", "MDC_ATTR_ALERT_TYPE");

/// Who sends, to whom, when, under which control id.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    pub me: &'a Sender,
    pub receiver: &'a str,
    pub now: &'a str,
    pub control_id: &'a str,
}

/// The bed and who is in it.
#[derive(Debug, Clone)]
pub struct Place<'a> {
    pub patient: Option<&'a Patient>,
    pub point_of_care: &'a str,
    pub bed: &'a str,
}

/// One numeric for an OBX row.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub code: u32,
    pub value: f64,
    pub unit: u32,
    /// OBX-14, HL7 timestamp.
    pub time: String,
    /// OBX-7 reference range as the alarm limits (low, high), when set.
    pub limits: Option<(Option<f64>, Option<f64>)>,
}

fn msh(h: &Header, kind: [&str; 3], profile: [&str; 4]) -> (&'static str, Vec<String>) {
    (
        "MSH",
        vec![
            esc(&h.me.application),
            esc(&h.me.facility),
            esc(h.receiver),
            String::new(),
            esc(h.now),
            String::new(),
            comps(&kind),
            esc(h.control_id),
            "P".into(),
            "2.6".into(),
            String::new(),
            String::new(),
            "AL".into(),
            "NE".into(),
            String::new(),
            "UNICODE UTF-8".into(),
            String::new(),
            String::new(),
            comps(&profile),
        ],
    )
}

fn pid(p: Option<&Patient>) -> (&'static str, Vec<String>) {
    let Some(p) = p else {
        // No patient admitted: PID is still present (the profile wants it), with its set id
        // only.
        return ("PID", vec!["1".into()]);
    };
    (
        "PID",
        vec![
            "1".into(),
            String::new(),
            comps(&[&p.mrn, "", "", &p.authority, "MR"]),
            String::new(),
            comps(&[&p.family, &p.given, "", "", "", "", "L"]),
            String::new(),
            esc(&p.birth_date.replace('-', "")),
            esc(p.sex.as_str()),
        ],
    )
}

fn pv1(pl: &Place) -> (&'static str, Vec<String>) {
    let visit = pl
        .patient
        .and_then(|p| p.visit.as_deref())
        .map(esc)
        .unwrap_or_default();
    let mut f = vec![
        String::new(),
        "I".into(),
        comps(&[pl.point_of_care, "", pl.bed]),
    ];
    f.resize(18, String::new());
    f.push(visit);
    ("PV1", f)
}

fn num(v: f64) -> String {
    // Whole numbers without ".0"; others as Rust prints them (shortest exact form).
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn code_of(code: u32) -> String {
    let name = reference(code).map(|r| r.name).unwrap_or("");
    comps(&[&code.to_string(), name, "MDC"])
}

fn unit_of(unit: u32) -> String {
    let name = unit_names(unit).map(|(n, _)| n).unwrap_or("");
    comps(&[&unit.to_string(), name, "MDC"])
}

fn range(l: Option<(Option<f64>, Option<f64>)>) -> String {
    match l {
        None => String::new(),
        Some((lo, hi)) => format!(
            "{}-{}",
            lo.map(num).unwrap_or_default(),
            hi.map(num).unwrap_or_default()
        ),
    }
}

/// PCD-01: one ORU^R01 with the monitor (MDS) row and one OBX per metric.
pub fn oru_r01(h: &Header, pl: &Place, device: &str, obs_time: &str, metrics: &[Metric]) -> String {
    let equipment = comps(&[device, "WARDWATCH"]);
    let mut segs = vec![
        msh(
            h,
            ["ORU", "R01", "ORU_R01"],
            ["IHE_PCD_001", "IHE PCD", DEC_PROFILE, "ISO"],
        ),
        pid(pl.patient),
        pv1(pl),
        (
            "OBR",
            vec![
                "1".into(),
                comps(&[h.control_id, &h.me.application]),
                comps(&[h.control_id, &h.me.application]),
                comps(&["182777000", "monitoring of patient", "SCT"]),
                String::new(),
                String::new(),
                esc(obs_time),
            ],
        ),
    ];
    // The containment tree: MDS 1, VMD 0, channel 0, metric n (1.0.0.n); the MDS row first.
    let mut obx = |n: usize, fields: Vec<String>| {
        let mut f = vec![n.to_string()];
        f.extend(fields);
        segs.push(("OBX", f));
    };
    obx(
        1,
        vec![
            String::new(),
            comps(&["69965", "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS", "MDC"]),
            "1.0.0.0".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            "X".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            equipment.clone(),
        ],
    );
    for (i, m) in metrics.iter().enumerate() {
        obx(
            i + 2,
            vec![
                "NM".into(),
                code_of(m.code),
                format!("1.0.0.{}", i + 1),
                num(m.value),
                unit_of(m.unit),
                range(m.limits),
                String::new(),
                String::new(),
                String::new(),
                "R".into(),
                String::new(),
                String::new(),
                esc(&m.time),
                String::new(),
                String::new(),
                "AMEAS".into(),
                equipment.clone(),
            ],
        );
    }
    write(&segs)
}

/// An alarm state change, as PCD-04 reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The alarm's id at this station: OBR-2 keeps it across the alert's reports.
    pub alarm_id: u64,
    /// "start", "continue" or "end".
    pub phase: &'static str,
    /// "active", "latched", "inactive".
    pub state: &'static str,
    /// "enabled", "audio-paused", "audio-off", "alarm-paused", "alarm-off",
    /// "alert-acknowledged".
    pub inactivation: &'static str,
    /// "PH", "PM", "PL" (or "PN" for none).
    pub priority: &'static str,
    /// "SP" physiological, "ST" technical, "SA" advisory.
    pub kind: &'static str,
    /// What the nurse reads ("SpO2 low").
    pub label: String,
    /// The measured numeric, when the alarm is about one.
    pub metric: Option<Metric>,
    /// Who acted (acknowledgement, pause), when someone did.
    pub user: Option<String>,
    /// OBR-7: when this state began (HL7 timestamp).
    pub time: String,
}

fn attr(
    n: usize,
    sub: usize,
    (code, name): (&str, &str),
    value: &str,
) -> (&'static str, Vec<String>) {
    (
        "OBX",
        vec![
            n.to_string(),
            "ST".into(),
            comps(&[code, name, "MDC"]),
            format!("1.0.0.0.{sub}"),
            esc(value),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            "F".into(),
        ],
    )
}

/// PCD-04: one ORU^R40 for an alarm state change.
pub fn oru_r40(h: &Header, pl: &Place, device: &str, a: &Alert) -> String {
    let equipment = comps(&[device, "WARDWATCH"]);
    let flags = format!("{}~{}", esc(a.priority), esc(a.kind));
    let mut segs = vec![
        msh(
            h,
            ["ORU", "R40", "ORU_R40"],
            ["IHE_PCD_ACM_001", "IHE PCD", ACM_PROFILE, "ISO"],
        ),
        pid(pl.patient),
        pv1(pl),
        (
            "OBR",
            vec![
                "1".into(),
                comps(&[&a.alarm_id.to_string(), &h.me.application]),
                comps(&[h.control_id, &h.me.application]),
                comps(&[&MDC_EVT_ALARM.to_string(), "MDC_EVT_ALARM", "MDC"]),
                String::new(),
                String::new(),
                esc(&a.time),
            ],
        ),
    ];
    // The alert itself: its text, priority and kind in OBX-8, who acted in OBX-16.
    segs.push((
        "OBX",
        vec![
            "1".into(),
            "ST".into(),
            comps(&[&MDC_EVT_ALARM.to_string(), "MDC_EVT_ALARM", "MDC"]),
            "1.0.0.0.1".into(),
            esc(&a.label),
            String::new(),
            String::new(),
            flags,
            String::new(),
            String::new(),
            "F".into(),
            String::new(),
            String::new(),
            esc(&a.time),
            String::new(),
            esc(a.user.as_deref().unwrap_or("")),
            String::new(),
            equipment,
        ],
    ));
    let mut n = 2;
    if let Some(m) = &a.metric {
        segs.push((
            "OBX",
            vec![
                n.to_string(),
                "NM".into(),
                code_of(m.code),
                "1.0.0.0.2".into(),
                num(m.value),
                unit_of(m.unit),
                range(m.limits),
                String::new(),
                String::new(),
                String::new(),
                "F".into(),
                String::new(),
                String::new(),
                esc(&m.time),
            ],
        ));
        n += 1;
    }
    for (attr_id, value) in [
        (ATTR_EVENT_PHASE, a.phase),
        (ATTR_ALARM_STATE, a.state),
        (ATTR_INACTIVATION, a.inactivation),
        (ATTR_PRIORITY, a.priority),
        (ATTR_ALERT_TYPE, a.kind),
    ] {
        segs.push(attr(n, n, attr_id, value));
        n += 1;
    }
    write(&segs)
}

/// The heartbeat the alarm manager gets while the station is up (MDC_EVT_ACTIVE, PN).
pub fn heartbeat(h: &Header, point_of_care: &str) -> String {
    let segs = vec![
        msh(
            h,
            ["ORU", "R40", "ORU_R40"],
            ["IHE_PCD_ACM_001", "IHE PCD", ACM_PROFILE, "ISO"],
        ),
        pid(None),
        (
            "PV1",
            vec![String::new(), "I".into(), comps(&[point_of_care])],
        ),
        (
            "OBR",
            vec![
                "1".into(),
                comps(&[h.control_id, &h.me.application]),
                comps(&[h.control_id, &h.me.application]),
                comps(&[&MDC_EVT_ACTIVE.to_string(), "MDC_EVT_ACTIVE", "MDC"]),
                String::new(),
                String::new(),
                esc(h.now),
            ],
        ),
        (
            "OBX",
            vec![
                "1".into(),
                "ST".into(),
                comps(&[&MDC_EVT_ACTIVE.to_string(), "MDC_EVT_ACTIVE", "MDC"]),
                "1.0.0.0.1".into(),
                "station alive".into(),
                String::new(),
                String::new(),
                "PN".into(),
                String::new(),
                String::new(),
                "F".into(),
            ],
        ),
    ];
    write(&segs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::er7::Message;
    use ward_model::codes::*;
    use ward_model::{Category, Sex};

    fn jane() -> Patient {
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

    fn me() -> Sender {
        Sender {
            application: "WARDWATCH".into(),
            facility: "4W".into(),
        }
    }

    fn header_place<'a>(
        me: &'a Sender,
        p: &'a Patient,
        receiver: &'a str,
        control_id: &'a str,
    ) -> (Header<'a>, Place<'a>) {
        let h = Header {
            me,
            receiver,
            now: "20261204101500+0000",
            control_id,
        };
        let pl = Place {
            patient: Some(p),
            point_of_care: "4W",
            bed: "bed-01",
        };
        (h, pl)
    }

    #[test]
    fn pcd01_carries_patient_bed_codes_units_and_device() {
        let (me, p) = (me(), jane());
        let (h, pl) = header_place(&me, &p, "EHR", "WW-1");
        let metrics = [
            Metric {
                code: MDC_ECG_HEART_RATE,
                value: 72.0,
                unit: UNIT_BPM,
                time: "20261204101459+0000".into(),
                limits: Some((Some(50.0), Some(120.0))),
            },
            Metric {
                code: MDC_TEMP_BODY,
                value: 36.6,
                unit: UNIT_DEGC,
                time: "20261204101459+0000".into(),
                limits: None,
            },
        ];
        let text = oru_r01(&h, &pl, "mon-7", "20261204101459+0000", &metrics);
        let m = Message::parse(&text).unwrap();
        assert_eq!(m.kind(), ("ORU".into(), "R01".into()));
        assert_eq!(m.get("MSH", 12, 1), "2.6");
        assert_eq!(m.get("MSH", 21, 3), DEC_PROFILE);
        assert_eq!(m.get("PID", 3, 1), "123456");
        assert_eq!(m.get("PID", 3, 4), "CITYHOSP");
        assert_eq!(m.get("PID", 5, 1), "Doe");
        assert_eq!(m.get("PID", 7, 1), "19840229");
        assert_eq!(m.get("PV1", 3, 3), "bed-01");
        assert_eq!(m.get("PV1", 19, 1), "V-77");
        let obx: Vec<_> = m.segments.iter().filter(|s| s.id == "OBX").collect();
        assert_eq!(obx.len(), 3);
        assert_eq!(obx[1].fields[3], "147842^MDC_ECG_HEART_RATE^MDC");
        assert_eq!(obx[1].fields[4], "1.0.0.1");
        assert_eq!(obx[1].fields[5], "72");
        assert_eq!(obx[1].fields[6], "264864^MDC_DIM_BEAT_PER_MIN^MDC");
        assert_eq!(obx[1].fields[7], "50-120");
        assert_eq!(obx[1].fields[17], "AMEAS");
        assert_eq!(obx[1].fields[18], "mon-7^WARDWATCH");
        assert_eq!(obx[2].fields[5], "36.6");
    }

    #[test]
    fn pcd04_reports_the_alert_and_its_states() {
        let (me, p) = (me(), jane());
        let (h, pl) = header_place(&me, &p, "AM", "WW-2");
        let a = Alert {
            alarm_id: 17,
            phase: "start",
            state: "active",
            inactivation: "enabled",
            priority: "PH",
            kind: "SP",
            label: "SpO2 very low | desat".into(),
            metric: Some(Metric {
                code: MDC_PULS_OXIM_SAT_O2,
                value: 78.0,
                unit: UNIT_PERCENT,
                time: "20261204101458+0000".into(),
                limits: Some((Some(80.0), None)),
            }),
            user: None,
            time: "20261204101458+0000".into(),
        };
        let m = Message::parse(&oru_r40(&h, &pl, "mon-7", &a)).unwrap();
        assert_eq!(m.kind(), ("ORU".into(), "R40".into()));
        assert_eq!(m.get("MSH", 21, 1), "IHE_PCD_ACM_001");
        assert_eq!(m.get("OBR", 2, 1), "17");
        assert_eq!(
            m.get("OBX", 5, 1),
            "SpO2 very low | desat",
            "escaped and read back"
        );
        let obx: Vec<_> = m.segments.iter().filter(|s| s.id == "OBX").collect();
        assert_eq!(obx[0].fields[8], "PH~SP");
        assert_eq!(obx[1].fields[5], "78");
        assert_eq!(obx[1].fields[7], "80-");
        let attrs: Vec<(&str, &str)> = obx[2..]
            .iter()
            .map(|s| (s.fields[3].split('^').nth(1).unwrap(), s.fields[5].as_str()))
            .collect();
        assert_eq!(
            attrs,
            [
                ("MDC_ATTR_EVENT_PHASE", "start"),
                ("MDC_ATTR_ALARM_STATE", "active"),
                ("MDC_ATTR_ALARM_INACTIVATION_STATE", "enabled"),
                ("MDC_ATTR_ALARM_PRIORITY", "PH"),
                ("MDC_ATTR_ALERT_TYPE", "SP")
            ]
        );
        let hb = Message::parse(&heartbeat(&h, "4W")).unwrap();
        assert_eq!(hb.get("OBR", 4, 2), "MDC_EVT_ACTIVE");
        // No patient: an empty PID.
        let pl = Place {
            patient: None,
            ..pl
        };
        let m = Message::parse(&oru_r01(&h, &pl, "mon-7", "2026", &[])).unwrap();
        assert!(m.segment("PID").is_some());
        assert_eq!(m.get("PID", 3, 1), "");
    }
}
