//! PCD-01 and PCD-04 to the hospital: a Python MLLP server from PyPI's `hl7` package plays
//! the interface engine and the alarm manager (tests/py/mllp_server.py), parses every message
//! and acknowledges it. An outage of 60 s while the simulated ward runs and an alarm is raised
//! and acknowledged; a `kill -9` of the station during an outage.

use crate::support::{add_user, sign_in, wait_for, Headless};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;
use ward_alarm::LogKind;

fn python() -> String {
    std::env::var("WARDWATCH_PYTHON")
        .expect("WARDWATCH_PYTHON must name a Python with hl7 (make test sets up .venv)")
}

/// The hospital's receiver: restartable on the same port.
struct Receiver {
    child: Option<Child>,
    port: u16,
    out: PathBuf,
    port_file: PathBuf,
    refuse: String,
}

impl Receiver {
    fn start(dir: &Path, name: &str, refuse: &str) -> Self {
        let mut r = Receiver {
            child: None,
            port: 0,
            out: dir.join(format!("{name}.jsonl")),
            port_file: dir.join(format!("{name}.port")),
            refuse: refuse.into(),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.port_file);
        let child = Command::new(python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/py/mllp_server.py"
            ))
            .args(["--port", &self.port.to_string(), "--refuse", &self.refuse])
            .arg("--port-file")
            .arg(&self.port_file)
            .arg("--out")
            .arg(&self.out)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.port = wait_for("the MLLP server", Duration::from_secs(20), || {
            std::fs::read_to_string(&self.port_file)
                .ok()?
                .trim()
                .parse()
                .ok()
        });
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every message received, in order (a resend after a lost answer appears twice, with
    /// the same control id, as HL7 receivers expect).
    fn received(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn hl7_section(pcd01: u16, pcd04: u16) -> String {
    format!(
        "[hl7]\npoint_of_care = \"4W\"\nfacility = \"4W\"\npcd01_to = \"127.0.0.1:{pcd01}\"\n\
         pcd01_every_s = 2\npcd04_to = \"127.0.0.1:{pcd04}\"\npcd04_heartbeat_s = 2\nack_timeout_s = 2\n"
    )
}

fn admit(cfg: &ward_core::Config, bed: &str, mrn: &str, family: &str) {
    ward_core::patients::apply_offline(
        cfg,
        &ward_core::census::Op::Admit {
            bed: bed.into(),
            patient: ward_model::Patient {
                mrn: mrn.into(),
                authority: "CITYHOSP".into(),
                family: family.into(),
                given: "Test".into(),
                birth_date: "1960-05-05".into(),
                sex: ward_model::Sex::F,
                category: ward_model::Category::Adult,
                visit: None,
            },
        },
        "console.test",
    )
    .unwrap();
}

/// The control ids the station queued, per destination, in queue order.
fn queued(db: &Path, dest: &str) -> Vec<(String, Option<String>, String)> {
    let s = ward_store::Store::open_read_only(db).unwrap();
    s.hl7_messages(None)
        .unwrap()
        .into_iter()
        .filter(|m| m.msg.dest == dest)
        .map(|m| (m.msg.control_id, m.msg.bed, m.state))
        .collect()
}

/// First receipts by control id, in arrival order.
fn first_receipts(r: &Receiver) -> Vec<serde_json::Value> {
    let mut seen = std::collections::HashSet::new();
    r.received()
        .into_iter()
        .filter(|m| seen.insert(m["control_id"].as_str().unwrap().to_string()))
        .collect()
}

/// Every queued message arrived, and per bed in the order queued.
fn assert_all_arrived_in_order(db: &Path, dest: &str, r: &Receiver) -> usize {
    let q = queued(db, dest);
    let got = first_receipts(r);
    let unreadable: Vec<_> = got.iter().filter(|m| m.get("error").is_some()).collect();
    assert!(
        unreadable.is_empty(),
        "the hl7 package could not read: {unreadable:?}"
    );
    let order: BTreeMap<String, usize> = got
        .iter()
        .enumerate()
        .map(|(i, m)| (m["control_id"].as_str().unwrap().to_string(), i))
        .collect();
    let mut last_per_bed: BTreeMap<Option<String>, usize> = BTreeMap::new();
    for (cid, bed, state) in &q {
        assert_eq!(state, "acked", "{dest} {cid} not answered");
        let at = *order
            .get(cid)
            .unwrap_or_else(|| panic!("{dest} {cid} never arrived"));
        if let Some(prev) = last_per_bed.insert(bed.clone(), at) {
            assert!(prev < at, "{dest} {cid} of {bed:?} arrived out of order");
        }
    }
    q.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcd01_and_pcd04_reach_the_hospital_through_a_60_s_outage_in_order_with_the_acknowledging_user(
) {
    let work = tempfile::tempdir().unwrap();
    let mut engine = Receiver::start(work.path(), "engine", "");
    let mut manager = Receiver::start(work.path(), "manager", "");
    let cfg = {
        let text = format!(
            "[station]\nid = \"st-4w\"\ndata_dir = {:?}\n[broker]\nlisten = \"127.0.0.1:0\"\nallow_anonymous = true\n\
             [store]\nbatch_ms = 50\n[alarms]\nnotifications = false\n[access]\nnurses_all_beds = true\n\
             [sim]\nbeds = 2\nscenarios = [\"bed 2 desaturates to 76 % at 6 s\"]\n{}\
             [[beds]]\nid = \"bed-01\"\nlabel = \"Bed 1\"\ndevice = \"sim-01\"\n\
             [[beds]]\nid = \"bed-02\"\nlabel = \"Bed 2\"\ndevice = \"sim-02\"\n",
            work.path().join("data").display().to_string(),
            hl7_section(engine.port, manager.port)
        );
        let path = work.path().join("station.toml");
        std::fs::write(&path, text).unwrap();
        ward_core::Config::load(Some(&path), toml::Table::new()).unwrap()
    };
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    add_user(&cfg, "nurse.ana", ward_model::Role::Nurse, None);
    admit(&cfg, "bed-01", "MRN-1", "Alpha");
    admit(&cfg, "bed-02", "MRN-2", "Beta");
    let db = cfg.db_path();
    let st = ward_core::Station::start(cfg).await.unwrap();
    let nurse = sign_in(&st, "nurse.ana");

    // Connected: PCD-01 of both admitted beds, with the patient, the 11073 codes and units,
    // and values equal to what the station stored from the simulator.
    let first = wait_for("PCD-01 of both beds", Duration::from_secs(30), || {
        let got = engine.received();
        let beds: std::collections::BTreeSet<_> = got
            .iter()
            .filter_map(|m| m["bed"].as_str().map(str::to_string))
            .collect();
        (beds.len() == 2).then_some(got)
    });
    let m = first.iter().find(|m| m["bed"] == "bed-01").unwrap();
    assert_eq!(m["type"], "ORU^R01^ORU_R01");
    assert!(m["profile"]
        .as_str()
        .unwrap()
        .contains("1.3.6.1.4.1.19376.1.6.1.1.1"));
    assert_eq!(
        (m["mrn"].as_str(), m["family"].as_str()),
        (Some("MRN-1"), Some("Alpha"))
    );
    let obx = m["obx"].as_array().unwrap();
    assert_eq!(obx[0]["name"], "MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS");
    let hr = obx
        .iter()
        .find(|o| o["name"] == "MDC_ECG_HEART_RATE")
        .expect("heart rate OBX");
    assert_eq!(hr["code"], "147842");
    assert_eq!(hr["unit"], "264864");
    assert_eq!(hr["device"], "sim-01");
    let spo2 = obx
        .iter()
        .find(|o| o["name"] == "MDC_PULS_OXIM_SAT_O2")
        .unwrap();
    assert_eq!(spo2["unit"], "262688");
    // The value sent is one the simulator sent and the station stored for bed 1. PCD-01
    // takes the live numeric, and the store writes in batches: wait for the row, do not
    // read once (CI failed on a value sent a moment before its batch was written).
    let sent: f64 = hr["value"].as_str().unwrap().parse().unwrap();
    let stored = || -> Vec<f64> {
        let c = rusqlite::Connection::open(&db).unwrap();
        let mut s = c
            .prepare("SELECT value FROM vitals WHERE bed = 'bed-01' AND code = 147842")
            .unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    wait_for(
        "the sent heart rate among the stored",
        Duration::from_secs(20),
        || stored().contains(&sent).then_some(()),
    );
    wait_for(
        "the alarm manager's heartbeat",
        Duration::from_secs(20),
        || {
            manager
                .received()
                .iter()
                .any(|m| m["obx"][0]["name"] == "MDC_EVT_ACTIVE")
                .then_some(())
        },
    );

    // Outage: both receivers stop for 60 s; meanwhile bed 2 desaturates and a nurse
    // acknowledges it.
    engine.stop();
    manager.stop();
    let down = std::time::Instant::now();
    let mut events = st.alarms().subscribe();
    let raised = tokio::time::timeout(Duration::from_secs(40), async {
        loop {
            let e = events.recv().await.unwrap();
            if e.kind == LogKind::Raised && e.condition == "limit:spo2_desat" {
                return e;
            }
        }
    })
    .await
    .expect("desaturation raised during the outage");
    st.alarms()
        .act(
            &nurse,
            ward_core::AlarmCommand::Acknowledge {
                id: raised.alarm_id.unwrap(),
            },
        )
        .unwrap();
    wait_for("the backlog growing", Duration::from_secs(20), || {
        let links = st.live().metrics().hl7_links;
        links
            .iter()
            .all(|l| !l.connected && l.backlog > 0)
            .then_some(())
    });
    let left = Duration::from_secs(60).saturating_sub(down.elapsed());
    tokio::time::sleep(left).await;
    engine.spawn();
    manager.spawn();
    wait_for("the backlog sent", Duration::from_secs(90), || {
        let links = st.live().metrics().hl7_links;
        links
            .iter()
            .all(|l| l.connected && l.backlog == 0)
            .then_some(())
    });
    st.shutdown().await;
    // The alarm log names the patient of the alarm's bed.
    let logged = ward_store::Store::open_read_only(&db)
        .unwrap()
        .alarm_log(Some("bed-02"), 1000)
        .unwrap()
        .into_iter()
        .find(|r| r.kind == "raised" && r.condition == "limit:spo2_desat")
        .unwrap();
    assert_eq!(
        logged.patient.as_deref(),
        Some("BETA, Test · MRN MRN-2 · F · 1960-05-05 · adult")
    );
    // So does the audit trail's acknowledgement (and so what the core receives).
    let acked: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT detail FROM audit WHERE kind = 'alarm.acknowledged' AND bed = 'bed-02'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        acked.contains("\"patient\":\"BETA, Test · MRN MRN-2"),
        "{acked}"
    );

    let n01 = assert_all_arrived_in_order(&db, "pcd01", &engine);
    let n04 = assert_all_arrived_in_order(&db, "pcd04", &manager);
    assert!(
        n01 >= 30,
        "PCD-01 every 2 s for two beds over the outage: {n01}"
    );
    // The alarm's reports: start, then the acknowledgement with the nurse's name.
    let reports: Vec<serde_json::Value> = first_receipts(&manager)
        .into_iter()
        .filter(|m| m["alarm_id"].as_str() == Some(raised.alarm_id.unwrap().to_string().as_str()))
        .collect();
    let attr = |m: &serde_json::Value, name: &str| {
        m["obx"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .map(|o| o["value"].as_str().unwrap().to_string())
    };
    let phases: Vec<(Option<String>, Option<String>)> = reports
        .iter()
        .map(|m| {
            (
                attr(m, "MDC_ATTR_EVENT_PHASE"),
                attr(m, "MDC_ATTR_ALARM_INACTIVATION_STATE"),
            )
        })
        .collect();
    assert_eq!(
        phases.first(),
        Some(&(Some("start".into()), Some("enabled".into()))),
        "{phases:?}"
    );
    let ack = reports
        .iter()
        .find(|m| {
            attr(m, "MDC_ATTR_ALARM_INACTIVATION_STATE").as_deref() == Some("alert-acknowledged")
        })
        .expect("the acknowledgement reported");
    assert_eq!(ack["obx"][0]["user"], "nurse.ana");
    assert_eq!(ack["obx"][0]["flags"], "PH~SP");
    assert_eq!(ack["mrn"], "MRN-2");
    assert_eq!(reports[0]["obx"][1]["name"], "MDC_PULS_OXIM_SAT_O2");
    // The onset also sent bed 2's vitals (PCD-01 at alarm onset).
    assert!(queued(&db, "pcd01")
        .iter()
        .any(|(cid, _, _)| cid.starts_with("st-4w-R01-") && !cid.contains("bed-")));
    assert!(n04 >= 2);
}

#[test]
fn a_station_killed_during_an_interface_outage_sends_everything_after_its_restart() {
    let work = tempfile::tempdir().unwrap();
    // The alarm manager is down from the start: its port is taken and released.
    let port = crate::support::free_port();
    let cfg = work.path().join("station.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sim]\nbeds = 2\nscenarios = [\"bed 2 desaturates to 76 % at 2 s\"]\n\
             [hl7]\npoint_of_care = \"4W\"\npcd04_to = \"127.0.0.1:{port}\"\npcd04_heartbeat_s = 2\nack_timeout_s = 2\n"
        ),
    )
    .unwrap();
    let args = ["--config", cfg.to_str().unwrap()];
    let st = Headless::start(&args);
    let db = st.db();
    let pending = wait_for("PCD-04 reports queued", Duration::from_secs(40), || {
        let q = queued(&db, "pcd04");
        (q.len() >= 2).then_some(q)
    });
    assert!(pending.iter().all(|(_, _, s)| s == "pending"));
    let dir = st.kill9();
    let mut manager = Receiver {
        child: None,
        port,
        out: work.path().join("manager.jsonl"),
        port_file: work.path().join("manager.port"),
        refuse: String::new(),
    };
    manager.spawn();
    let st = Headless::start_in(dir, &args, &[]);
    let db = st.db();
    wait_for("everything answered", Duration::from_secs(60), || {
        let q = queued(&db, "pcd04");
        (q.len() >= pending.len() && q.iter().all(|(_, _, s)| s == "acked")).then_some(())
    });
    let got: Vec<String> = first_receipts(&manager)
        .iter()
        .map(|m| m["control_id"].as_str().unwrap().to_string())
        .collect();
    for (cid, _, _) in &pending {
        assert!(
            got.contains(cid),
            "{cid} queued before the kill never arrived: {got:?}"
        );
    }
    assert!(st.stop().success());
}

#[test]
fn a_refused_message_is_kept_for_it_and_the_next_one_goes() {
    let work = tempfile::tempdir().unwrap();
    // The engine answers AE for bed-02's messages.
    let engine = Receiver::start(work.path(), "engine", "bed-02");
    let cfg = work.path().join("station.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sim]\nbeds = 2\n[hl7]\npoint_of_care = \"4W\"\npcd01_to = \"127.0.0.1:{}\"\npcd01_every_s = 1\nack_timeout_s = 2\n",
            engine.port
        ),
    )
    .unwrap();
    let st = Headless::start(&["--config", cfg.to_str().unwrap()]);
    let console = st.console_config(work.path());
    let wardwatch = |args: &[&str]| {
        Command::new(crate::support::workspace_bin("wardwatch"))
            .args(args)
            .arg("--config")
            .arg(&console)
            .output()
            .unwrap()
    };
    for (bed, mrn) in [("bed-01", "M1"), ("bed-02", "M2")] {
        let out = wardwatch(&[
            "patients", "admit", "--bed", bed, "--mrn", mrn, "--family", "Test",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_for(
        "both beds' reports answered",
        Duration::from_secs(30),
        || {
            let q = queued(&st.db(), "pcd01");
            let acked = q
                .iter()
                .filter(|(_, b, s)| b.as_deref() == Some("bed-01") && s == "acked")
                .count();
            let failed = q
                .iter()
                .filter(|(_, b, s)| b.as_deref() == Some("bed-02") && s == "failed")
                .count();
            (acked >= 2 && failed >= 2).then_some(())
        },
    );
    let out = wardwatch(&["hl7", "failed"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pcd01 bed bed-02") && text.contains(": AE"),
        "{text}"
    );
    assert!(!text.contains("bed bed-01"), "{text}");
    let counters = st.stdout.lock().unwrap().join("\n");
    assert!(counters.contains("HL7 PCD01 to 127.0.0.1:"), "{counters}");
    assert!(st.stop().success());
}
