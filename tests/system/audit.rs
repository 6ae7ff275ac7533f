//! The audit trail of a real station, checked and exported with the `wardwatch audit` CLI,
//! then tampered with as someone holding the file would (sqlite, triggers dropped).

use crate::support::*;
use std::process::Command;
use std::time::Duration;

fn audit(args: &[&str]) -> std::process::Output {
    Command::new(workspace_bin("wardwatch"))
        .arg("audit")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_stations_audit_trail_verifies_exports_and_reveals_tampering() {
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("audit.toml");
    let mut text = String::from(
        "[station]\nid = \"st-audit\"\n[sim]\nbeds = 2\nscenarios = [\"bed 2 desaturates to 76 % at 1 s\"]\n",
    );
    for i in 1..=2 {
        text +=
            &format!("[[beds]]\nid = \"bed-0{i}\"\nlabel = \"Bed {i}\"\ndevice = \"sim-0{i}\"\n");
    }
    std::fs::write(&cfg, text).unwrap();
    let st = Headless::start(&["--config", cfg.to_str().unwrap()]);
    let db = st.db();
    wait_for(
        "a raised alarm in the audit trail",
        Duration::from_secs(60),
        || {
            let s = ward_store::Store::open_read_only(&db).ok()?;
            s.audit_all()
                .ok()?
                .into_iter()
                .find(|r| r.kind == "alarm.raised" && r.bed.as_deref() == Some("bed-02"))
        },
    );
    let (status, _kept) = st.stop_keep();
    assert!(status.success());
    let db_arg = db.to_str().unwrap();

    let out = audit(&["verify", "--db", db_arg]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("audit trail OK: "), "{text}");

    let out = audit(&["export", "--db", db_arg]);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"station.start"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"station.stop"), "{kinds:?}");
    assert!(kinds.contains(&"device.online"), "{kinds:?}");
    assert!(kinds.contains(&"alarm.raised"), "{kinds:?}");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["seq"].as_i64(), Some(i as i64 + 1));
        assert_eq!(l["event_id"], format!("st-audit:{}", i + 1));
    }
    // Someone edits who raised what, in the middle of the trail.
    let victim = (lines.len() / 2 + 1) as i64;
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    conn.execute(
        "UPDATE audit SET actor = 'nurse.eve' WHERE seq = ?1",
        [victim],
    )
    .unwrap();
    drop(conn);
    let out = audit(&["verify", "--db", db_arg]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "tampering not detected: {text}");
    assert!(
        text.contains(&format!(
            "event {victim} (st-audit:{victim}): its contents were changed"
        )),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT intact"));
}
