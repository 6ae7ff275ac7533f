use crate::support::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn a_bad_config_names_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("station.toml");
    std::fs::write(
        &path,
        "[station]\ndata_dir = \"/tmp/x\"\n[store]\nwaveform_hours = 0\n",
    )
    .unwrap();
    let out = Command::new(workspace_bin("wardwatch"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("store.waveform_hours"), "{err}");
    assert!(err.contains("outside 1..=720"), "{err}");
}

#[test]
fn tests_cannot_fall_back_to_the_real_user_data_directory() {
    // The guard every spawned station runs under: with no data_dir, start-up fails.
    let out = Command::new(workspace_bin("wardwatch"))
        .args(["run", "--listen", "127.0.0.1:0", "--duration", "1"])
        .env(FORBID_ENV, "1")
        .env_remove("WARDWATCH_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("station.data_dir"), "{err}");
}

#[test]
fn the_simulator_runs_on_its_own_against_a_station() {
    let st = Headless::start(&[]);
    let out = Command::new(workspace_bin("wardwatch"))
        .args(["sim", "--beds", "2", "--duration", "3", "--broker"])
        .arg(st.addr.to_string())
        .args(["--scenario", "bed 2 desaturates to 85 % at 0 s"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sim: sent "));
    let spo2 = wait_for("sim-02 SpO2", Duration::from_secs(10), || {
        stored_vital(&st.db(), "sim-02", 150_456)
    });
    assert!(
        spo2.value.unwrap() < 96.0,
        "desaturation under way: {:?}",
        spo2.value
    );
    let bad = Command::new(workspace_bin("wardwatch"))
        .args([
            "sim",
            "--broker",
            "127.0.0.1:1",
            "--scenario",
            "bed 3 sings at 1 s",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected \"desaturates to"));
}
