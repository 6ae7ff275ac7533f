//! Review, trends and exports against what a simulated ward really sent through the broker:
//! the simulator records every packet and vitals message it hands to its MQTT client, and
//! the station's review queries must give back exactly those samples and values.

use crate::support::*;
use std::time::Duration;
use ward_model::codes;

/// (time in ms, physical value) of every sample a recorded packet list holds for `channel`.
fn sent_samples(packets: &[ward_model::WavePacket], channel: u32) -> Vec<(f64, f32)> {
    packets
        .iter()
        .filter(|p| p.channel == channel)
        .flat_map(|p| {
            let period_ms = 1e6 / p.rate_mhz as f64;
            p.samples.iter().enumerate().map(move |(i, &s)| {
                (
                    p.t0_us as f64 / 1000.0 + i as f64 * period_ms,
                    s as f32 * p.scale + p.offset,
                )
            })
        })
        .collect()
}

fn reviewed(w: &ward_core::review::ReviewWave) -> Vec<(f64, f32)> {
    w.segments
        .iter()
        .flat_map(|s| {
            s.values
                .iter()
                .enumerate()
                .map(move |(i, &v)| (s.t0_ms + i as f64 * s.step_ms, v))
        })
        .collect()
}

fn assert_same(what: &str, got: &[(f64, f32)], want: &[(f64, f32)]) {
    assert_eq!(got.len(), want.len(), "{what}: sample count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g.0 - w.0).abs() < 0.5 && g.1 == w.1,
            "{what}: sample {i} is {g:?}, the simulator sent {w:?}"
        );
    }
}

fn png_size(path: &std::path::Path) -> (u32, u32) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let r = dec.read_info().unwrap();
    (r.info().width, r.info().height)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_and_trends_return_exactly_what_the_simulator_sent_and_exports_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 0);
    let db = cfg.db_path();
    add_user(&cfg, "nurse.rev", ward_model::Role::Nurse, None);
    add_user(&cfg, "viewer.rev", ward_model::Role::Viewer, None);
    let st = ward_core::Station::start(cfg).await.unwrap();

    // Two monitors for 12 s through the station's broker, every packet recorded.
    let mut sim = ward_sim::SimConfig::new(st.broker_addr(), 2);
    sim.record = true;
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(ward_sim::run_ward(sim, stop_rx));
    tokio::time::sleep(Duration::from_secs(12)).await;
    stop.send(true).unwrap();
    let sent = run.await.unwrap().unwrap();
    let ecg = codes::MDC_ECG_ELEC_POTL_II;
    let want_all = sent_samples(&sent.sent_waves["sim-01"], ecg);
    assert!(want_all.len() > 2500, "{}", want_all.len());
    // Everything sent is stored once the idle chunks are flushed.
    let (from_ms, to_ms) = (
        want_all[0].0.floor() as i64,
        want_all.last().unwrap().0.ceil() as i64 + 1,
    );
    let whole = wait_for("every ECG sample stored", Duration::from_secs(30), || {
        let w = st.review().wave("bed-01", ecg, from_ms, to_ms, 0).unwrap();
        (w.samples as usize == want_all.len()).then_some(w)
    });
    assert_same("bed-01 ECG, whole run", &reviewed(&whole), &want_all);

    // A 5 s window inside the run, for each channel of bed 2.
    for channel in [ecg, codes::MDC_PULS_OXIM_PLETH, codes::MDC_IMPED_TTHOR] {
        let all = sent_samples(&sent.sent_waves["sim-02"], channel);
        let a = all[0].0 + 3_000.0;
        let (wf, wt) = (a.floor() as i64, a.floor() as i64 + 5_000);
        let want: Vec<_> = all
            .iter()
            .copied()
            .filter(|(t, _)| *t >= wf as f64 && *t < wt as f64)
            .collect();
        let w = st.review().wave("bed-02", channel, wf, wt, 0).unwrap();
        assert_same(&format!("bed-02 channel {channel}"), &reviewed(&w), &want);
        assert!(!w.reduced);
    }
    // A reduced (zoomed-out) window keeps the extremes of what was sent.
    let w = st
        .review()
        .wave("bed-01", ecg, from_ms, to_ms, 400)
        .unwrap();
    assert!(w.reduced);
    let max_sent = want_all.iter().map(|s| s.1).fold(f32::MIN, f32::max);
    let max_seen = reviewed(&w).iter().map(|s| s.1).fold(f32::MIN, f32::max);
    assert_eq!(max_seen, max_sent);

    // Trends: every HR and SpO2 value the simulator sent, at its time.
    let trend = st
        .review()
        .trend("bed-01", from_ms - 2000, to_ms + 2000)
        .unwrap();
    for code in [codes::MDC_ECG_HEART_RATE, codes::MDC_PULS_OXIM_SAT_O2] {
        let want: Vec<(i64, f64)> = sent.sent_vitals["sim-01"]
            .iter()
            .flat_map(|m| {
                m.obs
                    .iter()
                    .filter(|o| o.code == code)
                    .filter_map(move |o| Some((m.ts_ms?, o.value?)))
            })
            .collect();
        let got: Vec<(i64, f64)> = trend
            .series
            .iter()
            .find(|s| s.code == code)
            .unwrap()
            .points
            .iter()
            .map(|p| (p.t_ms, p.value))
            .collect();
        assert!(want.len() >= 10);
        assert_eq!(got, want, "trend of {code}");
    }
    // Bad requests are refused with the reason.
    let e = st
        .review()
        .wave("bed-99", ecg, from_ms, to_ms, 0)
        .unwrap_err();
    assert!(e.to_string().contains("no bed \"bed-99\""), "{e}");
    let e = st.review().trend("bed-01", to_ms, from_ms).unwrap_err();
    assert!(e.to_string().contains("ends"), "{e}");

    // Export from the window's API: a nurse may, a viewer may not; both audited.
    let strip = ward_core::export::Request::Strip {
        bed: "bed-01".into(),
        from_ms: from_ms + 1000,
        seconds: 10,
        format: ward_core::export::Format::Png,
    };
    let viewer = sign_in(&st, "viewer.rev");
    let e = st.review().export(&viewer, &strip).unwrap_err();
    assert_eq!(e.code(), "view_only");
    let nurse = sign_in(&st, "nurse.rev");
    let path = st.review().export(&nurse, &strip).unwrap();
    assert!(path.starts_with(dir.path().join("exports")), "{path:?}");
    assert_eq!(png_size(&path), (2080, 544));

    // And from the console, while the station runs.
    let conf = dir.path().join("station.toml");
    let bin = workspace_bin("wardwatch");
    let export = |args: &[&str]| {
        std::process::Command::new(&bin)
            .arg("export")
            .args(args)
            .arg("--config")
            .arg(&conf)
            .env("USER", "ops")
            .output()
            .unwrap()
    };
    let from = (from_ms + 1000).to_string();
    let svg = dir.path().join("strip.svg");
    let out = export(&[
        "strip",
        "--bed",
        "bed-02",
        "--from",
        &from,
        "--out",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("width=\"2080\" height=\"544\""));
    assert!(text.contains("ECG II") && text.contains("Bed 2 (bed-02)"));
    let report = dir.path().join("trend.png");
    let out = export(&[
        "trend",
        "--bed",
        "bed-02",
        "--hours",
        "1",
        "--out",
        report.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(png_size(&report), ward_core::export::REPORT_SIZE);
    for (args, says) in [
        (
            vec![
                "strip", "--bed", "bed-77", "--from", &from, "--out", "x.png",
            ],
            "no bed \"bed-77\"",
        ),
        (
            vec![
                "strip",
                "--bed",
                "bed-01",
                "--from",
                "yesterday",
                "--out",
                "x.png",
            ],
            "is not a time",
        ),
        (
            vec![
                "strip", "--bed", "bed-01", "--from", &from, "--out", "x.jpg",
            ],
            ".png or .svg",
        ),
        (
            vec![
                "strip",
                "--bed",
                "bed-01",
                "--from",
                &from,
                "--seconds",
                "60",
                "--out",
                "x.png",
            ],
            "10 to 30 seconds",
        ),
        (
            vec!["strip", "--bed", "bed-01", "--from", "0", "--out", "x.png"],
            "no ECG is stored",
        ),
    ] {
        let out = export(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
    }

    let sent_total = st.shutdown().await;
    assert!(sent_total.is_none(), "no simulator inside the station");
    let store = ward_store::Store::open_read_only(&db).unwrap();
    let trail = store.audit_all().unwrap();
    // Sorted: the window's event goes through the alarm driver's queue, the console's
    // straight to the file, so either may be first.
    let mut exports: Vec<(String, String)> = trail
        .iter()
        .filter(|e| e.kind.starts_with("export."))
        .map(|e| (e.actor.clone(), e.kind.clone()))
        .collect();
    exports.sort();
    assert_eq!(
        exports,
        vec![
            ("console.ops".to_string(), "export.strip".to_string()),
            ("console.ops".to_string(), "export.trend".to_string()),
            ("nurse.rev".to_string(), "export.strip".to_string()),
        ]
    );
    assert!(trail.iter().any(|e| e.kind == "access.denied"
        && e.actor == "viewer.rev"
        && e.detail.contains("export")));
    assert!(store.verify_audit().unwrap().ok());
}
