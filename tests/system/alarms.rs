//! The alarm system on a station with no upstream at all.
//!
//! - A headless `wardwatch` process whose simulated bed 3 desaturates: the alarm log (SQLite)
//!   holds the HIGH desaturation; the tone the station really played, captured through ALSA's
//!   `file` plugin into a WAV file, has the HIGH burst (10 pulses, 698 Hz fundamental); and the
//!   OS notification went out on a private D-Bus session bus, seen by `dbus-monitor`.
//! - An in-process station: acknowledgement through the core API is logged with the user;
//!   refusals carry stable codes; edited limits survive a restart.

use crate::support::*;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use ward_alarm::tone::{analysis, spec};
use ward_alarm::Priority;

/// A private session bus with no service directories (nothing gets activated), and a
/// `dbus-monitor` on it writing what it sees to a file.
pub(crate) struct Bus {
    daemon: std::process::Child,
    monitor: std::process::Child,
    pub(crate) address: String,
    log: std::path::PathBuf,
}

impl Bus {
    pub(crate) fn start(dir: &Path) -> Self {
        let conf = dir.join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={}</listen>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>"#,
                dir.display()
            ),
        )
        .unwrap();
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian dbus-daemon) must be installed; make test installs it");
        let mut out = daemon.stdout.take().unwrap();
        let mut address = String::new();
        let mut buf = [0u8; 1];
        while out.read(&mut buf).unwrap() == 1 && buf[0] != b'\n' {
            address.push(buf[0] as char);
        }
        let log = dir.join("dbus-monitor.txt");
        let monitor = Command::new("dbus-monitor")
            .args(["--address", &address])
            .arg("interface='org.freedesktop.Notifications'")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-monitor");
        // The monitor is ready once it has registered (its NameAcquired signal arrives first).
        wait_for("dbus-monitor to attach", Duration::from_secs(10), || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|t| t.contains("NameAcquired"))
        });
        Self {
            daemon,
            monitor,
            address,
            log,
        }
    }
    pub(crate) fn seen(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.monitor.kill();
        let _ = self.daemon.kill();
        let _ = self.monitor.wait();
        let _ = self.daemon.wait();
    }
}

/// Mono samples (first channel, as f32) of a 16-bit PCM WAV as ALSA's file plugin writes it.
pub(crate) fn read_wav(path: &Path) -> (u32, Vec<f32>) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[0..4], b"RIFF", "not a WAV file");
    let mut i = 12;
    let (mut rate, mut channels, mut bits) = (0u32, 0usize, 0u16);
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let len = u32::from_le_bytes(b[i + 4..i + 8].try_into().unwrap()) as usize;
        let body = i + 8;
        if id == b"fmt " {
            channels = u16::from_le_bytes([b[body + 2], b[body + 3]]) as usize;
            rate = u32::from_le_bytes(b[body + 4..body + 8].try_into().unwrap());
            bits = u16::from_le_bytes([b[body + 14], b[body + 15]]);
        } else if id == b"data" {
            assert_eq!(bits, 16, "capture format");
            // The length may be stale if the writer was cut off; read to the end.
            let data = &b[body..];
            let frame = 2 * channels;
            let samples = data
                .chunks_exact(frame)
                .map(|f| i16::from_le_bytes([f[0], f[1]]) as f32 / 32768.0)
                .collect();
            return (rate, samples);
        }
        i = body + len + (len & 1);
    }
    panic!("no data chunk in {}", path.display());
}

/// An ALSA configuration (in `dir`) whose default output is captured into the WAV file `wav`
/// (ALSA's `file` plugin in front of the null sink): what a process really played.
pub(crate) fn capture_config(dir: &Path, wav: &Path) -> std::path::PathBuf {
    let asound = dir.join("asound.conf");
    std::fs::write(
        &asound,
        format!(
            "</usr/share/alsa/alsa.conf>\npcm.!default {{\n type plug\n slave {{\n  pcm {{ type file slave.pcm \"null\" file \"{}\" format \"wav\" }}\n  format S16_LE\n  rate 48000\n  channels 2\n }}\n}}\n",
            wav.display()
        ),
    )
    .unwrap();
    asound
}

/// The first run of 10 pulses of `spec`'s length within one burst's time (a HIGH-pattern
/// burst, as played), and the fundamental measured in its first pulse.
pub(crate) fn find_burst<'a>(
    pcm: &[f32],
    rate: u32,
    pulses: &'a [analysis::Pulse],
    spec: &ward_alarm::tone::BurstSpec,
) -> (&'a [analysis::Pulse], f32) {
    let is_pulse =
        |p: &analysis::Pulse| ((p.end_s - p.start_s) * 1000.0 - spec.pulse_ms).abs() < 15.0;
    let run = pulses
        .windows(10)
        .find(|w| {
            w.iter().all(is_pulse) && w[9].end_s - w[0].start_s < spec.burst_ms() / 1000.0 + 0.05
        })
        .unwrap_or_else(|| {
            panic!(
                "no 10-pulse burst among {} pulses: {:?}",
                pulses.len(),
                &pulses[..pulses.len().min(30)]
            )
        });
    let a = (run[0].start_s * rate as f32) as usize + rate as usize / 100;
    let b = (run[0].end_s * rate as f32) as usize - rate as usize / 100;
    (run, analysis::dominant(&pcm[a..b], rate, 150, 1000))
}

/// A station with one bed (7) whose monitor (mon-07) raises a HIGH device alarm and ends it
/// (with mosquitto_pub): the alarm latches.
fn station_with_latched_device_alarm(cfg: &Path) -> Headless {
    std::fs::write(
        cfg,
        "[[beds]]\nid = \"bed-07\"\nlabel = \"Bed 7\"\ndevice = \"mon-07\"\n",
    )
    .unwrap();
    let st = Headless::start(&["--config", cfg.to_str().unwrap()]);
    for state in ["active", "ended"] {
        let payload = format!(
            r#"{{"id":"a-17","condition":"Asystole","priority":"high","state":"{state}"}}"#
        );
        let topic = "ward/v1/dev/mon-07/alarm";
        let out = mosquitto_pub(
            st.addr,
            &["-V", "5", "-q", "1", "-t", topic, "-m", &payload],
        );
        assert!(out.status.success(), "{out:?}");
    }
    st
}

fn alarm_rows(db: &Path, bed: &str) -> Vec<ward_store::AlarmLogRow> {
    ward_store::Store::open_read_only(db)
        .and_then(|s| s.alarm_log(Some(bed), 100))
        .unwrap_or_default()
}

fn station_config(dir: &Path) -> std::path::PathBuf {
    // Four beds, all simulated, so the only alarms are the scenario's.
    let mut text = String::from("[sim]\nbeds = 4\nscenarios = [\"bed 3 desaturates to 76 % at 2 s\"]\n[store]\nbatch_ms = 50\n");
    for i in 1..=4 {
        text +=
            &format!("[[beds]]\nid = \"bed-0{i}\"\nlabel = \"Bed {i}\"\ndevice = \"sim-0{i}\"\n");
    }
    let path = dir.join("alarms.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn desaturation_is_sounded_notified_and_logged_without_upstream() {
    let work = tempfile::tempdir().unwrap();
    let bus = Bus::start(work.path());
    let wav = work.path().join("played.wav");
    let asound = capture_config(work.path(), &wav);
    let cfg = station_config(work.path());
    let st = Headless::start_env(
        &["--config", cfg.to_str().unwrap()],
        &[
            ("ALSA_CONFIG_PATH", asound.display().to_string()),
            ("DBUS_SESSION_BUS_ADDRESS", bus.address.clone()),
        ],
    );
    let db = st.db();
    // SpO2 starts near 99 and falls to 76 %: past 90 (MEDIUM after 10 s) and 80 (HIGH
    // desaturation after 5 s).
    let raised = wait_for(
        "the desaturation alarm in the log",
        Duration::from_secs(60),
        || {
            alarm_rows(&db, "bed-03")
                .into_iter()
                .find(|r| r.kind == "raised" && r.condition == "limit:spo2_desat")
        },
    );
    assert_eq!(raised.priority.as_deref(), Some("high"));
    assert_eq!(raised.label, "Desaturation");
    assert_eq!(raised.limit, Some(80.0));
    assert!(raised.value.unwrap() < 80.0, "{raised:?}");
    assert!(raised.user.is_none());
    // No alarm elsewhere: the other beds are simulated normals.
    for bed in ["bed-01", "bed-02", "bed-04"] {
        assert!(
            alarm_rows(&db, bed).is_empty(),
            "{bed}: {:?}",
            alarm_rows(&db, bed)
        );
    }
    let notified = wait_for(
        "the Notify call on the bus",
        Duration::from_secs(20),
        || {
            let seen = bus.seen();
            (seen.contains("member=Notify") && seen.contains("Bed 3: Desaturation")).then_some(seen)
        },
    );
    assert!(
        notified.contains("HIGH alarm at Bed 3: Desaturation"),
        "{notified}"
    );
    assert!(notified.contains("Wardwatch"));
    // Let at least one whole HIGH burst play (one burst is about 3 s).
    let raised_at = std::time::Instant::now();
    wait_for("a full HIGH burst played", Duration::from_secs(30), || {
        (raised_at.elapsed() > Duration::from_secs(4)).then_some(())
    });
    let status = st.stop();
    assert!(status.success(), "{status:?}");

    let (rate, pcm) = read_wav(&wav);
    assert!(rate >= 8000, "capture rate {rate}");
    let pulses = analysis::pulses(&pcm, rate);
    // Find a run of 10 pulses of the HIGH length: the HIGH burst, as played.
    let high = spec(Priority::High);
    let (run, f0) = find_burst(&pcm, rate, &pulses, &high);
    let gap = |a: usize| (run[a + 1].start_s - run[a].end_s) * 1000.0;
    assert!(
        (350.0..=1300.0).contains(&gap(4)),
        "pause 5-6: {} ms",
        gap(4)
    );
    for i in [0, 1, 3, 5, 6, 8] {
        assert!(
            (50.0..=125.0).contains(&gap(i)),
            "spacing after pulse {}: {} ms",
            i + 1,
            gap(i)
        );
    }
    assert!(
        (f0 - high.fundamental_hz).abs() <= 8.0,
        "played fundamental {f0} Hz"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgement_through_the_core_api_is_logged_with_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let path = station_config(dir.path());
    let mut over = toml::Table::new();
    let mut station = toml::Table::new();
    station.insert("data_dir".into(), dir.path().display().to_string().into());
    over.insert("station".into(), station.into());
    let mut broker = toml::Table::new();
    broker.insert("listen".into(), "127.0.0.1:0".into());
    over.insert("broker".into(), broker.into());
    let cfg = ward_core::Config::load(Some(&path), over).unwrap();
    use ward_model::Role;
    add_user(&cfg, "nurse.ana", Role::Nurse, None);
    add_user(&cfg, "nurse.ben", Role::Nurse, None);
    add_user(&cfg, "charge.cho", Role::ChargeNurse, None);
    let st = ward_core::Station::start(cfg.clone()).await.unwrap();
    let ana = sign_in(&st, "nurse.ana");
    let ben = sign_in(&st, "nurse.ben");
    let cho = sign_in(&st, "charge.cho");
    st.staff()
        .assign_beds(&cho, "nurse.ana", &["bed-03".into()])
        .unwrap();
    let mut events = st.alarms().subscribe();
    let raised = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let e = events.recv().await.unwrap();
            if e.kind == ward_alarm::LogKind::Raised && e.condition == "limit:spo2_desat" {
                return e;
            }
        }
    })
    .await
    .expect("desaturation raised within 60 s");
    let id = raised.alarm_id.unwrap();
    // The annunciator plays the HIGH signal: under `make test` into ALSA's null sink.
    assert!(
        std::env::var_os("ALSA_CONFIG_PATH").is_some(),
        "run under `make test`, which points ALSA_CONFIG_PATH at tests/fixtures/asound-null.conf"
    );
    wait_for("the HIGH tone playing", Duration::from_secs(10), || {
        let a = st.alarms().snapshot().audio?;
        (a.ok && a.playing == Some(Priority::High) && a.bursts_high >= 1).then_some(())
    });

    // Refusals name what was wrong, with a stable code for the window.
    use ward_core::AlarmCommand::{Acknowledge, SetRules};
    let e = st.alarms().act("", Acknowledge { id }).unwrap_err();
    assert_eq!(e.code(), "not_signed_in", "{e}");
    let e = st.alarms().act(&ben, Acknowledge { id }).unwrap_err();
    assert_eq!(e.code(), "not_assigned", "{e}");
    assert!(
        e.to_string().contains("bed bed-03 is not assigned to you"),
        "{e}"
    );
    let e = st
        .alarms()
        .act(&ana, Acknowledge { id: 999_999 })
        .unwrap_err();
    assert_eq!(e.code(), "unknown_alarm", "{e}");

    assert_eq!(st.alarms().act(&ana, Acknowledge { id }).unwrap(), 1);
    let snap = st.alarms().snapshot();
    let a = snap
        .alarms
        .iter()
        .find(|a| a.id == id)
        .expect("still active");
    assert!(
        matches!(&a.inactivation, ward_alarm::Inactivation::Acknowledged { by, .. } if by == "nurse.ana"),
        "{a:?}"
    );
    assert!(!a.audible());
    // Its sound stops; the SpO2 low (MEDIUM) alarm of the same desaturation still sounds.
    wait_for(
        "the tone to drop to MEDIUM",
        Duration::from_secs(20),
        || {
            let a = st.alarms().snapshot().audio?;
            (a.playing == Some(Priority::Medium)).then_some(())
        },
    );
    let e = st.alarms().act(&cho, Acknowledge { id }).unwrap_err();
    assert_eq!(e.code(), "already_acknowledged");
    let logged = wait_for(
        "the acknowledgement in the log",
        Duration::from_secs(10),
        || {
            st.review()
                .alarm_history(Some("bed-03"), 50)
                .unwrap()
                .into_iter()
                .find(|r| r.kind == "acknowledged" && r.alarm_id == Some(id))
        },
    );
    assert_eq!(logged.user.as_deref(), Some("nurse.ana"));
    assert_eq!(logged.label, "Desaturation");

    // Limits edited through the core survive a restart.
    let mut rules = st.alarms().limits("bed-02").unwrap();
    rules
        .iter_mut()
        .find(|r| r.id == "hr_high")
        .unwrap()
        .threshold = 111.0;
    // A nurse cannot change limits; the charge nurse can.
    let e = st
        .alarms()
        .act(
            &ana,
            SetRules {
                bed: "bed-03".into(),
                rules: rules.clone(),
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), "not_permitted", "{e}");
    st.alarms()
        .act(
            &cho,
            SetRules {
                bed: "bed-02".into(),
                rules: rules.clone(),
            },
        )
        .unwrap();
    let mut bad = rules.clone();
    bad[0].threshold = f64::INFINITY;
    let e = st
        .alarms()
        .act(
            &cho,
            SetRules {
                bed: "bed-02".into(),
                rules: bad,
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), "invalid_rule", "{e}");
    // The desaturation took well over one self-check period (5 s) to develop.
    let m = st.alarms().snapshot().metrics;
    assert!(m.self_checks >= 1 && m.self_check_failures == 0, "{m:?}");
    st.shutdown().await;
    let st = ward_core::Station::start(cfg).await.unwrap();
    assert_eq!(st.alarms().limits("bed-02").unwrap(), rules);
    let history = st.review().alarm_history(Some("bed-02"), 10).unwrap();
    assert!(history
        .iter()
        .any(|r| r.kind == "limits_changed" && r.user.as_deref() == Some("charge.cho")));
    st.shutdown().await;
}

#[test]
fn no_audio_device_is_a_technical_alarm_on_screen_and_in_the_log() {
    let work = tempfile::tempdir().unwrap();
    // An ALSA configuration whose default device cannot open: the station has no sound.
    let asound = work.path().join("asound.conf");
    std::fs::write(
        &asound,
        "</usr/share/alsa/alsa.conf>\npcm.!default { type hw card 99 }\n",
    )
    .unwrap();
    let cfg = station_config(work.path());
    let st = Headless::start_env(
        &["--config", cfg.to_str().unwrap()],
        &[("ALSA_CONFIG_PATH", asound.display().to_string())],
    );
    let db = st.db();
    let row = wait_for(
        "the audio alarm in the log",
        Duration::from_secs(30),
        || {
            ward_store::Store::open_read_only(&db)
                .and_then(|s| s.alarm_log(None, 100))
                .unwrap_or_default()
                .into_iter()
                .find(|r| r.condition == "tech:audio_unavailable" && r.kind == "raised")
        },
    );
    assert_eq!(row.bed, None, "a station alarm, not a bed's");
    assert_eq!(row.priority.as_deref(), Some("high"));
    assert!(row.detail.is_some(), "the reason is logged: {row:?}");
    // The headless screen shows it too.
    wait_for(
        "the audio alarm on the summary",
        Duration::from_secs(20),
        || {
            let out = st.stdout.lock().unwrap().join("\n");
            (out.contains("ALARM HIGH   Station  Alarm audio unavailable")
                && out.contains("alarm audio: UNAVAILABLE"))
            .then_some(())
        },
    );
    assert!(st.stop().success());
}

#[test]
fn a_device_alarm_from_mosquitto_pub_is_mirrored_at_its_bed() {
    let work = tempfile::tempdir().unwrap();
    let st = station_with_latched_device_alarm(&work.path().join("mon.toml"));
    let db = st.db();
    let rows = wait_for("raised and latched", Duration::from_secs(20), || {
        let r: Vec<_> = alarm_rows(&db, "bed-07")
            .into_iter()
            .filter(|r| r.condition == "device:a-17")
            .collect();
        (r.len() >= 2).then_some(r)
    });
    // Newest first: the HIGH alarm latched when the monitor ended it, after being raised.
    assert_eq!(rows[1].kind, "raised");
    assert_eq!(rows[1].label, "Asystole (monitor)");
    assert_eq!(rows[1].priority.as_deref(), Some("high"));
    assert_eq!(rows[0].kind, "latched");
    assert!(st.stop().success());
}

/// A HIGH alarm latched (the monitor ended it, nobody acknowledged it) before a `kill -9` is
/// active again after the restart, numbered anew, with the restart in the log; and again
/// after an orderly stop and start.
#[test]
fn a_latched_alarm_is_active_again_after_a_kill_and_a_restart() {
    let work = tempfile::tempdir().unwrap();
    let cfg_path = work.path().join("mon.toml");
    let st = station_with_latched_device_alarm(&cfg_path);
    let cfg = cfg_path.to_str().unwrap();
    let db = st.db();
    let latched = wait_for("the alarm latched", Duration::from_secs(20), || {
        alarm_rows(&db, "bed-07")
            .into_iter()
            .find(|r| r.kind == "latched")
    });
    // A first start is no restart.
    let first_run = ward_store::Store::open_read_only(&db)
        .and_then(|s| s.alarm_log(None, 50))
        .unwrap();
    assert!(
        !first_run.iter().any(|r| r.kind == "restarted"),
        "{first_run:?}"
    );
    let dir = st.kill9();

    let restored_rows = |db: &Path| -> Vec<ward_store::AlarmLogRow> {
        alarm_rows(db, "bed-07")
            .into_iter()
            .filter(|r| r.kind == "restored")
            .collect()
    };
    let st = Headless::start_in(dir, &["--config", cfg], &[]);
    let db = st.db();
    let restored = wait_for("the alarm restored", Duration::from_secs(20), || {
        restored_rows(&db).into_iter().next()
    });
    assert_eq!(restored.condition, "device:a-17");
    assert_eq!(restored.priority.as_deref(), Some("high"));
    assert!(
        restored.detail.as_deref().unwrap_or("").contains("latched"),
        "{restored:?}"
    );
    assert_ne!(
        restored.alarm_id, latched.alarm_id,
        "numbered after the log"
    );
    let station_rows = ward_store::Store::open_read_only(&db)
        .and_then(|s| s.alarm_log(None, 50))
        .unwrap();
    let restart = station_rows
        .iter()
        .find(|r| r.kind == "restarted")
        .expect("the restart in the log");
    assert!(
        restart.label.starts_with("Station restarted at "),
        "{restart:?}"
    );
    assert!(restart.label.ends_with("; 1 alarm restored"), "{restart:?}");
    // Nothing ended it: it is still the bed's alarm.
    assert!(
        !alarm_rows(&db, "bed-07")
            .iter()
            .any(|r| r.kind == "ended" || r.kind == "reset"),
        "{:?}",
        alarm_rows(&db, "bed-07")
    );

    // An orderly stop and start restores it again (under a newer id).
    let (status, dir) = st.stop_keep();
    assert!(status.success(), "{status:?}");
    let st = Headless::start_in(dir, &["--config", cfg], &[]);
    let db = st.db();
    let again = wait_for("restored twice", Duration::from_secs(20), || {
        let r = restored_rows(&db);
        (r.len() == 2).then_some(r)
    });
    assert!(again[0].alarm_id > again[1].alarm_id, "{again:?}");
    assert!(st.stop().success());
}
