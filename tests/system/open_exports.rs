//! FHIR and EDF+ exports read by software nobody here wrote: the Bundle validated by PyPI's
//! fhir.resources (R4 models), the EDF+ file read by PyPI's edfio (tests/py/read_exports.py),
//! and both compared with what the station stored from its simulated monitor.

use crate::support::{wait_for, workspace_bin, Headless};
use std::process::Command;
use std::time::Duration;
use ward_model::codes;

#[test]
fn fhir_and_edf_exports_read_back_equal_to_the_store() {
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("station.toml");
    std::fs::write(
        &cfg,
        "[sim]\nbeds = 1\nscenarios = [\"bed 1 desaturates to 76 % at 3 s\"]\n",
    )
    .unwrap();
    let st = Headless::start(&["--config", cfg.to_str().unwrap()]);
    // The patient, admitted at the console while the station runs.
    let console = st.console_config(work.path());
    let wardwatch = |args: &[&str]| {
        let out = Command::new(workspace_bin("wardwatch"))
            .args(args)
            .arg("--config")
            .arg(&console)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    wardwatch(&[
        "patients",
        "admit",
        "--bed",
        "bed-01",
        "--mrn",
        "E-55",
        "--authority",
        "CITYHOSP",
        "--family",
        "Edf",
        "--given",
        "Ada",
        "--birth-date",
        "1971-07-01",
        "--sex",
        "F",
    ]);
    let db = st.db();
    let q = |sql: &str| -> i64 {
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    };
    wait_for(
        "15 s of ECG and the desaturation",
        Duration::from_secs(60),
        || {
            let ecg =
                q("SELECT COUNT(*) FROM wave_chunks WHERE bed = 'bed-01' AND channel = 131330");
            let desat = q("SELECT COUNT(*) FROM alarm_log WHERE condition = 'limit:spo2_desat' AND kind = 'raised'");
            (ecg >= 15 && desat > 0).then_some(())
        },
    );
    let (status, dir) = st.stop_keep();
    assert!(status.success());
    let db = dir.path().join("wardwatch.sqlite");
    let from_ms = q("SELECT MIN(t0_us) / 1000 FROM wave_chunks WHERE bed = 'bed-01'");
    let from = from_ms.to_string();
    let (bundle, edf) = (work.path().join("b.json"), work.path().join("d.edf"));
    for (kind, out) in [("fhir", &bundle), ("edf", &edf)] {
        wardwatch(&[
            "export",
            kind,
            "--bed",
            "bed-01",
            "--from",
            &from,
            "--minutes",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]);
    }
    let read = Command::new(std::env::var("WARDWATCH_PYTHON").expect("WARDWATCH_PYTHON"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/read_exports.py"
        ))
        .args([&bundle, &edf])
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    let store = ward_store::Store::open_read_only(&db).unwrap();
    let to_ms = from_ms + 60_000;

    // FHIR: the patient, the monitor, every stored numeric with its codes, unit and value.
    let f = &got["fhir"];
    assert_eq!(f["patients"][0]["mrn"], "E-55");
    assert_eq!(f["patients"][0]["gender"], "female");
    assert_eq!(f["devices"][0], "sim-01");
    for (code, loinc, ucum) in [
        (codes::MDC_ECG_HEART_RATE, Some("8867-4"), "/min"),
        (codes::MDC_PULS_OXIM_SAT_O2, Some("2708-6"), "%"),
        (codes::MDC_RESP_RATE, Some("9279-1"), "/min"),
    ] {
        let stored = store
            .trend(
                "bed-01",
                code,
                from_ms,
                to_ms,
                ward_store::TrendResolution::Raw,
            )
            .unwrap();
        let sent: Vec<&serde_json::Value> = f["numerics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["mdc"].as_str() == Some(code.to_string().as_str()))
            .collect();
        assert_eq!(sent.len(), stored.len(), "code {code}");
        assert!(!stored.is_empty());
        for (s, p) in sent.iter().zip(&stored) {
            assert_eq!(s["value"].as_f64(), Some(p.value), "code {code}");
            assert_eq!(s["loinc"].as_str(), loinc);
            assert_eq!(s["ucum"], ucum);
            assert!(s["subject"].is_string(), "each numeric names the patient");
        }
    }
    let ecg_samples: usize = store
        .wave_window(
            "bed-01",
            codes::MDC_ECG_ELEC_POTL_II,
            from_ms * 1000,
            to_ms * 1000,
        )
        .unwrap()
        .iter()
        .map(|c| c.samples.len())
        .sum();
    let sent_samples: u64 = f["waves"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["mdc"].as_str() == Some(codes::MDC_ECG_ELEC_POTL_II.to_string().as_str()))
        .map(|w| w["n"].as_u64().unwrap())
        .sum();
    assert_eq!(sent_samples as usize, ecg_samples);

    // EDF+: channels at their rates, every stored sample within one quantization step, the
    // patient in the header, the alarms as annotations.
    let e = &got["edf"];
    assert_eq!(e["patient"]["code"], "E-55");
    assert_eq!(e["patient"]["name"], "Edf,_Ada");
    let signals = e["signals"].as_array().unwrap();
    let labels: Vec<&str> = signals
        .iter()
        .map(|s| s["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["ECG II", "Pleth", "Resp"]);
    for (sig, kind) in signals.iter().zip([
        codes::TraceKind::Ecg,
        codes::TraceKind::Pleth,
        codes::TraceKind::Resp,
    ]) {
        let chunks = store
            .wave_window("bed-01", kind.code(), from_ms * 1000, to_ms * 1000)
            .unwrap();
        let rate = chunks[0].rate_mhz as f64 / 1000.0;
        assert_eq!(sig["rate"].as_f64(), Some(rate), "{kind:?}");
        let data = sig["data"].as_array().unwrap();
        let mut compared = 0;
        for c in &chunks {
            let period_us = 1e9 / c.rate_mhz as f64;
            for (i, raw) in c.samples.iter().enumerate() {
                let t_us = c.t0_us as f64 + i as f64 * period_us;
                let at = ((t_us - from_ms as f64 * 1000.0) * rate / 1e6).round() as usize;
                let want = *raw as f64 * c.scale as f64 + c.offset as f64;
                let have = data[at].as_f64().unwrap();
                assert!(
                    (have - want).abs() <= c.scale as f64 * 1.01,
                    "{kind:?} sample {at}: {have} vs stored {want}"
                );
                compared += 1;
            }
        }
        assert!(
            compared > 1000 || kind == codes::TraceKind::Resp,
            "{kind:?}: {compared}"
        );
    }
    let notes: Vec<&str> = e["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["text"].as_str().unwrap())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("HIGH Desaturation raised")),
        "{notes:?}"
    );
    // Both exports are in the trail with the console user.
    let trail = String::from_utf8_lossy(
        &Command::new(workspace_bin("wardwatch"))
            .args(["audit", "export", "--db"])
            .arg(&db)
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(trail.contains("\"export.fhir\"") && trail.contains("\"export.edf\""));
}
