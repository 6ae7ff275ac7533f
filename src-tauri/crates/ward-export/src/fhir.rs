//! FHIR R4 export of a bed's window: a `collection` Bundle with the Patient (who was in the
//! bed then), the Device (the monitor), an Observation per stored numeric (the HL7
//! Point-of-Care Device IG's way: the 11073 code, system `urn:iso:std:iso:11073:10101`, with
//! the LOINC vital-signs code and UCUM unit beside it where one exists) and an Observation per
//! contiguous waveform run as SampledData (raw samples, `factor` the scale, `origin` the
//! offset, `period` in ms).

use crate::error::ExportError;
use serde_json::{json, Value};
use ward_model::codes::{reference, REFERENCES};
use ward_model::{Patient, Sex};
use ward_store::{Store, TrendResolution, WaveChunk};

/// A fixed UUID per entry of this bundle (FHIR wants `urn:uuid:` full URLs in a collection).
fn uuid(n: usize) -> String {
    format!("urn:uuid:00000000-0000-4000-8000-{n:012x}")
}

/// An f32 as the decimal it was written as (0.005, not 0.004999999888241291).
fn decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

const MDC: &str = "urn:iso:std:iso:11073:10101";
const UCUM: &str = "http://unitsofmeasure.org";

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn patient(p: &Patient) -> Value {
    let mut r = json!({
        "resourceType": "Patient",
        "id": "patient",
        "identifier": [{
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR" }] },
            "system": format!("urn:wardwatch:authority:{}", if p.authority.is_empty() { "local" } else { &p.authority }),
            "value": p.mrn,
        }],
        "name": [{ "family": p.family, "given": if p.given.is_empty() { vec![] } else { vec![p.given.clone()] } }],
        "gender": match p.sex { Sex::F => "female", Sex::M => "male", Sex::O => "other", Sex::U => "unknown" },
    });
    if !p.birth_date.is_empty() {
        r["birthDate"] = p.birth_date.clone().into();
    }
    r
}

fn coding(code: u32) -> Vec<Value> {
    let r = reference(code);
    let mut c = vec![json!({
        "system": MDC,
        "code": code.to_string(),
        "display": r.map(|r| r.name).unwrap_or("unknown"),
    })];
    if let Some((loinc, display)) = r.and_then(|r| r.loinc) {
        c.push(json!({ "system": "http://loinc.org", "code": loinc, "display": display }));
    }
    c
}

/// Contiguous runs of chunks with the same rate, scale and offset.
fn runs(chunks: Vec<WaveChunk>) -> Vec<Vec<WaveChunk>> {
    let mut out: Vec<Vec<WaveChunk>> = Vec::new();
    for c in chunks {
        let joins = out.last().and_then(|r| r.last()).is_some_and(|p| {
            p.rate_mhz == c.rate_mhz
                && p.scale == c.scale
                && p.offset == c.offset
                && (c.t0_us - p.end_us()).abs() <= (2e9 / c.rate_mhz.max(1) as f64) as i64
        });
        if joins {
            if let Some(r) = out.last_mut() {
                r.push(c);
            }
        } else {
            out.push(vec![c]);
        }
    }
    out
}

/// The Bundle for `bed` over `[from_ms, to_ms)`, as JSON text.
pub fn bundle(
    store: &Store,
    station: &str,
    bed: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<String, ExportError> {
    let who: Option<Patient> = store
        .patients_between(bed, from_ms, to_ms)?
        .last()
        .and_then(|(_, j)| serde_json::from_str(j).ok());
    let mut entries = Vec::new();
    let subject = who.as_ref().map(|p| {
        entries.push(json!({ "fullUrl": uuid(1), "resource": patient(p) }));
        json!({ "reference": uuid(1) })
    });
    let mut devices: Vec<String> = Vec::new();
    let mut observations = Vec::new();
    for r in REFERENCES
        .iter()
        .filter(|r| r.loinc.is_some() || r.name.contains("PRESS") || r.name.contains("PULS_RATE"))
    {
        if ward_model::codes::TraceKind::from_code(r.code).is_some() {
            continue;
        }
        for p in store.trend(bed, r.code, from_ms, to_ms, TrendResolution::Raw)? {
            let mut o = json!({
                "resourceType": "Observation",
                "status": "final",
                "code": { "coding": coding(r.code) },
                "effectiveDateTime": rfc3339(p.t_ms),
                "valueQuantity": { "value": p.value, "unit": r.ucum, "system": UCUM, "code": r.ucum },
            });
            if r.loinc.is_some() {
                o["category"] = json!([{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "vital-signs",
                }] }]);
            }
            observations.push(o);
        }
    }
    for kind in [
        ward_model::codes::TraceKind::Ecg,
        ward_model::codes::TraceKind::Pleth,
        ward_model::codes::TraceKind::Resp,
    ] {
        let chunks = store.wave_window(bed, kind.code(), from_ms * 1000, to_ms * 1000)?;
        for run in runs(chunks) {
            let (Some(first), Some(last)) = (run.first(), run.last()) else {
                continue;
            };
            if !devices.contains(&first.device) {
                devices.push(first.device.clone());
            }
            let ucum = ward_model::codes::unit_names(first.unit)
                .map(|(_, u)| u)
                .unwrap_or("1");
            let data: Vec<String> = run
                .iter()
                .flat_map(|c| c.samples.iter().map(|s| s.to_string()))
                .collect();
            observations.push(json!({
                "resourceType": "Observation",
                "status": "final",
                "code": { "coding": coding(kind.code()) },
                "effectivePeriod": { "start": rfc3339(first.t0_us / 1000), "end": rfc3339(last.end_us() / 1000) },
                "valueSampledData": {
                    "origin": { "value": decimal(first.offset), "unit": ucum, "system": UCUM, "code": ucum },
                    "period": 1e6 / first.rate_mhz.max(1) as f64,
                    "factor": decimal(first.scale),
                    "dimensions": 1,
                    "data": data.join(" "),
                },
            }));
        }
    }
    if devices.is_empty() {
        devices = store.devices_between(bed, from_ms, to_ms)?;
    }
    let device_ref = devices.first().map(|d| {
        entries.push(json!({ "fullUrl": uuid(2), "resource": {
            "resourceType": "Device",
            "id": "device",
            "identifier": [{ "system": "urn:wardwatch:device", "value": d }],
            "type": { "coding": [{ "system": MDC, "code": "69965", "display": "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS" }] },
            "note": [{ "text": format!("{station}, bed {bed}") }],
        } }));
        json!({ "reference": uuid(2) })
    });
    for (i, mut o) in observations.into_iter().enumerate() {
        o["id"] = format!("obs-{}", i + 1).into();
        if let Some(s) = &subject {
            o["subject"] = s.clone();
        }
        if let Some(d) = &device_ref {
            o["device"] = d.clone();
        }
        entries.push(json!({ "fullUrl": uuid(i + 3), "resource": o }));
    }
    let b = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": rfc3339(chrono::Utc::now().timestamp_millis()),
        "entry": entries,
    });
    serde_json::to_string_pretty(&b).map_err(|e| ExportError::Render(e.to_string()))
}
