//! `wardwatch bench soak` (`make soak HOURS=…`): the whole station for hours, with faults.
//!
//! A headless station process (`wardwatch run`) with 63 simulated beds streaming into it from
//! this process, bed 1's SpO2 wavering around its limit (an alarm every few minutes), a probe
//! monitor on the last bed, and its store-and-forward pointed at a Mosquitto "hospital core"
//! on loopback.
//!
//! The probe and the scripted nurse: once a minute, at a seeded second, the probe publishes a
//! systolic NIBP of 200 mmHg (its "NIBP sys high" alarm has no condition delay) and the soak
//! watches the alarm log for the alarm raised; the alarm latency is the row's time minus the
//! publish time (one clock: the same machine). A nurse at a peer station (`st-soak-peer`, a
//! client of the core that keeps its liveness message as a station does) then acknowledges it:
//! the acknowledgement event goes through the core as a real peer's does, and the soak
//! watches for the "acknowledged" row; then a normal NIBP ends the condition. A headless
//! station has no screen to acknowledge at; the peer path is the one a ward uses between its
//! stations. While the core is down, or less than 30 s back, the nurse does not acknowledge
//! (a peer cannot reach this station then; the alarm ends with its cause, as a medium alarm
//! does). A chaos loop, seeded,
//! once a minute does one or more of: a device that connects with a last will, sends, and
//! drops its socket without DISCONNECT (the will goes out); a burst of bad payloads (not JSON,
//! wrong shape); and every 20 minutes (`--outage-every`) the core is stopped for a minute and
//! started again.
//!
//! Every minute: the station's CPU share and RSS (/proc), open files (/proc/PID/fd), database
//! size (main file and WAL), the store writer's queue (records queued but not written), the
//! sync backlog, the alarms raised so far, and the minute's probe latencies; into a CSV and a
//! PNG chart. At the end the
//! station is stopped cleanly and the run fails on: any waveform sample the simulator sent and
//! the store does not have, any message the broker dropped or the store queue refused, a bad
//! payload not counted, a sync backlog left after the core came back, an RSS or open-file
//! count that grows from the run's second quarter to its last, a 30-minute stretch with no
//! alarm from the wavering bed, a probe alarm not raised within 30 s, or an acknowledgement
//! not applied within 30 s.

use crate::ward_bench::{clock_ticks, cpu_seconds, rss_mb, start_station, status_mb};
use anyhow::{bail, Context};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use ward_export::soak_render::{SoakChart, SoakSample};

pub struct Options {
    pub beds: usize,
    pub minutes: f64,
    pub seed: u64,
    /// Minutes between the hospital core's one-minute outages.
    pub outage_every: u64,
    /// The ring buffer's cap (store.max_db_mb). A ward's station runs at its cap for most
    /// of its life (72 h of 64 beds fill the default); a soak with the default would end
    /// long before it, so the soak caps the store low enough to reach it early and spend
    /// most of the run evicting as it writes. Full disclosure (waveforms and raw vitals) is
    /// kept for an hour, so the time bound reaches its steady state too: with the default
    /// 72 h, raw vitals (about 2.4 MB a minute at 64 beds, evicted only after every
    /// waveform, by the store's policy) filled a 256 MB cap by minute 103 of a 2.3 h run and
    /// every waveform row after that went at the next batch, before the soak counted it.
    /// The cap must hold an hour of raw vitals (about 150 MB) and a waveform window.
    pub max_db_mb: u64,
    pub csv: Option<PathBuf>,
    pub chart: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct Minute {
    pub s: SoakSample,
    pub store_lag: u64,
    /// Anonymous (heap) and file-backed resident memory: a rise in the first is the
    /// station's own memory, in the second pages of the program and mapped files.
    pub rss_anon_mb: f64,
    pub rss_file_mb: f64,
    /// Rows the store had evicted to keep under its cap, so far.
    pub evicted: u64,
    pub sync_backlog: i64,
    pub alarms_raised: i64,
    pub core_up: bool,
}

/// One minute's probe: what was measured, or what went wrong.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeOutcome {
    /// Value published to alarm raised; `None`: not raised within [`PROBE_WAIT`].
    pub alarm_ms: Option<i64>,
    /// Whether the nurse acknowledged (the core was up long enough).
    pub ack_sent: bool,
    /// Acknowledgement published at the peer to applied here; `None` if not sent or not
    /// applied within [`PROBE_WAIT`].
    pub ack_ms: Option<i64>,
}

#[derive(Debug, Default)]
pub struct SoakResult {
    pub beds: usize,
    pub seconds: f64,
    pub minutes: Vec<Minute>,
    pub samples_sent: u64,
    /// Samples written to the store, counted as they arrive (the oldest are evicted for the
    /// cap during the run, so the end's table alone would not hold them all).
    pub samples_stored: u64,
    pub max_db_mb: u64,
    /// The first minute the store evicted rows for its cap.
    pub cap_reached_minute: Option<f64>,
    pub messages_dropped: u64,
    pub queue_full: u64,
    pub bad_sent: u64,
    pub bad_counted: u64,
    pub wills: u64,
    pub offline_events: i64,
    pub outages: u64,
    pub sync_backlog_end: i64,
    pub probes: Vec<ProbeOutcome>,
    pub failures: Vec<String>,
}

/// The peer station whose scripted nurse acknowledges the probe's alarms.
const PEER: &str = "st-soak-peer";
const NURSE: &str = "nurse.soak";
const PROBE_CONDITION: &str = "limit:nibp_sys_high";
/// How long the soak waits for a probe alarm or an acknowledgement before it is a miss.
pub const PROBE_WAIT: Duration = Duration::from_secs(30);

/// Tasks stopped when their owner is dropped.
struct Aborted(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Aborted {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// A client that keeps reconnecting (rumqttc connects again at the next poll after an
/// error), so the peer rides out the core's outages. The task polls its event loop until
/// aborted.
fn lasting_client(
    id: &str,
    addr: SocketAddr,
) -> (rumqttc::AsyncClient, tokio::task::JoinHandle<()>) {
    let mut o = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(10));
    let (client, mut ev) = rumqttc::AsyncClient::new(o, 64);
    let pump = tokio::spawn(async move {
        loop {
            if ev.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    (client, pump)
}

/// The probe monitor: a heart rate every second (so the bed is not "device silent") and the
/// NIBP values the soak asks for, from one client, at QoS 1.
struct ProbeDevice {
    client: rumqttc::AsyncClient,
    _tasks: Aborted,
    device: String,
}

impl ProbeDevice {
    fn start(addr: SocketAddr, device: &str) -> Self {
        use rumqttc::QoS;
        let (client, pump) = lasting_client(device, addr);
        let (c, topic) = (client.clone(), format!("ward/v1/dev/{device}/vitals"));
        let beat = tokio::spawn(async move {
            loop {
                let body = format!(
                    r#"{{"obs":[{{"code":{},"value":72,"unit":{}}}]}}"#,
                    ward_model::codes::MDC_ECG_HEART_RATE,
                    ward_model::codes::UNIT_BPM
                );
                let _ = c.publish(&topic, QoS::AtLeastOnce, false, body).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Self {
            client,
            _tasks: Aborted(vec![pump, beat]),
            device: device.to_string(),
        }
    }

    async fn nibp_sys(&self, value: f64) -> anyhow::Result<()> {
        let body = format!(
            r#"{{"obs":[{{"code":{},"value":{value},"unit":{}}}]}}"#,
            ward_model::codes::MDC_PRESS_BLD_NONINV_SYS,
            ward_model::codes::UNIT_MMHG
        );
        self.client
            .publish(
                format!("ward/v1/dev/{}/vitals", self.device),
                rumqttc::QoS::AtLeastOnce,
                false,
                body,
            )
            .await?;
        Ok(())
    }
}

/// The peer station as the core sees it: its retained liveness message, refreshed every
/// 30 s (and so set again after the core restarts empty), and the acknowledgement events its
/// nurse makes, on the topics a real station uses.
struct PeerNurse {
    client: rumqttc::AsyncClient,
    _tasks: Aborted,
    seq: u64,
}

impl PeerNurse {
    fn start(core_port: u16) -> Self {
        use rumqttc::QoS;
        let (client, pump) = lasting_client(PEER, SocketAddr::from(([127, 0, 0, 1], core_port)));
        let c = client.clone();
        let beat = tokio::spawn(async move {
            loop {
                // ward_sync::liveness::Alive, written out: the soak talks to the core as any
                // station would, through its wire format.
                let alive = serde_json::json!({
                    "station": PEER, "name": "Soak peer", "state": "up",
                    "t_ms": ward_core::now_ms(),
                });
                let topic = format!("wardwatch/v1/station/{PEER}/alive");
                let _ = c
                    .publish(topic, QoS::AtLeastOnce, true, alive.to_string())
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        });
        Self {
            client,
            _tasks: Aborted(vec![pump, beat]),
            seq: 0,
        }
    }

    /// The nurse acknowledges `condition` at `bed`, as the peer station publishes it.
    async fn acknowledge(&mut self, bed: &str, condition: &str, t_ms: i64) -> anyhow::Result<()> {
        self.seq += 1;
        let detail = serde_json::json!({ "t_ms": t_ms, "bed": bed, "condition": condition });
        let event = serde_json::json!({
            "origin": PEER, "seq": self.seq, "event_id": format!("{PEER}:{}", self.seq),
            "t_ms": t_ms, "actor": NURSE, "kind": "alarm.acknowledged", "bed": bed,
            "detail": detail.to_string(), "prev_hash": "", "hash": "",
        });
        self.client
            .publish(
                format!("wardwatch/v1/station/{PEER}/events"),
                rumqttc::QoS::AtLeastOnce,
                false,
                event.to_string(),
            )
            .await?;
        Ok(())
    }
}

/// The first alarm-log row of `kind` for the probe's condition at `bed` after row `after`
/// (alarm log row id), as (row id, alarm id, time); polled every 10 ms up to [`PROBE_WAIT`].
async fn wait_row(
    db: &Path,
    kind: &str,
    bed: &str,
    after: i64,
    alarm_id: Option<i64>,
) -> Option<(i64, i64, i64)> {
    let until = Instant::now() + PROBE_WAIT;
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    let _ = conn.busy_timeout(Duration::from_secs(1));
    while Instant::now() < until {
        let row = conn
            .query_row(
                "SELECT id, alarm_id, t_ms FROM alarm_log WHERE kind = ?1 AND bed = ?2 \
                 AND condition = ?3 AND id > ?4 AND (?5 IS NULL OR alarm_id = ?5) ORDER BY id LIMIT 1",
                rusqlite::params![kind, bed, PROBE_CONDITION, after, alarm_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .ok();
        if row.is_some() {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// One probe: the alarm raised (latency), the nurse's acknowledgement applied if `ack`
/// (latency), then the condition ended. `last_row` moves past what this probe read.
async fn probe_once(
    db: &Path,
    bed: &str,
    device: &ProbeDevice,
    nurse: &mut PeerNurse,
    ack: bool,
    last_row: &mut i64,
) -> anyhow::Result<ProbeOutcome> {
    let mut out = ProbeOutcome::default();
    let t0 = ward_core::now_ms();
    device.nibp_sys(200.0).await?;
    if let Some((row, alarm, t)) = wait_row(db, "raised", bed, *last_row, None).await {
        *last_row = row;
        out.alarm_ms = Some(t - t0);
        if ack {
            // A nurse's reaction time; the latency is counted from the publish.
            tokio::time::sleep(Duration::from_secs(2)).await;
            out.ack_sent = true;
            let t1 = ward_core::now_ms();
            nurse.acknowledge(bed, PROBE_CONDITION, t1).await?;
            if let Some((row, _, t)) = wait_row(db, "acknowledged", bed, row, Some(alarm)).await {
                *last_row = row;
                out.ack_ms = Some(t - t1);
            }
        }
    }
    device.nibp_sys(120.0).await?;
    Ok(out)
}

/// A small seeded generator (xorshift): the chaos is the same for the same seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_core(dir: &Path, port: u16) -> anyhow::Result<Child> {
    let conf = dir.join("core.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )?;
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start mosquitto (the hospital core stand-in)")?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("mosquitto did not listen on {port}")
}

/// A child process killed (and reaped) when dropped, so an error part-way through the soak
/// leaves no station or Mosquitto running behind it.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn open_files(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

fn file_mb(p: &Path) -> f64 {
    std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1_048_576.0)
}

/// A device that comes, sends, and goes without a DISCONNECT: its will says it is offline.
async fn dropping_device(addr: SocketAddr, id: &str) -> anyhow::Result<()> {
    use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS};
    let status = format!("ward/v1/dev/{id}/status");
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(10));
    o.set_last_will(LastWill::new(
        &status,
        r#"{"state":"offline"}"#,
        QoS::AtLeastOnce,
        true,
    ));
    let (client, mut ev) = AsyncClient::new(o, 64);
    let pump = tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    client
        .publish(&status, QoS::AtLeastOnce, true, r#"{"state":"online"}"#)
        .await?;
    for i in 0..5 {
        let body = format!(
            r#"{{"obs":[{{"code":147842,"value":{},"unit":264864}}]}}"#,
            70 + i
        );
        client
            .publish(
                format!("ward/v1/dev/{id}/vitals"),
                QoS::AtLeastOnce,
                false,
                body,
            )
            .await?;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Dropping the event loop closes the socket with no DISCONNECT.
    pump.abort();
    let _ = pump.await;
    Ok(())
}

/// Bad payloads a broken device or a fuzzing neighbour might send; each is refused by ingest.
async fn bad_burst(addr: SocketAddr, n: u64) -> anyhow::Result<u64> {
    use rumqttc::{AsyncClient, MqttOptions, QoS};
    let mut o = MqttOptions::new("chaos-bad", addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(10));
    let (client, mut ev) = AsyncClient::new(o, 256);
    let pump = tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    let bodies: [&[u8]; 4] = [
        b"not json at all",
        b"{\"obs\": 7}",
        b"{\"obs\":[{\"code\":\"x\"}]}",
        &[0xff, 0xfe, 0x00, 0x01],
    ];
    for i in 0..n {
        client
            .publish(
                "ward/v1/dev/chaos-bad/vitals",
                QoS::AtLeastOnce,
                false,
                bodies[(i % 4) as usize].to_vec(),
            )
            .await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    pump.abort();
    Ok(n)
}

fn refused_total(m: &serde_json::Value) -> u64 {
    // Ingest counts accepted messages by kind and refused ones by reason; the reasons are
    // the keys that are not topic kinds.
    let kinds = [
        "vitals",
        "wave",
        "status",
        "hb",
        "alarm",
        "alarm_driver_gone",
    ];
    m["ingest"].as_object().map_or(0, |o| {
        o.iter()
            .filter(|(k, _)| !kinds.contains(&k.as_str()))
            .filter_map(|(_, v)| v.as_u64())
            .sum()
    })
}

pub async fn soak(o: Options) -> anyhow::Result<SoakResult> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let core_port = free_port()?;
    let mut core = Some(Reaped(start_core(dir.path(), core_port)?));
    let mut text = format!(
        "[station]\nid = \"st-soak\"\ndata_dir = {:?}\n[broker]\nlisten = \"127.0.0.1:0\"\nallow_anonymous = true\n[sim]\nbeds = 0\n[store]\nmax_db_mb = {}\nwaveform_hours = 1\n[alarms]\nnotifications = false\n[upstream]\nenabled = true\nhost = \"127.0.0.1\"\nport = {core_port}\npeer_stations = [\"{PEER}\"]\npeer_timeout_s = 300\n",
        dir.path().display().to_string(),
        o.max_db_mb,
    );
    // The simulator's beds, then the probe's (the last bed).
    let sim_beds = o.beds.saturating_sub(1).max(1);
    for i in 1..=sim_beds {
        text += &format!(
            "[[beds]]\nid = \"bed-{i:02}\"\nlabel = \"Bed {i}\"\ndevice = \"sim-{i:02}\"\n"
        );
    }
    let probe_n = sim_beds + 1;
    let probe_bed = format!("bed-{probe_n:02}");
    let probe_device = format!("probe-{probe_n:02}");
    text += &format!(
        "[[beds]]\nid = \"{probe_bed}\"\nlabel = \"Bed {probe_n}\"\ndevice = \"{probe_device}\"\n"
    );
    let cfg = dir.path().join("soak.toml");
    std::fs::write(&cfg, text)?;
    let metrics = dir.path().join("metrics.json");
    let (child, addr) = start_station(
        dir.path(),
        &cfg,
        &metrics,
        &["--summary-every", "5", "--no-sentinel"],
    )
    .await?;
    let mut station = Reaped(child);
    let pid = station.0.id();
    let mut sim_cfg = ward_sim::SimConfig::new(addr, sim_beds);
    sim_cfg.seed = o.seed;
    sim_cfg.scenarios = vec![ward_sim::Scenario::parse(
        "bed 1 spo2 wavers around 89 % at 0 s",
    )?];
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let sim = tokio::spawn(ward_sim::run_ward(sim_cfg, stop_rx));
    let probe = ProbeDevice::start(addr, &probe_device);
    let mut nurse = PeerNurse::start(core_port);
    let mut last_row = 0i64;
    let mut core_up_since = Some(Instant::now());
    let db = dir.path().join("wardwatch.sqlite");
    let wal = dir.path().join("wardwatch.sqlite-wal");
    let ticks = clock_ticks();
    let mut rng = Rng(o.seed | 1);
    let mut r = SoakResult {
        beds: o.beds,
        max_db_mb: o.max_db_mb,
        ..Default::default()
    };
    // Stored samples are counted by row id as they arrive: ids only grow (the newest row is
    // never the one evicted), and a waveform row lives for 20 minutes or more under the cap
    // when the cap leaves waveforms room (see `Options::max_db_mb`), so a count once a minute
    // sees every row once. A cap that starves the waveforms shows as samples not stored.
    let mut counted_id = 0i64;
    let mut count_stored = |db: &Path| -> anyhow::Result<u64> {
        let c =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let (n, last): (i64, Option<i64>) = c.query_row(
            "SELECT COALESCE(SUM(n), 0), MAX(id) FROM wave_chunks WHERE id > ?1",
            [counted_id],
            |x| Ok((x.get(0)?, x.get(1)?)),
        )?;
        counted_id = last.unwrap_or(counted_id);
        Ok(n.max(0) as u64)
    };
    let read_metrics = || -> serde_json::Value {
        std::fs::read_to_string(&metrics)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    let alarms_raised = |db: &Path| -> i64 {
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                c.query_row(
                    "SELECT COUNT(*) FROM alarm_log WHERE kind = 'raised' AND bed = 'bed-01'",
                    [],
                    |x| x.get(0),
                )
            })
            .unwrap_or(-1)
    };
    let t0 = Instant::now();
    let run_for = Duration::from_secs_f64(o.minutes * 60.0);
    let mut last_cpu = (0.0, cpu_seconds(pid, ticks)?);
    let mut core_down_until: Option<Instant> = None;
    let mut minute = 0u64;
    let mut csv = String::from(
        "minute,cpu_pct,rss_mb,rss_anon_mb,rss_file_mb,open_files,db_mb,evicted_rows,store_lag,sync_backlog,alarms_raised_bed1,core_up,alarm_latency_ms,ack_latency_ms\n",
    );
    while t0.elapsed() < run_for {
        minute += 1;
        // The chaos for this minute, then the rest of the minute, then the sample.
        let minute_end = t0 + Duration::from_secs(minute * 60);
        if minute.is_multiple_of(o.outage_every.max(2)) && core_down_until.is_none() {
            // Dropping the core's handle kills it.
            if core.take().is_some() {
                core_up_since = None;
                r.outages += 1;
                core_down_until = Some(Instant::now() + Duration::from_secs(60));
                eprintln!("  minute {minute}: hospital core stopped for 60 s");
            }
        }
        let roll = rng.next();
        let mut chaos = Vec::new();
        if roll.is_multiple_of(2) {
            let id = format!("chaos-{:02}", rng.next() % 8 + 1);
            chaos.push(tokio::spawn(async move {
                dropping_device(addr, &id).await.map(|_| (1, 0))
            }));
        }
        if roll.is_multiple_of(3) {
            let n = 20 + rng.next() % 30;
            chaos.push(tokio::spawn(async move {
                bad_burst(addr, n).await.map(|b| (0, b))
            }));
        }
        // The probe, at a seeded second of the minute (chaos runs meanwhile).
        tokio::time::sleep(Duration::from_secs(5 + rng.next() % 30)).await;
        let ack = core_up_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(30));
        let outcome = probe_once(&db, &probe_bed, &probe, &mut nurse, ack, &mut last_row).await?;
        if outcome.alarm_ms.is_none() {
            r.failures.push(format!(
                "minute {minute}: the probe's alarm was not raised within {} s",
                PROBE_WAIT.as_secs()
            ));
        } else if outcome.ack_sent && outcome.ack_ms.is_none() {
            r.failures.push(format!(
                "minute {minute}: the peer's acknowledgement was not applied within {} s",
                PROBE_WAIT.as_secs()
            ));
        }
        for c in chaos {
            match c.await {
                Ok(Ok((w, b))) => {
                    r.wills += w;
                    r.bad_sent += b;
                }
                Ok(Err(e)) => r
                    .failures
                    .push(format!("minute {minute}: chaos client failed: {e}")),
                Err(e) => r
                    .failures
                    .push(format!("minute {minute}: chaos task failed: {e}")),
            }
        }
        if let Some(until) = core_down_until {
            if Instant::now() >= until {
                core = Some(Reaped(start_core(dir.path(), core_port)?));
                core_up_since = Some(Instant::now());
                core_down_until = None;
                eprintln!("  minute {minute}: hospital core started again");
            }
        }
        let left = minute_end.saturating_duration_since(Instant::now());
        let left = left.min(run_for.saturating_sub(t0.elapsed()));
        tokio::time::sleep(left).await;
        if let Some(until) = core_down_until {
            if Instant::now() >= until {
                core = Some(Reaped(start_core(dir.path(), core_port)?));
                core_up_since = Some(Instant::now());
                core_down_until = None;
                eprintln!("  minute {minute}: hospital core started again");
            }
        }
        // A station that ended by itself is the soak's worst finding: say so and stop.
        if let Some(status) = station.0.try_wait()? {
            r.failures.push(format!(
                "the station ended by itself ({status}) in minute {minute}"
            ));
            break;
        }
        let now = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid, ticks)?;
        let m = read_metrics();
        let row = Minute {
            s: SoakSample {
                minute: now / 60.0,
                cpu_pct: (cpu - last_cpu.1) / (now - last_cpu.0).max(1e-9) * 100.0,
                rss_mb: rss_mb(pid)?,
                open_files: open_files(pid),
                db_mb: file_mb(&db) + file_mb(&wal),
                alarm_latency_ms: outcome.alarm_ms.map(|v| v as f64),
                ack_latency_ms: outcome.ack_ms.map(|v| v as f64),
            },
            store_lag: m["store"]["lag"].as_u64().unwrap_or(0),
            rss_anon_mb: status_mb(pid, "RssAnon")?,
            rss_file_mb: status_mb(pid, "RssFile")?,
            evicted: m["store"]["evicted_for_size"].as_u64().unwrap_or(0),
            sync_backlog: m["sync"]["backlog"].as_i64().unwrap_or(-1),
            alarms_raised: alarms_raised(&db),
            core_up: core.is_some(),
        };
        last_cpu = (now, cpu);
        r.samples_stored += count_stored(&db)?;
        if row.evicted > 0 && r.cap_reached_minute.is_none() {
            r.cap_reached_minute = Some(row.s.minute);
        }
        r.probes.push(outcome.clone());
        let opt = |v: Option<i64>| v.map_or(String::new(), |v| v.to_string());
        let _ = writeln!(
            csv,
            "{:.2},{:.2},{:.1},{:.1},{:.1},{},{:.1},{},{},{},{},{},{},{}",
            row.s.minute,
            row.s.cpu_pct,
            row.s.rss_mb,
            row.rss_anon_mb,
            row.rss_file_mb,
            row.s.open_files,
            row.s.db_mb,
            row.evicted,
            row.store_lag,
            row.sync_backlog,
            row.alarms_raised,
            row.core_up,
            opt(outcome.alarm_ms),
            opt(outcome.ack_ms)
        );
        eprintln!(
            "  {:>6.1} min: CPU {:>5.1} %, RSS {:>6.1} MB (anon {:.1}), {} files, DB {:>7.1} MB, evicted {}, sync backlog {}, bed 1 alarms {}, probe alarm {} ms, ack {} ms",
            row.s.minute, row.s.cpu_pct, row.s.rss_mb, row.rss_anon_mb, row.s.open_files, row.s.db_mb, row.evicted, row.sync_backlog, row.alarms_raised,
            opt(outcome.alarm_ms), opt(outcome.ack_ms)
        );
        r.minutes.push(row);
        if let Some(p) = &o.csv {
            std::fs::write(p, &csv).with_context(|| format!("write {}", p.display()))?;
        }
    }
    r.seconds = t0.elapsed().as_secs_f64();
    if core.is_none() {
        core = Some(Reaped(start_core(dir.path(), core_port)?));
    }
    stop.send(true).ok();
    drop(probe);
    drop(nurse);
    // Against a station that died the simulated monitors may not wind down: bounded.
    let sent = match tokio::time::timeout(Duration::from_secs(30), sim).await {
        Ok(done) => done.context("simulator task")??.samples.values().sum(),
        Err(_) => {
            r.failures
                .push("the simulated ward did not stop within 30 s".into());
            0
        }
    };
    // The core is up: give the outbox time to drain, then stop the station cleanly. The
    // metrics file is written every 5 s: wait for one written after the last chaos.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut m = read_metrics();
    for _ in 0..60 {
        if m["sync"]["backlog"].as_i64() == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        m = read_metrics();
    }
    r.sync_backlog_end = m["sync"]["backlog"].as_i64().unwrap_or(-1);
    r.messages_dropped = m["broker"]["messages_dropped"].as_u64().unwrap_or(0);
    r.queue_full = m["store"]["queue_full"].as_u64().unwrap_or(0);
    r.bad_counted = refused_total(&m);
    if station.0.try_wait()?.is_none() {
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        let status = station.0.wait()?;
        if !status.success() {
            r.failures.push(format!("the station exited with {status}"));
        }
    }
    drop(core);
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    // The rows written since the last minute's count.
    r.samples_stored += count_stored(&db)?;
    r.offline_events = conn.query_row(
        "SELECT COUNT(*) FROM device_events WHERE device LIKE 'chaos-%' AND kind = 'status' AND detail LIKE '%offline%'",
        [],
        |x| x.get(0),
    )?;
    r.samples_sent = sent;
    judge(&mut r);
    if let Some(p) = &o.chart {
        let chart = SoakChart {
            title: format!(
                "Soak: {} beds, {:.1} h, {} device drops, {} bad payloads, {} core outages",
                r.beds,
                r.seconds / 3600.0,
                r.wills,
                r.bad_sent,
                r.outages
            ),
            samples: r.minutes.iter().map(|m| m.s.clone()).collect(),
        };
        let format = ward_export::Format::from_path(p)?;
        ward_export::soak_render::render_soak(&chart, format)?.write(p)?;
    }
    Ok(r)
}

/// The `p`th percentile (nearest rank) of `v`, or "-" when there is nothing.
fn pct(v: &[i64], p: usize) -> String {
    let mut v = v.to_vec();
    v.sort_unstable();
    if v.is_empty() {
        return "-".into();
    }
    let i = (v.len() * p).div_ceil(100).clamp(1, v.len()) - 1;
    v[i].to_string()
}

/// The `q`th quarter (0-3) of the run's minutes.
fn quarter(m: &[Minute], q: usize) -> &[Minute] {
    &m[q * m.len() / 4..(q + 1) * m.len() / 4]
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The most RSS may still be rising over a run's second half: 1 MB an hour is 24 MB a day,
/// about a seventh of the station's RSS; the default glibc allocator's creep (3.4 MB an hour)
/// fails it.
pub const RSS_TREND_LIMIT_MB_PER_H: f64 = 1.0;

/// RSS's least-squares slope in MB an hour over the second half of the run (past the
/// warm-up and, with the soak's cap, mostly past the store filling), or `None` for a run of
/// under an hour: shorter halves are noise.
pub fn rss_trend(minutes: &[Minute]) -> Option<f64> {
    if minutes.len() < 60 {
        return None;
    }
    let half = &minutes[minutes.len() / 2..];
    let x: Vec<f64> = half.iter().map(|m| m.s.minute).collect();
    let y: Vec<f64> = half.iter().map(|m| m.s.rss_mb).collect();
    let (mx, my) = (mean(&x), mean(&y));
    let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
    let sxy: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx * 60.0)
}

/// The run's verdicts (pure: the figures in, the failures out).
pub fn judge(r: &mut SoakResult) {
    if r.samples_stored < r.samples_sent {
        r.failures.push(format!(
            "{} of {} waveform samples sent were not stored",
            r.samples_sent - r.samples_stored,
            r.samples_sent
        ));
    }
    if r.messages_dropped > 0 || r.queue_full > 0 {
        r.failures.push(format!(
            "{} messages dropped by the broker, {} records refused by a full store queue",
            r.messages_dropped, r.queue_full
        ));
    }
    if r.bad_counted < r.bad_sent {
        r.failures.push(format!(
            "{} bad payloads sent, only {} counted as refused",
            r.bad_sent, r.bad_counted
        ));
    }
    if r.sync_backlog_end != 0 {
        r.failures.push(format!(
            "{} events still not confirmed by the core after it came back",
            r.sync_backlog_end
        ));
    }
    let n = r.minutes.len();
    if n >= 8 {
        // The first quarter is warm-up (caches, the database's first pages); growth is
        // judged from the second quarter to the last.
        let rss = |s: &[Minute]| mean(&s.iter().map(|m| m.s.rss_mb).collect::<Vec<_>>());
        let (second, last) = (rss(quarter(&r.minutes, 1)), rss(quarter(&r.minutes, 3)));
        if last > second * 1.10 && last - second > 10.0 {
            r.failures.push(format!(
                "RSS grew from {second:.1} MB (second quarter) to {last:.1} MB (last quarter)"
            ));
        }
        if let Some(t) = rss_trend(&r.minutes).filter(|t| *t > RSS_TREND_LIMIT_MB_PER_H) {
            r.failures.push(format!(
                "RSS still rising {t:.2} MB an hour over the run's second half (limit \
                 {RSS_TREND_LIMIT_MB_PER_H} MB an hour)"
            ));
        }
        let files = |s: &[Minute]| s.iter().map(|m| m.s.open_files).max().unwrap_or(0);
        let (f2, f4) = (files(quarter(&r.minutes, 1)), files(quarter(&r.minutes, 3)));
        if f4 > f2 + 10 {
            r.failures.push(format!(
                "open files grew from {f2} (second quarter) to {f4} (last quarter)"
            ));
        }
    }
    // The wavering bed alarms every few minutes: a 30-minute stretch with none is a miss.
    for w in r.minutes.windows(31) {
        let (a, b) = (w[0].alarms_raised, w[30].alarms_raised);
        if a >= 0 && b >= 0 && b == a {
            r.failures.push(format!(
                "no alarm from the wavering bed between minutes {:.0} and {:.0}",
                w[0].s.minute, w[30].s.minute
            ));
            break;
        }
    }
}

pub fn report(r: &SoakResult, chart: Option<&Path>) -> String {
    let mut s = String::new();
    let col = |f: &dyn Fn(&Minute) -> f64| -> (f64, f64, f64) {
        let v: Vec<f64> = r.minutes.iter().map(f).collect();
        let max = v.iter().copied().fold(f64::MIN, f64::max);
        let min = v.iter().copied().fold(f64::MAX, f64::min);
        (min, mean(&v), max)
    };
    let cpu = col(&|m| m.s.cpu_pct);
    let rss = col(&|m| m.s.rss_mb);
    let anon = col(&|m| m.rss_anon_mb);
    let files = col(&|m| m.s.open_files as f64);
    let dbm = col(&|m| m.s.db_mb);
    let lag = col(&|m| m.store_lag as f64);
    let _ = writeln!(
        s,
        "| measure | min | mean | max |\n|---|---|---|---|\n\
         | station CPU (% of one core, per minute) | {:.1} | {:.1} | {:.1} |\n\
         | station RSS (MB) | {:.1} | {:.1} | {:.1} |\n\
         | of it anonymous (heap, MB) | {:.1} | {:.1} | {:.1} |\n\
         | open files | {:.0} | {:.1} | {:.0} |\n\
         | database with WAL (MB) | {:.1} | {:.1} | {:.1} |\n\
         | store writer queue (records) | {:.0} | {:.1} | {:.0} |\n",
        cpu.0,
        cpu.1,
        cpu.2,
        rss.0,
        rss.1,
        rss.2,
        anon.0,
        anon.1,
        anon.2,
        files.0,
        files.1,
        files.2,
        dbm.0,
        dbm.1,
        dbm.2,
        lag.0,
        lag.1,
        lag.2
    );
    let _ = writeln!(
        s,
        "{} beds for {:.2} h ({} one-minute samples). Waveform samples: {} sent, {} stored. \
         Broker messages dropped {}, store queue refusals {}. Chaos: {} devices dropped without \
         DISCONNECT ({} offline statuses from their wills stored), {} bad payloads sent ({} \
         counted refused), {} hospital-core outages of 60 s (sync backlog at the end: {}). \
         Alarms raised at the wavering bed: {}.\n",
        r.beds,
        r.seconds / 3600.0,
        r.minutes.len(),
        r.samples_sent,
        r.samples_stored,
        r.messages_dropped,
        r.queue_full,
        r.wills,
        r.offline_events,
        r.bad_sent,
        r.bad_counted,
        r.outages,
        r.sync_backlog_end,
        r.minutes.last().map_or(0, |m| m.alarms_raised),
    );
    let quarters = |f: &dyn Fn(&Minute) -> f64| -> String {
        (0..4)
            .map(|q| {
                let v: Vec<f64> = quarter(&r.minutes, q).iter().map(f).collect();
                format!("{:.1}", mean(&v))
            })
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let _ = writeln!(
        s,
        "RSS by quarter of the run (means): {} MB; anonymous {} MB; file-backed {} MB; its \
         trend over the second half {} MB an hour (least squares). Ring buffer capped at {} MB (store.max_db_mb), first eviction at minute {}; {} rows \
         evicted for the cap by the end.\n",
        quarters(&|m| m.s.rss_mb),
        quarters(&|m| m.rss_anon_mb),
        quarters(&|m| m.rss_file_mb),
        rss_trend(&r.minutes).map_or_else(|| "-".to_string(), |t| format!("{t:+.2}")),
        r.max_db_mb,
        r.cap_reached_minute
            .map_or_else(|| "- (not reached)".to_string(), |m| format!("{m:.0}")),
        r.minutes.last().map_or(0, |m| m.evicted),
    );
    let alarm: Vec<i64> = r.probes.iter().filter_map(|p| p.alarm_ms).collect();
    let ack: Vec<i64> = r.probes.iter().filter_map(|p| p.ack_ms).collect();
    let sent = r.probes.iter().filter(|p| p.ack_sent).count();
    let _ = writeln!(
        s,
        "Probe alarms (NIBP sys 200 mmHg at the last bed, once a minute): {} of {} raised; \
         latency from the publish to the alarm raised p50 {} ms, p95 {} ms, max {} ms. \
         Acknowledged by the scripted nurse at peer station {PEER} through the core: {} of {} \
         sent applied ({} probes not acknowledged: core down or back less than 30 s); from the \
         publish at the peer to applied here p50 {} ms, p95 {} ms, max {} ms.\n",
        alarm.len(),
        r.probes.len(),
        pct(&alarm, 50),
        pct(&alarm, 95),
        pct(&alarm, 100),
        ack.len(),
        sent,
        r.probes.len() - sent,
        pct(&ack, 50),
        pct(&ack, 95),
        pct(&ack, 100),
    );
    if r.failures.is_empty() {
        s.push_str("Verdict: **passed** (no loss, no growth, no missed alarm).\n");
    } else {
        s.push_str("Verdict: **failed**:\n");
        for f in &r.failures {
            let _ = writeln!(s, "- {f}");
        }
    }
    if let Some(c) = chart {
        let name = c
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let _ = writeln!(s, "\n![soak chart]({name})");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        rss: impl Fn(usize) -> f64,
        files: impl Fn(usize) -> u64,
        alarms: impl Fn(usize) -> i64,
    ) -> SoakResult {
        let mut r = SoakResult {
            minutes: (0..120)
                .map(|i| Minute {
                    s: SoakSample {
                        minute: i as f64,
                        rss_mb: rss(i),
                        open_files: files(i),
                        ..Default::default()
                    },
                    alarms_raised: alarms(i),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        judge(&mut r);
        r
    }

    #[test]
    fn a_steady_run_passes() {
        let r = run(|i| 70.0 + (i % 3) as f64, |_| 140, |i| (i / 5) as i64);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
    }

    #[test]
    fn growth_in_memory_or_files_and_a_silent_alarm_stretch_fail() {
        let r = run(|i| 70.0 + i as f64 * 0.5, |_| 140, |i| (i / 5) as i64);
        assert!(
            r.failures.iter().any(|f| f.contains("RSS grew")),
            "{:?}",
            r.failures
        );
        let r = run(|_| 70.0, |i| 140 + i as u64 / 4, |i| (i / 5) as i64);
        assert!(
            r.failures.iter().any(|f| f.contains("open files grew")),
            "{:?}",
            r.failures
        );
        let r = run(|_| 70.0, |_| 140, |i| (i.min(40) / 5) as i64);
        assert!(
            r.failures.iter().any(|f| f.contains("no alarm")),
            "{:?}",
            r.failures
        );
    }

    #[test]
    fn a_slow_creep_fails_by_its_trend_and_a_levelling_one_passes() {
        // 3.4 MB an hour (the default allocator's creep): +3.4 MB from the second quarter to
        // the last, under the quarters' limit, caught by the trend.
        let r = run(
            |i| 150.0 + i as f64 * 3.4 / 60.0,
            |_| 140,
            |i| (i / 5) as i64,
        );
        assert!(
            r.failures
                .iter()
                .any(|f| f.contains("still rising 3.40 MB")),
            "{:?}",
            r.failures
        );
        assert!(!r.failures.iter().any(|f| f.contains("RSS grew")));
        // Fast growth while the store fills, then flat with noise: passes.
        let r = run(
            |i| 130.0 + (i.min(40) as f64) * 0.6 + (i % 2) as f64 * 0.3,
            |_| 140,
            |i| (i / 5) as i64,
        );
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert!(rss_trend(&r.minutes).is_some_and(|t| t.abs() < 0.5));
        // Under an hour there is no trend to judge.
        assert_eq!(rss_trend(&r.minutes[..59]), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<i64> = (1..=20).rev().collect();
        assert_eq!(pct(&v, 50), "10");
        assert_eq!(pct(&v, 95), "19");
        assert_eq!(pct(&v, 100), "20");
        assert_eq!(pct(&[], 50), "-");
    }

    #[test]
    fn loss_and_uncounted_bad_payloads_fail() {
        let mut r = SoakResult {
            samples_sent: 10,
            samples_stored: 9,
            bad_sent: 5,
            bad_counted: 4,
            ..Default::default()
        };
        judge(&mut r);
        assert_eq!(r.failures.len(), 2, "{:?}", r.failures);
    }
}
