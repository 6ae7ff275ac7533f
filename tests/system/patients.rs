//! Patients: the hospital's ADT feed sent by PyPI's `hl7` package (hl7.client.MLLPClient) to
//! a headless station, and the console's `wardwatch patients` while it runs. Checked where
//! people and IT see it: the station's summary lines, the census and limits in its SQLite
//! file, and the audit trail.

use crate::support::{wait_for, workspace_bin, Headless};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn python() -> String {
    std::env::var("WARDWATCH_PYTHON")
        .expect("WARDWATCH_PYTHON must name a Python with hl7 (make test sets up .venv)")
}

/// A station config with the ADT feed on a port the OS picks, unit "4W", room 401 bed A
/// mapped to bed-01 (other rooms match by bed id).
fn adt_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("station.toml");
    std::fs::write(
        &path,
        "[hl7]\nadt_listen = \"127.0.0.1:0\"\npoint_of_care = \"4W\"\nfacility = \"4W\"\n\
         [hl7.beds]\n\"401/A\" = \"bed-01\"\n",
    )
    .unwrap();
    path
}

fn adt_addr(st: &Headless) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(st.dir.path().join("runtime.json")).unwrap())
            .unwrap();
    v["hl7_adt"]
        .as_str()
        .expect("hl7_adt in runtime.json")
        .to_string()
}

/// Sends messages (blank-line separated) and returns each answer.
fn send(addr: &str, messages: &str) -> Vec<serde_json::Value> {
    send_with(addr, messages, &[])
}

fn send_with(addr: &str, messages: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut child = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/hl7_send.py"))
        .args([host, port])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(messages.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn adt(trigger: &str, id: &str, pid: &str, pv1: &str) -> String {
    format!(
        "MSH|^~\\&|EPIC|CITYHOSP|WARDWATCH|4W|20261204101500||ADT^{trigger}^ADT_A01|{id}|P|2.5\n\
         EVN|{trigger}|20261204101500\n{pid}\n{pv1}\n\n"
    )
}

const JANE: &str = "PID|1||123456^^^CITYHOSP^MR||DOE^JANE||19840229|F";
const JANET: &str = "PID|1||123456^^^CITYHOSP^MR||DOE^JANET||19840229|F";

fn census(db: &Path) -> Vec<(String, Option<String>, String)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT bed, patient, source FROM census ORDER BY bed")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn audit_kinds(db: &Path, prefix: &str) -> Vec<(String, String, String)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT kind, actor, detail FROM audit WHERE kind LIKE ?1 ORDER BY seq")
        .unwrap();
    st.query_map([format!("{prefix}%")], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn bed_rules(db: &Path, bed: &str) -> Option<Vec<ward_alarm::rules::LimitRule>> {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(
        "SELECT rules_json FROM bed_rules WHERE bed = ?1",
        [bed],
        |r| r.get::<_, String>(0),
    )
    .ok()
    .map(|j| serde_json::from_str(&j).unwrap())
}

/// The newest summary line of a bed ("Bed 1    ..."), once it contains `want`.
fn bed_line(st: &Headless, label: &str, want: &str) -> String {
    wait_for(
        &format!("{label} showing {want:?}"),
        Duration::from_secs(20),
        || {
            st.stdout
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|l| l.starts_with(&format!("{label} ")))
                .filter(|l| l.contains(want))
                .cloned()
        },
    )
}

#[test]
fn the_adt_feed_admits_updates_transfers_and_discharges_and_answers_every_message() {
    let work = tempfile::tempdir().unwrap();
    let cfg = adt_config(work.path());
    let st = Headless::start(&["--config", cfg.to_str().unwrap()]);
    let addr = adt_addr(&st);
    let db = st.db();
    // A baby born ten days ago: neonatal by age.
    let baby_dob = {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            / 86_400
            - 10;
        let out = Command::new("date")
            .args(["-u", "-d", &format!("@{}", d * 86_400), "+%Y%m%d"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let baby = format!("PID|1||777^^^CITYHOSP^MR||SMALL^BABY||{baby_dob}|M");
    let first = [
        adt("A01", "C1", JANE, "PV1|1|I|4W^401^A||||||||||||||||V-77"),
        adt("A08", "C2", JANET, "PV1|1|I|4W^401^A"),
        adt("A01", "C3", &baby, "PV1|1|I|4W^410^bed-02"),
        // A resend of C1 (same sender and control id): answered as before, not applied again.
        adt("A01", "C1", JANE, "PV1|1|I|4W^401^A"),
        // Errors and refusals.
        adt(
            "A01",
            "C5",
            "PID|1||888^^^CITYHOSP^MR||LOST^LEO||19700101|M",
            "PV1|1|I|4W^999^Z",
        ),
        adt(
            "A01",
            "C6",
            "PID|1||889^^^CITYHOSP^MR||ELSE^WHERE||19700101|M",
            "PV1|1|I|5E^1^bed-05",
        ),
        adt("A99", "C7", JANE, "PV1|1|I|4W^401^A"),
        adt(
            "A01",
            "C8",
            "PID|1||890^^^CITYHOSP^MR||BAD^DATE||1970-01-01|M",
            "PV1|1|I|4W^1^bed-06",
        ),
        "RAW:this is not HL7\n\n".to_string(),
    ]
    .concat();
    let answers = send(&addr, &first);
    let codes: Vec<(&str, &str)> = answers
        .iter()
        .map(|a| {
            (
                a["code"].as_str().unwrap(),
                a["control_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("AA", "C1"),
            ("AA", "C2"),
            ("AA", "C3"),
            ("AA", "C1"),
            ("AE", "C5"),
            ("AA", "C6"),
            ("AR", "C7"),
            ("AR", "C8"),
            ("AR", ""),
        ],
        "{answers:#?}"
    );
    assert_eq!(answers[0]["ack_type"], "ACK^A01^ACK");
    assert_eq!(
        answers[3], answers[0],
        "the resend gets the first answer again"
    );
    assert!(answers[4]["text"]
        .as_str()
        .unwrap()
        .contains("PV1-3 4W^999^Z is not a bed of this station"));
    assert_eq!(
        answers[4]["err"], answers[4]["text"],
        "the reason is in ERR-8 too"
    );
    assert!(answers[5]["text"]
        .as_str()
        .unwrap()
        .contains("not this unit; ignored"));
    assert!(answers[6]["text"]
        .as_str()
        .unwrap()
        .contains("ADT event \"A99\""));
    assert!(answers[7]["text"].as_str().unwrap().contains("PID-7"));
    assert!(answers[8]["text"]
        .as_str()
        .unwrap()
        .contains("does not start with MSH"));

    // The tiles (the headless summary) carry the patient line; an empty bed says so.
    bed_line(
        &st,
        "Bed 1",
        "DOE, JANET · MRN 123456 · F · 1984-02-29 · adult",
    );
    bed_line(&st, "Bed 2", "SMALL, BABY · MRN 777 · M");
    assert!(bed_line(&st, "Bed 2", "neonatal").contains("neonatal"));
    bed_line(&st, "Bed 3", "no patient admitted");
    // The neonate's bed has the neonatal default limits, set in the feed's name.
    let want = ward_alarm::rules::defaults(ward_model::Category::Neonatal);
    wait_for("neonatal limits at bed-02", Duration::from_secs(10), || {
        (bed_rules(&db, "bed-02").as_ref() == Some(&want)).then_some(())
    });
    let c = census(&db);
    assert_eq!(c.len(), 2, "{c:?}");
    assert!(c.iter().all(|(_, _, source)| source == "adt"));

    let second = [
        adt("A02", "D1", JANET, "PV1|1|I|4W^402^bed-03|||4W^401^A"),
        adt("A03", "D2", JANET, "PV1|1|I|4W^402^bed-03"),
        adt("A11", "D3", &baby, "PV1|1|I|4W^410^bed-02"),
        adt("A03", "D4", JANET, "PV1|1|I|4W^402^bed-03"),
    ]
    .concat();
    let answers = send(&addr, &second);
    let codes: Vec<&str> = answers
        .iter()
        .map(|a| a["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["AA", "AA", "AA", "AE"], "{answers:#?}");
    assert!(answers[3]["text"]
        .as_str()
        .unwrap()
        .contains("MRN 123456 is not admitted here"));
    bed_line(&st, "Bed 1", "no patient admitted");
    bed_line(&st, "Bed 2", "no patient admitted");
    assert!(census(&db).iter().all(|(_, p, _)| p.is_none()));

    // The trail: each census change, and every message with its answer.
    let changes: Vec<String> = audit_kinds(&db, "patient.")
        .into_iter()
        .map(|(k, actor, _)| format!("{k} by {actor}"))
        .collect();
    assert_eq!(
        changes,
        [
            "patient.admitted by adt:EPIC",
            "patient.updated by adt:EPIC",
            "patient.admitted by adt:EPIC",
            "patient.transferred by adt:EPIC",
            "patient.discharged by adt:EPIC",
            "patient.discharged by adt:EPIC",
        ]
    );
    let answered: Vec<String> = audit_kinds(&db, "hl7.adt")
        .into_iter()
        .map(|(_, _, d)| {
            let d: serde_json::Value = serde_json::from_str(&d).unwrap();
            format!(
                "{}:{}",
                d["control_id"].as_str().unwrap_or("-"),
                d["answer"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        answered,
        [
            "C1:AA",
            "C2:AA",
            "C3:AA",
            "C1:duplicate",
            "C5:AE",
            "C6:AA",
            "C7:AR",
            "C8:AR",
            "-:AR",
            "D1:AA",
            "D2:AA",
            "D3:AA",
            "D4:AE"
        ]
    );
    let (status, _dir) = st.stop_keep();
    assert!(status.success());
    // The trail still verifies.
    let out = Command::new(workspace_bin("wardwatch"))
        .args(["audit", "verify", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_console_admits_to_a_running_station_and_refuses_what_would_overwrite_someone() {
    let work = tempfile::tempdir().unwrap();
    let st = Headless::start(&[]);
    let cfg = st.console_config(work.path());
    let patients = |args: &[&str]| {
        Command::new(workspace_bin("wardwatch"))
            .arg("patients")
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap()
    };
    let out = patients(&[
        "admit",
        "--bed",
        "bed-04",
        "--mrn",
        "P-9",
        "--authority",
        "CITYHOSP",
        "--family",
        "Poe",
        "--given",
        "Ada",
        "--birth-date",
        "2015-06-01",
        "--sex",
        "F",
        "--category",
        "pediatric",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bed_line(
        &st,
        "Bed 4",
        "POE, Ada · MRN P-9 · F · 2015-06-01 · pediatric",
    );
    let want = ward_alarm::rules::defaults(ward_model::Category::Pediatric);
    wait_for(
        "pediatric limits at bed-04",
        Duration::from_secs(10),
        || (bed_rules(&st.db(), "bed-04").as_ref() == Some(&want)).then_some(()),
    );
    // Overwriting someone is refused, with the reason; a bad field is named.
    let out = patients(&[
        "admit", "--bed", "bed-04", "--mrn", "Q-1", "--family", "Quinn",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bed bed-04 has POE, Ada"), "{err}");
    let out = patients(&[
        "admit",
        "--bed",
        "bed-05",
        "--mrn",
        "Q-1",
        "--family",
        "Quinn",
        "--birth-date",
        "2015-02-30",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("birth_date \"2015-02-30\""));
    let out = patients(&["transfer", "--from", "bed-04", "--to", "bed-05"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bed_line(&st, "Bed 5", "POE, Ada");
    bed_line(&st, "Bed 4", "no patient admitted");
    let out = patients(&["list", "--json"]);
    let listed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let bed5 = listed.iter().find(|b| b["bed"] == "bed-05").unwrap();
    assert_eq!(bed5["admission"]["patient"]["mrn"], "P-9", "{listed:?}");
    assert_eq!(bed5["admission"]["source"], "manual");
    let bed4 = listed.iter().find(|b| b["bed"] == "bed-04").unwrap();
    assert!(bed4["admission"].is_null(), "{listed:?}");
    let trail = audit_kinds(&st.db(), "patient.");
    assert_eq!(trail.len(), 2);
    assert!(trail[0].1.starts_with("console"), "{trail:?}");
    assert!(st.stop().success());
}

#[test]
fn the_adt_feed_over_tls_answers_and_a_plain_connection_is_refused() {
    let work = tempfile::tempdir().unwrap();
    crate::support::make_certs(work.path());
    let cfg = work.path().join("station.toml");
    std::fs::write(
        &cfg,
        format!(
            "[hl7]\nadt_listen = \"127.0.0.1:0\"\nadt_tls_cert = {:?}\nadt_tls_key = {:?}\n",
            work.path().join("server.pem").display().to_string(),
            work.path().join("server.key").display().to_string()
        ),
    )
    .unwrap();
    let st = Headless::start(&["--config", cfg.to_str().unwrap()]);
    let addr = adt_addr(&st);
    let ca = work.path().join("ca.pem");
    let answers = send_with(
        &addr,
        &adt("A01", "T1", JANE, "PV1|1|I|4W^401^bed-01"),
        &["--tls-ca", ca.to_str().unwrap()],
    );
    assert_eq!(answers[0]["code"], "AA", "{answers:?}");
    bed_line(&st, "Bed 1", "DOE, JANE · MRN 123456");
    // A sender without TLS gets no answer and is counted.
    let mut plain = std::net::TcpStream::connect(&addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    std::io::Write::write_all(
        &mut plain,
        b"\x0bMSH|^~\\&|X|Y|Z|W|1||ADT^A01|P1|P|2.5\r\x1c\r",
    )
    .unwrap();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut plain, &mut buf).unwrap_or(0);
    assert!(!buf[..n].contains(&b'M'), "no HL7 answer over plain TCP");
    wait_for("the refusal counted", Duration::from_secs(20), || {
        st.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("adt_tls_refused"))
            .then_some(())
    });
    assert!(st.stop().success());
}
