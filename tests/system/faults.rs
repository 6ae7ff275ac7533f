//! Faults a ward will meet (issue 20). The damaged-database drill: a broker store with a
//! ruined header is found at the next start, moved aside (never deleted), replaced, and said
//! in a HIGH technical alarm; a station database with a page overwritten in its middle passes
//! the cheap start-up check, is found by the full check that runs after start-up (a HIGH
//! alarm, monitoring goes on), and is moved aside and replaced at the start after; `wardwatch store salvage` then copies the users, the alarm log
//! and the audit chain (as far as it verifies) back from the damaged file.

use crate::support::*;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn sqlite(db: &Path, sql: &str) -> String {
    sqlite3(db, &[], sql)
}

fn overwrite(path: &Path, at: u64, len: usize) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&vec![0xA5; len]).unwrap();
}

fn damaged_files(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with(&format!("{name}.damaged-"))
                && !n.ends_with("-wal")
                && !n.ends_with("-shm")
        })
        .collect()
}

#[test]
fn a_damaged_database_is_moved_aside_replaced_alarmed_and_salvaged() {
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("ward.toml");
    std::fs::write(
        &cfg,
        "[sim]\nbeds = 2\nscenarios = [\"bed 2 desaturates to 76 % at 1 s\"]\n[store]\nbatch_ms = 50\n\
         [[beds]]\nid = \"bed-01\"\nlabel = \"Bed 1\"\ndevice = \"sim-01\"\n\
         [[beds]]\nid = \"bed-02\"\nlabel = \"Bed 2\"\ndevice = \"sim-02\"\n",
    )
    .unwrap();
    let st = Headless::start(&["--config", cfg.to_str().unwrap()]);
    let console = st.console_config(work.path());
    // A user, made by IT at the console, and a desaturation in the alarm log.
    let mut add = Command::new(workspace_bin("wardwatch"))
        .args([
            "users",
            "add",
            "--username",
            "ana",
            "--role",
            "nurse",
            "--config",
        ])
        .arg(&console)
        .env("USER", "it")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"ana-password-1\n")
        .unwrap();
    assert!(add.wait().unwrap().success());
    let db = st.db();
    wait_for(
        "the desaturation in the log",
        Duration::from_secs(60),
        || {
            let n = sqlite(&db, "SELECT COUNT(*) FROM alarm_log WHERE kind = 'raised' AND condition = 'limit:spo2_desat'");
            (n != "0").then_some(())
        },
    );
    let (status, data) = st.stop_keep();
    assert!(status.success());
    // Everything in the main file, then a bad sector's worth of garbage in a leaf page in
    // the middle of the biggest table (a page start-up never reads), and a broker store
    // whose header is gone.
    sqlite(&db_of(data.path()), "PRAGMA wal_checkpoint(TRUNCATE)");
    let leaf: u64 = sqlite(
        &db_of(data.path()),
        "WITH leaves AS (SELECT name, pageno, ROW_NUMBER() OVER (PARTITION BY name ORDER BY pageno) AS i, \
                COUNT(*) OVER (PARTITION BY name) AS n FROM dbstat WHERE pagetype = 'leaf' \
                AND name IN ('vitals', 'wave_chunks')) \
         SELECT pageno FROM leaves WHERE i = n / 2 AND n >= 3 ORDER BY n DESC LIMIT 1",
    )
    .parse()
    .expect("a table with three leaf pages or more");
    overwrite(&db_of(data.path()), (leaf - 1) * 4096 + 8, 4088);
    overwrite(&data.path().join("broker.sqlite"), 0, 100);

    // The broker store, checked in full before start, is replaced at once; the station
    // database passes the start-up check and monitors, and the full check after start-up
    // finds the damage and says so.
    let st = Headless::start_in(data, &["--config", cfg.to_str().unwrap()], &[]);
    let dir = st.dir.path().to_path_buf();
    assert_eq!(damaged_files(&dir, "broker.sqlite").len(), 1);
    assert!(damaged_files(&dir, "wardwatch.sqlite").is_empty());
    let db = st.db();
    let alarm = wait_for("the broker store alarm", Duration::from_secs(20), || {
        let d = sqlite(&db, "SELECT priority || ' ' || detail FROM alarm_log WHERE kind = 'raised' AND condition = 'tech:database_replaced'");
        (!d.is_empty()).then_some(d)
    });
    assert!(alarm.starts_with("high "), "{alarm}");
    assert!(alarm.contains("broker store"), "{alarm}");
    let found = wait_for("the full check's alarm", Duration::from_secs(60), || {
        let d = sqlite(&db, "SELECT priority || ' ' || detail FROM alarm_log WHERE kind = 'raised' AND condition = 'tech:database_damaged'");
        (!d.is_empty()).then_some(d)
    });
    assert!(found.starts_with("high "), "{found}");
    assert!(found.contains(&db.display().to_string()), "{found}");
    assert!(found.contains("the next start moves it aside"), "{found}");
    assert!(dir.join("wardwatch.sqlite.check-failed").exists());
    let audited = sqlite(
        &db,
        "SELECT COUNT(*) FROM audit WHERE kind = 'store.damage_found'",
    );
    assert_eq!(audited, "1");
    wait_for(
        "vitals still stored in the damaged file",
        Duration::from_secs(30),
        || stored_vital(&db, "sim-01", 147_842),
    );
    let (status, data) = st.stop_keep();
    assert!(status.success());
    // What salvage can bring back: both runs' rows (the damage is in neither table).
    let alarms_before = sqlite(&db_of(data.path()), "SELECT COUNT(*) FROM alarm_log");
    let audit_before: u64 = sqlite(&db_of(data.path()), "SELECT COUNT(*) FROM audit")
        .parse()
        .unwrap();

    // The next start moves it aside without checking it again, and starts on a new one.
    let st = Headless::start_in(data, &["--config", cfg.to_str().unwrap()], &[]);
    let dir = st.dir.path().to_path_buf();
    let kept = damaged_files(&dir, "wardwatch.sqlite");
    assert_eq!(
        kept.len(),
        1,
        "the damaged database kept beside the new one"
    );
    assert!(!dir.join("wardwatch.sqlite.check-failed").exists());
    let db = st.db();
    let alarm = wait_for("the database alarm", Duration::from_secs(20), || {
        let d = sqlite(&db, "SELECT priority || ' ' || detail FROM alarm_log WHERE kind = 'raised' AND condition = 'tech:database_replaced'");
        (!d.is_empty()).then_some(d)
    });
    assert!(alarm.starts_with("high "), "{alarm}");
    assert!(alarm.contains(&kept[0].display().to_string()), "{alarm}");
    assert!(
        alarm.contains("found by the full check of the last run"),
        "{alarm}"
    );
    // And monitors on: new values stored, the desaturation raised again.
    wait_for(
        "new vitals in the new database",
        Duration::from_secs(30),
        || stored_vital(&db, "sim-01", 147_842),
    );
    assert_eq!(
        sqlite(&db, "SELECT COUNT(*) FROM users WHERE username = 'ana'"),
        "0"
    );

    // Salvage, while the station runs.
    let out = Command::new(workspace_bin("wardwatch"))
        .args(["store", "salvage", "--config"])
        .arg(&console)
        .arg("--from")
        .arg(&kept[0])
        .env("USER", "it")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("users            1 rows copied"), "{text}");
    assert_eq!(
        sqlite(&db, "SELECT role FROM users WHERE username = 'ana'"),
        "nurse"
    );
    // The old alarm log is back (beside the new run's rows), the desaturation with it.
    let raised_old = sqlite(
        &db,
        "SELECT COUNT(*) FROM alarm_log WHERE condition = 'limit:spo2_desat' AND kind = 'raised'",
    );
    assert!(raised_old.parse::<u32>().unwrap() >= 1);
    let copied_alarms: u64 = text
        .lines()
        .find(|l| l.starts_with("alarm_log"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        copied_alarms > 0 && copied_alarms <= alarms_before.parse().unwrap(),
        "{text}"
    );
    // The audit chain: a verified prefix of the old trail, seq 1..n with no gap, kept
    // beside the new file's own chain, which still verifies.
    let (n, min, max) = {
        let r = sqlite(
            &db,
            "SELECT COUNT(*), MIN(seq), MAX(seq) FROM audit_salvaged",
        );
        let v: Vec<u64> = r.split('|').map(|x| x.parse().unwrap()).collect();
        (v[0], v[1], v[2])
    };
    assert!(
        n >= 1 && min == 1 && max == n && n <= audit_before,
        "{n} {min} {max} of {audit_before}"
    );
    assert!(
        text.contains(&format!("audit            {n} events copied")),
        "{text}"
    );
    let verify = Command::new(workspace_bin("wardwatch"))
        .args(["audit", "verify", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    // Once per file.
    let again = Command::new(workspace_bin("wardwatch"))
        .args(["store", "salvage", "--config"])
        .arg(&console)
        .arg("--from")
        .arg(&kept[0])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already salvaged"));
}

fn db_of(dir: &Path) -> std::path::PathBuf {
    dir.join("wardwatch.sqlite")
}

/// A size-limited tmpfs mounted for the test (as root: these machines run tests as root),
/// unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mb: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "the disk-full drill mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    /// Fills what is left with a file, to the last byte.
    fn fill(&self) {
        let filler = self.path().join("filler");
        for bs in ["1M", "4k", "512"] {
            let _ = Command::new("dd")
                .args([
                    "if=/dev/zero",
                    "oflag=append",
                    "conv=notrunc",
                    &format!("bs={bs}"),
                ])
                .arg(format!("of={}", filler.display()))
                .output();
        }
    }
    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_keeps_every_alarm_counts_the_gap_and_writing_resumes_without_a_restart() {
    let work = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(48);
    let data = disk.path().join("data");
    let cfg = work.path().join("ward.toml");
    std::fs::write(
        &cfg,
        format!(
            "[station]\ndata_dir = {:?}\n[sim]\nbeds = 2\nscenarios = [\"bed 2 desaturates to 76 % at 12 s\"]\n\
             [store]\nbatch_ms = 50\nhold_when_failing_s = 2\n\
             [[beds]]\nid = \"bed-01\"\nlabel = \"Bed 1\"\ndevice = \"sim-01\"\n\
             [[beds]]\nid = \"bed-02\"\nlabel = \"Bed 2\"\ndevice = \"sim-02\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let metrics = work.path().join("metrics.json");
    let dir = tempfile::TempDir::new_in(disk.path()).unwrap();
    let mut st = Headless::start_in(
        dir,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--metrics-out",
            metrics.to_str().unwrap(),
        ],
        &[],
    );
    let db = st.db();
    wait_for("vitals stored", Duration::from_secs(30), || {
        stored_vital(&db, "sim-01", 147_842)
    });
    let stdout = st.stdout.clone();
    let said = |what: &str| {
        stdout
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(40)
            .any(|l| l.contains(what))
    };

    // The disk fills up before bed 2 desaturates.
    disk.fill();
    let full_from = ward_core::now_ms();
    wait_for("the storage alarm", Duration::from_secs(30), || {
        said("Station storage failing").then_some(())
    });
    let m: serde_json::Value =
        wait_for("the reason in the metrics", Duration::from_secs(10), || {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&metrics).ok()?).ok()?;
            (v["store"]["failing"] == true).then_some(v)
        });
    let reason = m["store"]["last_error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("full"), "{reason}");
    // Still monitoring and alarming from memory.
    wait_for(
        "the desaturation while the disk is full",
        Duration::from_secs(60),
        || said("Desaturation").then_some(()),
    );
    // Past the hold, waveforms and vitals are dropped and counted.
    wait_for("dropped rows counted", Duration::from_secs(30), || {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&metrics).ok()?).ok()?;
        (v["store"]["dropped_after_errors"].as_u64()? > 0).then_some(())
    });
    let full_to = ward_core::now_ms();
    assert!(st.alive());

    // Space returns: everything held is written, with no restart.
    disk.free();
    let pid = st.child.id();
    wait_for("the gap recorded", Duration::from_secs(30), || {
        let gaps = ward_store::Store::open_read_only(&db)
            .ok()?
            .gaps_between(0, i64::MAX)
            .ok()?;
        (!gaps.is_empty()).then_some(())
    });
    let s = ward_store::Store::open_read_only(&db).unwrap();
    let rows = s.alarm_log(None, 1000).unwrap();
    let raised = |cond: &str| {
        rows.iter()
            .find(|r| r.kind == "raised" && r.condition == cond)
            .cloned()
    };
    let desat =
        raised("limit:spo2_desat").expect("the desaturation raised while full is in the log");
    assert!(
        desat.t_ms >= full_from && desat.t_ms <= full_to,
        "{desat:?}"
    );
    let storage = raised("tech:storage_failing").expect("the storage alarm is in the log");
    assert!(storage.detail.unwrap_or_default().contains("full"));
    let gaps = s.gaps_between(0, i64::MAX).unwrap();
    assert_eq!(gaps.len(), 1);
    let g = &gaps[0];
    assert!(g.vitals > 0 && g.waves > 0, "{g:?}");
    assert!(g.reason.contains("full"), "{g:?}");
    assert!(
        g.from_ms >= full_from - 5_000 && g.to_ms <= full_to + 5_000,
        "{g:?} in {full_from}..{full_to}"
    );
    // Review says so for a window over the gap.
    let w = ward_core::review::wave(&s, "bed-01", 131_330, g.from_ms, g.to_ms, 100).unwrap();
    assert_eq!(w.gaps, gaps);
    // The audit trail was held too: the storage alarm's event is in the chain, which verifies.
    let audit = s.audit_all().unwrap();
    assert!(audit
        .iter()
        .any(|e| e.kind == "alarm.raised" && e.detail.contains("spo2_desat")));
    assert!(s.verify_audit().unwrap().ok());
    drop(s);
    // Writing goes on: new values after the disk came back, by the same process.
    let after = ward_core::now_ms();
    wait_for(
        "vitals written after space returned",
        Duration::from_secs(30),
        || stored_vital(&db, "sim-01", 147_842).filter(|v| v.ts_ms > after),
    );
    assert!(st.alive());
    assert_eq!(st.child.id(), pid);
    assert!(st.stop().success());
}

/// A config or password file damaged on disk (binary garbage where text was, a file cut in
/// the middle of a line) stops the start with an error naming the file and what is wrong,
/// and nothing rewrites it: IT finds the file as the fault left it.
#[test]
fn a_damaged_config_or_password_file_is_named_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |cfg: &Path| {
        Command::new(workspace_bin("wardwatch"))
            .args(["run", "--duration", "1", "--no-sentinel", "--config"])
            .arg(cfg)
            .env(FORBID_ENV, "1")
            .output()
            .unwrap()
    };
    // A config cut in the middle of a line, then garbage bytes after it.
    let cfg = dir.path().join("station.toml");
    let mut bytes = format!(
        "[station]\ndata_dir = {:?}\n[broker]\nlisten = \"127.0.0.1:",
        data.display().to_string()
    )
    .into_bytes();
    bytes.extend_from_slice(&[0xA5, 0x00, 0xFF, 0x13]);
    std::fs::write(&cfg, &bytes).unwrap();
    let out = run(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&cfg.display().to_string()), "{err}");
    assert_eq!(
        std::fs::read(&cfg).unwrap(),
        bytes,
        "the damaged config is left as it was"
    );

    // A password file with a ruined line.
    let pw = dir.path().join("passwords");
    let pw_bytes: Vec<u8> = b"sim-01:$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA\n\xA5\xA5\x00garbage-without-a-colon\n".to_vec();
    std::fs::write(&pw, &pw_bytes).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[station]\ndata_dir = {:?}\n[broker]\nlisten = \"127.0.0.1:0\"\npassword_file = {:?}\n",
            data.display().to_string(),
            pw.display().to_string()
        ),
    )
    .unwrap();
    let out = run(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("broker.password_file") && err.contains(&pw.display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&pw).unwrap(),
        pw_bytes,
        "the damaged password file is left as it was"
    );
}

/// The broker alone (`wardwatch broker serve`) with its store on a small file system that
/// fills up, and a persistent session that needs QoS 1 messages kept: while the store cannot
/// write, such a publish is refused, never acknowledged (MQTT 5: 0x83; MQTT 3.1.1: the
/// connection closed unacknowledged), counted and logged; when space returns, the same
/// publish is acknowledged and delivered, with no restart. Then the broker is killed (-9) and
/// started again on the same store: every publish that was acknowledged, before, during and
/// after the full disk, is delivered to the session, so none was acknowledged and not kept
/// (the batch whose write first failed included).
#[test]
fn a_full_broker_store_refuses_what_it_cannot_keep_before_acknowledging_it() {
    let disk = SmallDisk::mount(8);
    let work = tempfile::tempdir().unwrap();
    let store = disk.path().join("broker.sqlite");
    let serve = || {
        let ready = work.path().join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let broker = Command::new(workspace_bin("wardwatch"))
            .args([
                "broker",
                "serve",
                "--allow-anonymous",
                "--listen",
                "127.0.0.1:0",
                "--store",
            ])
            .arg(&store)
            .arg("--ready-file")
            .arg(&ready)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let addr: std::net::SocketAddr = wait_for("the broker", Duration::from_secs(20), || {
            let t = std::fs::read_to_string(&ready).ok()?;
            let v: serde_json::Value = serde_json::from_str(&t).ok()?;
            v["broker"].as_str()?.parse().ok()
        });
        (broker, addr.port().to_string())
    };
    let (broker, port) = serve();
    // The persistent session "archive" at QoS 1 (mosquitto_sub, clean session off).
    let archive = |port: &str, extra: &[&str]| {
        Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                port,
                "-i",
                "archive",
                "-c",
                "-q",
                "1",
            ])
            .args(["-t", "records/#"])
            .args(extra)
            .output()
            .unwrap()
    };
    // Subscribed, then gone: its messages must be kept on disk.
    let sub = archive(&port, &["-E"]);
    assert!(
        sub.status.success(),
        "{}",
        String::from_utf8_lossy(&sub.stderr)
    );
    let paho = |version: &str, payload: &str| {
        Command::new(
            std::env::var("WARDWATCH_PYTHON").expect("WARDWATCH_PYTHON (make test sets it)"),
        )
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/paho_publish.py"
        ))
        .args([
            "127.0.0.1",
            port.as_str(),
            version,
            "1",
            "records/a",
            payload,
        ])
        .output()
        .unwrap()
    };
    let mut acked = Vec::new();
    let ok = paho("5", "before");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    acked.push("before".to_string());

    disk.fill();
    // Each publish after the disk filled is either acknowledged (a write can still fit in
    // the write-ahead log's old frames) and must then survive the kill below, or refused;
    // the write that first fails is one of them.
    let mut refusal = None;
    for i in 0..40 {
        let payload = format!("m{i:02}-{}", "x".repeat(4000));
        let out = paho("5", &payload);
        match out.status.code() {
            Some(0) => acked.push(payload),
            Some(2) => {
                refusal = Some(String::from_utf8_lossy(&out.stdout).into_owned());
                break;
            }
            _ => panic!(
                "publish {i} neither acknowledged nor refused: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
    let refusal = refusal.expect("no publish refused on a full disk");
    assert!(refusal.contains("refused 0x83"), "{refusal}");
    // MQTT 3.1.1 has no negative acknowledgement: no PUBACK, the connection is closed.
    let v4 = paho("3", "three");
    assert!(
        !v4.status.success(),
        "a 3.1.1 publish was acknowledged while the store is full"
    );

    disk.free();
    wait_for(
        "publishes acknowledged again",
        Duration::from_secs(20),
        || paho("5", "after").status.success().then_some(()),
    );
    acked.push("after".to_string());
    let _ = Command::new("kill")
        .args(["-KILL", &broker.id().to_string()])
        .status();
    let out = broker.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("the broker store cannot write"), "{log}");

    // Started again on the same store: the session gets what was acknowledged, all of it.
    let (mut broker, port) = serve();
    let got = archive(&port, &["-W", "3"]);
    let text = String::from_utf8_lossy(&got.stdout);
    let lines: Vec<&str> = text.lines().collect();
    for a in &acked {
        assert!(
            lines.contains(&a.as_str()),
            "acknowledged but not delivered after the restart: {}",
            &a[..a.len().min(12)]
        );
    }
    assert!(!lines.contains(&"three"), "{text}");
    let refused_payloads = lines
        .iter()
        .filter(|l| !acked.iter().any(|a| a == *l))
        .count();
    assert_eq!(refused_payloads, 0, "a refused publish was delivered");
    let _ = broker.kill();
    let _ = broker.wait();
}
