//! The alarm system cannot fail silently: a station killed with -9, or hung with SIGSTOP, is
//! caught by its sentinel (`wardwatch sentinel`, a process of its own), which sounds its
//! alarm-system-failure signal (captured through ALSA's file plugin and measured), sends an
//! OS notification (a private D-Bus bus, seen by dbus-monitor) and logs why; the signal ends
//! once its minimum time has passed and the station is back (hung) or a person confirmed it
//! (`wardwatch sentinel confirm`, killed). The station restarts a sentinel
//! that dies, with a technical alarm and an audit event while it does.

use crate::alarms::{capture_config, find_burst, read_wav, Bus};
use crate::support::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use ward_alarm::tone::{analysis, failure_spec};

/// A config with short sentinel times: heartbeats missed for 2 s are a failure, and the
/// signal sounds at least 4 s (120 s in a real station).
fn config(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("station.toml");
    std::fs::write(
        &p,
        "[station]\nname = \"4 West\"\n[sentinel]\nheartbeat_timeout_s = 2\nmin_signal_s = 4\nstartup_grace_s = 60\n",
    )
    .unwrap();
    p
}

fn sentinel_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("sentinel.log")).unwrap_or_default()
}

fn wait_log(dir: &Path, what: &str, needle: &str, after: usize) -> String {
    wait_for(what, Duration::from_secs(30), || {
        let log = sentinel_log(dir);
        log.get(after..)
            .filter(|tail| tail.contains(needle))
            .map(String::from)
    })
}

fn sentinel_pid(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join("sentinel.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["pid"].as_u64().map(|p| p as u32)
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// `wardwatch sentinel confirm` as a person at the console would run it.
fn confirm(dir: &Path, user: &str) -> std::process::Output {
    Command::new(workspace_bin("wardwatch"))
        .args(["sentinel", "confirm", "--data-dir"])
        .arg(dir)
        .args(["--user", user])
        .output()
        .unwrap()
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// A sentinel started on its own, as a service manager would: the station finds it through
/// sentinel.json instead of starting one.
struct OwnSentinel(Child);

impl Drop for OwnSentinel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn killed_station_is_sounded_by_its_sentinel_until_a_person_confirms() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bus = Bus::start(work.path());
    let wav = work.path().join("sentinel.wav");
    let asound = capture_config(work.path(), &wav);
    let log = std::fs::File::create(dir.path().join("sentinel.log")).unwrap();
    let sentinel = OwnSentinel(
        Command::new(workspace_bin("wardwatch"))
            .args(["sentinel", "run", "--data-dir"])
            .arg(dir.path())
            .args(["--station", "4 West", "--heartbeat-timeout-s", "2"])
            .args(["--min-signal-s", "4", "--startup-grace-s", "60"])
            .env("ALSA_CONFIG_PATH", &asound)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_for("sentinel.json", Duration::from_secs(20), || {
        sentinel_pid(dir.path())
    });
    let cfg = config(work.path());
    let st = Headless::start_with_sentinel(dir, &["--config", cfg.to_str().unwrap()], &[]);
    wait_log(st.dir.path(), "the station's hello", "station connected", 0);
    std::thread::sleep(Duration::from_secs(2));
    let before = sentinel_log(st.dir.path()).len();
    assert!(
        !sentinel_log(st.dir.path()).contains("FAILURE"),
        "{}",
        sentinel_log(st.dir.path())
    );

    // Nothing to confirm while the station is watched: refused, with the reason.
    let refused = confirm(st.dir.path(), "charge.cho");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("nothing to confirm"),
        "{refused:?}"
    );

    let dir = st.kill9();
    let failed = wait_log(
        dir.path(),
        "the failure in the sentinel's log",
        "ALARM SYSTEM FAILURE",
        before,
    );
    assert!(failed.contains("without saying goodbye"), "{failed}");
    assert!(failed.contains("4 West"), "{failed}");
    let notified = wait_for("the Notify call", Duration::from_secs(20), || {
        let seen = bus.seen();
        seen.contains("alarm system failure").then_some(seen)
    });
    assert!(notified.contains("member=Notify"), "{notified}");
    // A person confirms: logged; the signal still runs its minimum time (4 s here, at least
    // one whole burst), then stops though the station is still down.
    let confirmed = confirm(dir.path(), "charge.cho");
    assert!(confirmed.status.success(), "{confirmed:?}");
    let ended = wait_log(
        dir.path(),
        "the signal's end",
        "failure signal ended",
        before,
    );
    assert!(ended.contains("failure confirmed"), "{ended}");
    assert!(
        ended.contains("confirmed by charge.cho; the station is still down"),
        "{ended}"
    );

    // The station comes back: watched again, and that outage sounds no more.
    let mark = sentinel_log(dir.path()).len();
    let st = Headless::start_with_sentinel(dir, &["--config", cfg.to_str().unwrap()], &[]);
    let back = wait_log(
        st.dir.path(),
        "the station's hello again",
        "station connected",
        mark,
    );
    assert!(!back.contains("FAILURE"), "{back}");

    // The capture holds the failure signal: HIGH's 10 pulses at the sentinel's own pitch.
    let (rate, pcm) = read_wav(&wav);
    let pulses = analysis::pulses(&pcm, rate);
    let f = failure_spec();
    let (_, f0) = find_burst(&pcm, rate, &pulses, &f);
    assert!(
        (f0 - f.fundamental_hz).abs() <= 8.0,
        "played fundamental {f0} Hz"
    );

    // An orderly stop: the sentinel logs it and stops by itself, silently.
    let mark = sentinel_log(st.dir.path()).len();
    let (status, dir) = st.stop_keep();
    assert!(status.success(), "{status:?}");
    let stopped = wait_log(dir.path(), "the orderly stop", "stopped in order", mark);
    assert!(!stopped.contains("FAILURE"), "{stopped}");
    let mut sentinel = sentinel;
    let exit = wait_for("the sentinel to exit", Duration::from_secs(10), || {
        sentinel.0.try_wait().unwrap()
    });
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn hung_station_is_caught_and_a_killed_sentinel_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let st = Headless::start_with_sentinel(
        tempfile::tempdir().unwrap(),
        &["--config", cfg.to_str().unwrap()],
        &[],
    );
    let d = st.dir.path().to_path_buf();
    wait_log(&d, "the station's hello", "station connected", 0);
    let first = sentinel_pid(&d).unwrap();

    // Hung: the process lives and its connection stays open, but nothing beats.
    let mark = sentinel_log(&d).len();
    signal(st.child.id(), "STOP");
    let failed = wait_log(&d, "the hang caught", "ALARM SYSTEM FAILURE", mark);
    signal(st.child.id(), "CONT");
    assert!(failed.contains("not responding"), "{failed}");
    let ended = wait_log(&d, "the signal's end", "failure signal ended", mark);
    assert!(ended.contains("beating again"), "{ended}");

    // The sentinel killed: the station starts another, says so while it has none, and the
    // trail has it.
    signal(first, "KILL");
    let second = wait_for("a new sentinel", Duration::from_secs(20), || {
        sentinel_pid(&d).filter(|p| *p != first && process_exists(*p))
    });
    wait_for("the station's log", Duration::from_secs(20), || {
        let e = st.stderr_text();
        e.contains("the sentinel's link broke").then_some(())
    });
    let (status, dir) = st.stop_keep();
    assert!(status.success(), "{status:?}");
    let rows = ward_store::Store::open_read_only(&dir.path().join("wardwatch.sqlite"))
        .and_then(|s| s.alarm_log(None, 200))
        .unwrap();
    let down: Vec<_> = rows
        .iter()
        .filter(|r| r.condition == "tech:sentinel_down")
        .map(|r| r.kind.as_str())
        .collect();
    assert!(
        down.contains(&"raised") && down.contains(&"ended"),
        "{down:?}"
    );
    let audit = Command::new(workspace_bin("wardwatch"))
        .args(["audit", "export", "--db"])
        .arg(dir.path().join("wardwatch.sqlite"))
        .output()
        .unwrap();
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.contains("sentinel.lost"), "{audit}");
    assert_eq!(audit.matches("sentinel.started").count(), 2, "{audit}");
    // The orderly stop: the second sentinel exits by itself.
    wait_for(
        "the second sentinel to exit",
        Duration::from_secs(10),
        || (!process_exists(second)).then_some(()),
    );
}

/// Under a service manager (systemd's sd_notify protocol, here a datagram socket of the
/// test's own): READY once the station is up, WATCHDOG pings from its alarm loop while it
/// runs, none while it is stopped (SIGSTOP), again after, and STOPPING at an orderly stop.
#[test]
fn service_manager_gets_ready_watchdog_pings_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let recv_all = |sock: &UnixDatagram| -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = sock.recv(&mut buf) {
            out.extend(String::from_utf8_lossy(&buf[..n]).lines().map(String::from));
        }
        out
    };
    let st = Headless::start_env(
        &[],
        &[
            ("NOTIFY_SOCKET", path.display().to_string()),
            // A 400 ms watchdog: the station pings every 200 ms.
            ("WATCHDOG_USEC", "400000".into()),
        ],
    );
    let mut seen = Vec::new();
    wait_for("READY and watchdog pings", Duration::from_secs(20), || {
        seen.extend(recv_all(&sock));
        (seen.iter().any(|l| l == "READY=1")
            && seen.iter().filter(|l| *l == "WATCHDOG=1").count() >= 3)
            .then_some(())
    });
    signal(st.child.id(), "STOP");
    // Whatever was in flight when it stopped; then silence.
    std::thread::sleep(Duration::from_millis(300));
    recv_all(&sock);
    std::thread::sleep(Duration::from_secs(1));
    let while_stopped = recv_all(&sock);
    signal(st.child.id(), "CONT");
    assert!(while_stopped.is_empty(), "{while_stopped:?}");
    wait_for("pings again", Duration::from_secs(20), || {
        recv_all(&sock)
            .iter()
            .any(|l| l == "WATCHDOG=1")
            .then_some(())
    });
    assert!(st.stop().success());
    let after = recv_all(&sock);
    assert!(after.iter().any(|l| l == "STOPPING=1"), "{after:?}");
}
