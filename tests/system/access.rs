//! Users and roles at the core API of a running station: every permission decided in the
//! core (not the window), every denial answered with a reason and audited, sessions that
//! lock by themselves and unlock with a PIN, and no secret in the trail.

use crate::support::*;
use std::time::Duration;
use ward_core::AlarmCommand::{Acknowledge, AlarmPause, AudioOff, AudioPause, SetRules};
use ward_core::UserChange;
use ward_model::Role;

fn code<T: std::fmt::Debug>(r: Result<T, ward_core::CoreError>) -> &'static str {
    r.unwrap_err().code().as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_are_decided_in_the_core_and_every_denial_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 0);
    cfg.access.auto_lock_ms = 10_000;
    add_user(&cfg, "nurse.ana", Role::Nurse, Some("4321"));
    add_user(&cfg, "nurse.ben", Role::Nurse, None);
    add_user(&cfg, "charge.cho", Role::ChargeNurse, Some("8642"));
    add_user(&cfg, "it.ida", Role::ItAdmin, None);
    add_user(&cfg, "view.vic", Role::Viewer, None);
    let st = ward_core::Station::start(cfg.clone()).await.unwrap();

    // Signing in: the same answer for an unknown name and a wrong password.
    let e = st.staff().login("nurse.ana", "wrong password").unwrap_err();
    assert_eq!(
        (e.code().as_str(), e.to_string().as_str()),
        ("bad_credentials", "unknown user or wrong password")
    );
    let e = st.staff().login("nobody", "whatever1").unwrap_err();
    assert_eq!(e.to_string(), "unknown user or wrong password");
    let (ana, s) = st
        .staff()
        .login("nurse.ana", &password_of("nurse.ana"))
        .unwrap();
    assert_eq!((s.role, s.has_pin, s.locked), (Role::Nurse, true, false));
    let ben = sign_in(&st, "nurse.ben");
    let cho = sign_in(&st, "charge.cho");
    let ida = sign_in(&st, "it.ida");
    let vic = sign_in(&st, "view.vic");
    let bed = |b: &str| Some(b.to_string());

    // Viewer: sees, never acts.
    assert_eq!(
        code(st.alarms().act(&vic, AudioPause { bed: bed("bed-01") })),
        "view_only"
    );
    // Nurse with no beds yet; limits, assignments and users are not hers at all.
    assert_eq!(
        code(st.alarms().act(
            &ana,
            AlarmPause {
                bed: "bed-01".into()
            }
        )),
        "not_assigned"
    );
    let rules = st.alarms().limits("bed-01").unwrap();
    let set_rules = |b: &str| SetRules {
        bed: b.into(),
        rules: rules.clone(),
    };
    assert_eq!(
        code(st.alarms().act(&ana, set_rules("bed-01"))),
        "not_permitted"
    );
    assert_eq!(
        code(
            st.staff()
                .assign_beds(&ana, "nurse.ana", &["bed-01".into()])
        ),
        "not_permitted"
    );
    assert_eq!(
        code(st.alarms().act(&ana, AudioOff { bed: bed("bed-01") })),
        "not_permitted"
    );

    // The charge nurse assigns beds (checked), and then the nurse acts on hers only.
    assert_eq!(
        code(
            st.staff()
                .assign_beds(&cho, "nurse.ana", &["bed-99".into()])
        ),
        "bad_assignment"
    );
    assert_eq!(
        code(
            st.staff()
                .assign_beds(&cho, "charge.cho", &["bed-01".into()])
        ),
        "bad_assignment"
    );
    st.staff()
        .assign_beds(&cho, "nurse.ana", &["bed-01".into(), "bed-02".into()])
        .unwrap();
    st.alarms()
        .act(
            &ana,
            AlarmPause {
                bed: "bed-01".into(),
            },
        )
        .unwrap();
    st.alarms()
        .act(&ana, AudioPause { bed: bed("bed-02") })
        .unwrap();
    assert_eq!(
        code(st.alarms().act(&ana, AudioPause { bed: bed("bed-03") })),
        "not_assigned"
    );
    assert_eq!(
        code(st.alarms().act(&ana, AudioPause { bed: None })),
        "not_assigned"
    );
    assert_eq!(
        code(st.alarms().act(
            &ben,
            AlarmPause {
                bed: "bed-01".into()
            }
        )),
        "not_assigned"
    );
    // A station-level technical alarm is anyone's on shift: the permission passes and the
    // engine answers (no such alarm).
    assert_eq!(
        code(st.alarms().act(&ben, Acknowledge { id: 777_777 })),
        "unknown_alarm"
    );
    // The charge nurse: limits and the whole unit; audio off only where policy allows it.
    st.alarms().act(&cho, set_rules("bed-05")).unwrap();
    st.alarms().act(&cho, AudioPause { bed: None }).unwrap();
    assert_eq!(
        code(st.alarms().act(&cho, AudioOff { bed: None })),
        "not_allowed"
    );
    assert_eq!(
        code(st.staff().change_user(
            &cho,
            &UserChange {
                username: "nurse.x".into(),
                ..Default::default()
            }
        )),
        "not_permitted"
    );

    // IT: users, not patients.
    assert_eq!(
        code(st.alarms().act(
            &ida,
            AlarmPause {
                bed: "bed-01".into()
            }
        )),
        "not_permitted"
    );
    let new = UserChange {
        username: "nurse.dee".into(),
        display_name: Some("Dee".into()),
        role: Some(Role::Nurse),
        password: Some("dee-password-1".into()),
        pin: Some(Some("2468".into())),
        disabled: None,
    };
    let weak = UserChange {
        password: Some("short".into()),
        ..new.clone()
    };
    assert_eq!(code(st.staff().change_user(&ida, &weak)), "weak_password");
    let v = st.staff().change_user(&ida, &new).unwrap();
    assert_eq!((v.role, v.has_pin, v.disabled), (Role::Nurse, true, false));
    st.staff().login("nurse.dee", "dee-password-1").unwrap();
    // Disabling a user ends their session at once and refuses the next sign-in.
    st.staff()
        .change_user(
            &ida,
            &UserChange {
                username: "nurse.ben".into(),
                disabled: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(st.staff().session(&ben).is_none());
    assert_eq!(
        code(st.alarms().act(
            &ben,
            AlarmPause {
                bed: "bed-01".into()
            }
        )),
        "not_signed_in"
    );
    assert_eq!(
        code(st.staff().login("nurse.ben", &password_of("nurse.ben"))),
        "bad_credentials"
    );
    // A user IT adds with the CLI while the station runs can sign in straight away.
    add_user(&cfg, "nurse.late", Role::Nurse, None);
    sign_in(&st, "nurse.late");

    // Lock, then unlock with the PIN; wrong PINs are counted and the fifth ends the session.
    st.staff().lock(&ana);
    assert_eq!(
        code(st.alarms().act(
            &ana,
            AlarmPause {
                bed: "bed-01".into()
            }
        )),
        "locked"
    );
    assert_eq!(code(st.staff().unlock(&ana, "0000")), "bad_credentials");
    assert!(!st.staff().unlock(&ana, "4321").unwrap().locked);
    st.alarms()
        .act(
            &ana,
            AlarmPause {
                bed: "bed-01".into(),
            },
        )
        .unwrap();
    st.staff().lock(&ana);
    for _ in 0..4 {
        assert_eq!(code(st.staff().unlock(&ana, "1111")), "bad_credentials");
    }
    assert_eq!(code(st.staff().unlock(&ana, "1111")), "session_ended");
    assert!(st.staff().session(&ana).is_none());

    // Auto-lock after 10 s without activity (the charge nurse walked away).
    let locked = wait_for(
        "auto-lock of an idle session",
        Duration::from_secs(30),
        || st.staff().session(&cho).filter(|s| s.locked),
    );
    assert_eq!(locked.username, "charge.cho");
    assert_eq!(code(st.alarms().act(&cho, set_rules("bed-05"))), "locked");
    st.staff().unlock(&cho, &password_of("charge.cho")).unwrap();
    st.staff().logout(&cho);
    assert!(st.staff().session(&cho).is_none());
    st.shutdown().await;

    // The trail: every denial with who, what, where and why; logins, locks, user changes;
    // no secret anywhere.
    let store = ward_store::Store::open_read_only(&cfg.db_path()).unwrap();
    let trail = store.audit_all().unwrap();
    let denied: Vec<(String, String, Option<String>)> = trail
        .iter()
        .filter(|r| r.kind == "access.denied")
        .map(|r| {
            let d: serde_json::Value = serde_json::from_str(&r.detail).unwrap();
            (
                r.actor.clone(),
                format!(
                    "{}:{}",
                    d["action"].as_str().unwrap(),
                    d["code"].as_str().unwrap()
                ),
                r.bed.clone(),
            )
        })
        .collect();
    for expected in [
        ("view.vic", "audio_pause:view_only", Some("bed-01")),
        ("nurse.ana", "alarm_pause:not_assigned", Some("bed-01")),
        ("nurse.ana", "change_limits:not_permitted", Some("bed-01")),
        ("nurse.ana", "assign_beds:not_permitted", None),
        ("nurse.ana", "audio_pause:not_assigned", Some("bed-03")),
        ("nurse.ben", "alarm_pause:not_assigned", Some("bed-01")),
        ("charge.cho", "manage_users:not_permitted", None),
        ("it.ida", "alarm_pause:not_permitted", Some("bed-01")),
        ("nurse.ana", "alarm_pause:locked", Some("bed-01")),
        ("charge.cho", "change_limits:locked", Some("bed-05")),
        (
            "(not signed in)",
            "alarm_pause:not_signed_in",
            Some("bed-01"),
        ),
    ] {
        let e = (
            expected.0.to_string(),
            expected.1.to_string(),
            expected.2.map(str::to_string),
        );
        assert!(denied.contains(&e), "{e:?} not in {denied:#?}");
    }
    let kinds = |kind: &str| -> Vec<(String, String)> {
        trail
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| (r.actor.clone(), r.detail.clone()))
            .collect()
    };
    let failed = kinds("session.login_failed");
    assert!(failed.contains(&("nurse.ana".into(), r#"{"reason":"wrong password"}"#.into())));
    assert!(failed.contains(&("nobody".into(), r#"{"reason":"unknown user"}"#.into())));
    assert!(failed.contains(&(
        "nurse.ben".into(),
        r#"{"reason":"account disabled"}"#.into()
    )));
    assert!(kinds("session.locked")
        .iter()
        .any(|(a, d)| a == "charge.cho" && d.contains("inactivity")));
    assert_eq!(kinds("session.unlock_failed").len(), 6);
    assert!(kinds("user.created")
        .iter()
        .any(|(a, d)| a == "it.ida" && d.contains("nurse.dee")));
    assert!(kinds("beds.assigned")
        .iter()
        .any(|(a, d)| a == "charge.cho" && d.contains(r#""beds":["bed-01","bed-02"]"#)));
    assert!(kinds("alarm.alarm_paused")
        .iter()
        .any(|(a, _)| a == "nurse.ana"));
    let all = serde_json::to_string(&trail).unwrap();
    for secret in ["dee-password-1", &password_of("nurse.ana")] {
        assert!(!all.contains(secret), "{secret} is in the audit trail");
    }
    // PINs are short enough to turn up inside hashes and times; as values they never appear.
    for pin in ["2468", "4321", "8642", "0000", "1111"] {
        assert!(
            !all.contains(&format!("\\\"{pin}\\\"")),
            "PIN {pin} is in the audit trail"
        );
    }
    assert!(store.verify_audit().unwrap().ok());
    assert_eq!(
        store.assignments().unwrap(),
        vec![
            ("nurse.ana".to_string(), "bed-01".to_string()),
            ("nurse.ana".to_string(), "bed-02".to_string())
        ]
    );
}

/// Charge nurses admit and discharge devices to beds at run time: the bed's alarms end with a
/// discharge, the device's data follows it to its new bed, and the map survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charge_nurses_admit_and_discharge_devices() {
    let dir = tempfile::tempdir().unwrap();
    // Two simulated monitors (sim-01, sim-02) stream; the config puts sim-03..16 at beds
    // 3..16, where no monitor speaks: those beds raise "No data".
    let cfg = config(dir.path(), 2);
    add_user(&cfg, "nurse.ana", Role::Nurse, None);
    add_user(&cfg, "charge.cho", Role::ChargeNurse, None);
    let st = ward_core::Station::start(cfg.clone()).await.unwrap();
    let ana = sign_in(&st, "nurse.ana");
    let cho = sign_in(&st, "charge.cho");
    let no_data = |st: &ward_core::StationHandle, bed: &str| {
        st.alarms()
            .snapshot()
            .alarms
            .into_iter()
            .find(|a| a.bed.as_deref() == Some(bed) && a.label == "No data from monitor")
    };
    wait_for("No data at bed 3", Duration::from_secs(30), || {
        no_data(&st, "bed-03")
    });

    assert_eq!(code(st.admin().discharge(&ana, "bed-03")), "not_permitted");
    assert_eq!(
        code(st.admin().admit(&cho, "bed-01", "mon-x")),
        "bad_admission"
    );
    assert_eq!(
        code(st.admin().admit(&cho, "bed-99", "mon-x")),
        "bad_admission"
    );
    assert_eq!(
        code(st.admin().admit(&cho, "bed-03", "bad/id")),
        "bad_device"
    );
    // Bed 3's monitor is gone for good: discharging it ends its alarm.
    st.admin().discharge(&cho, "bed-03").unwrap();
    assert!(no_data(&st, "bed-03").is_none());
    assert_eq!(code(st.admin().discharge(&cho, "bed-03")), "bad_admission");
    // sim-02 moves from bed 2 to bed 3 with its patient.
    assert_eq!(
        code(st.admin().admit(&cho, "bed-03", "sim-02")),
        "bad_admission"
    );
    st.admin().discharge(&cho, "bed-02").unwrap();
    st.admin().admit(&cho, "bed-03", "sim-02").unwrap();
    let view = |st: &ward_core::StationHandle, bed: &str| {
        st.live()
            .snapshot()
            .beds
            .into_iter()
            .find(|b| b.id == bed)
            .unwrap()
    };
    assert_eq!(view(&st, "bed-03").device.as_deref(), Some("sim-02"));
    assert_eq!(view(&st, "bed-02").device, None);
    wait_for(
        "sim-02's vitals stored for bed 3",
        Duration::from_secs(20),
        || {
            let s = ward_store::Store::open_read_only(&cfg.db_path()).ok()?;
            s.vitals("sim-02", ward_model::codes::MDC_ECG_HEART_RATE)
                .ok()?
                .into_iter()
                .find(|v| v.bed.as_deref() == Some("bed-03"))
        },
    );
    let history = st.review().alarm_history(Some("bed-03"), 50).unwrap();
    let kinds: Vec<(String, Option<String>, Option<String>)> = history
        .iter()
        .filter(|r| r.kind == "admitted" || r.kind == "discharged")
        .map(|r| (r.kind.clone(), r.user.clone(), r.detail.clone()))
        .collect();
    let who = Some("charge.cho".to_string());
    assert_eq!(
        kinds,
        vec![
            ("admitted".into(), who.clone(), Some("sim-02".into())),
            ("discharged".into(), who.clone(), Some("sim-03".into())),
        ]
    );
    assert!(history
        .iter()
        .any(|r| r.kind == "ended" && r.label == "No data from monitor" && r.user == who));
    st.shutdown().await;

    // The station's decisions outlive a restart, over the config's map.
    let st = ward_core::Station::start(cfg).await.unwrap();
    assert_eq!(view(&st, "bed-03").device.as_deref(), Some("sim-02"));
    assert_eq!(view(&st, "bed-02").device, None);
    st.shutdown().await;
}
