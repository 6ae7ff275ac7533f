//! `wardwatch bench ward` and `wardwatch bench queries`: the whole ward, measured.
//!
//! `ward`: a headless station runs as its own process (`wardwatch run`), so its CPU time and
//! RSS are its own, read from /proc every 10 s; this process runs the simulated ward (64 beds:
//! ECG 250 Hz, pleth 125 Hz, resp 62.5 Hz at 25 packets/s each, vitals at 1 Hz) against it.
//! At the end the station is stopped with SIGTERM (it flushes), and every sample the
//! simulator handed to its MQTT client is looked for in the station's database: samples lost
//! is sent minus stored. Store commit percentiles come from the station's metrics file.
//!
//! `queries`: a database holding `hours` (72) of a 64-bed ward is generated through the
//! store's own write path in simulated time (not in real time), then the review queries are
//! timed: the last 5 minutes of one channel of one bed, and one bed's 24 h HR trend.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use ward_core::percentile;
use ward_model::codes;
use ward_store::{Record, Store, TrendResolution, VitalRow, WaveChunk};

/// CPU seconds (user + system) of a process, from /proc/PID/stat.
pub(crate) fn cpu_seconds(pid: u32, ticks_per_s: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("unreadable /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    let utime: f64 = f.get(11).context("no utime")?.parse()?;
    let stime: f64 = f.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / ticks_per_s)
}

pub(crate) fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    status_mb(pid, "VmRSS")
}

/// A size line of `/proc/<pid>/status` (VmRSS, RssAnon, RssFile, …) in MB.
pub(crate) fn status_mb(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?
        .parse()?;
    Ok(kb / 1024.0)
}

pub(crate) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn ward_config(dir: &Path, beds: usize) -> anyhow::Result<PathBuf> {
    let mut text = format!(
        "[station]\ndata_dir = {:?}\n[broker]\nlisten = \"127.0.0.1:0\"\nallow_anonymous = true\n[sim]\nbeds = 0\n[alarms]\nnotifications = false\n",
        dir.display().to_string()
    );
    for i in 1..=beds {
        text += &format!(
            "[[beds]]\nid = \"bed-{i:02}\"\nlabel = \"Bed {i}\"\ndevice = \"sim-{i:02}\"\n"
        );
    }
    let path = dir.join("bench.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

pub struct WardResult {
    pub beds: usize,
    pub seconds: f64,
    pub samples_sent: u64,
    pub samples_stored: u64,
    /// (seconds since start, CPU share of one core over the interval, RSS MB).
    pub series: Vec<(f64, f64, f64)>,
    pub commit_p50_ms: f64,
    pub commit_p99_ms: f64,
    pub commit_max_ms: f64,
    pub messages_dropped: u64,
    pub queue_full: u64,
    pub db_mb: f64,
    /// Mosquitto alone routing the same simulated ward to one subscriber on the station's
    /// filter, for the same time: mean CPU share of one core, and messages it delivered.
    pub mosquitto_cpu: f64,
    pub mosquitto_delivered: u64,
}

/// The same simulated ward against Mosquitto (in memory, as it runs by default), with one
/// rumqttc subscriber on the station's device filter in this process: what routing the
/// ward's traffic alone costs the reference broker. The station does that and more (stores
/// every sample, evaluates alarms), so a ratio at or under 1 is the goal.
async fn mosquitto_ward(beds: usize, minutes: f64) -> anyhow::Result<(f64, u64)> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let dir = tempfile::tempdir().context("temp dir")?;
    let peer = crate::broker_bench::start_mosquitto(dir.path())?;
    let pid = peer.child.id();
    let addr = peer.addr;
    let mut o = MqttOptions::new("station-stand-in", addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(60));
    o.set_max_packet_size(1 << 20, 1 << 20);
    let (sub, mut ev) = AsyncClient::new(o, 10_000);
    sub.subscribe(ward_model::topic::DEVICE_FILTER, QoS::ExactlyOnce)
        .await?;
    let delivered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = delivered.clone();
    let reader = tokio::spawn(async move {
        while let Ok(e) = ev.poll().await {
            if let Event::Incoming(Packet::Publish(_)) = e {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let sim = tokio::spawn(ward_sim::run_ward(
        ward_sim::SimConfig::new(addr, beds),
        stop_rx,
    ));
    let ticks = clock_ticks();
    // Monitors connect and settle before the measured interval, as in the station's run.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu0 = cpu_seconds(pid, ticks)?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(minutes * 60.0)).await;
    let share = (cpu_seconds(pid, ticks)? - cpu0) / t0.elapsed().as_secs_f64();
    stop.send(true).ok();
    let _ = sim.await;
    let _ = sub.disconnect().await;
    reader.abort();
    let n = delivered.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "  mosquitto alone, same ward: CPU {:.1} % of one core, {n} messages delivered",
        share * 100.0
    );
    Ok((share, n))
}

/// Starts `wardwatch run --config cfg` as its own process (RUST_LOG=warn, metrics written to
/// `metrics`), and waits for the broker address in `dir`'s runtime file.
pub(crate) async fn start_station(
    dir: &Path,
    cfg: &Path,
    metrics: &Path,
    extra: &[&str],
) -> anyhow::Result<(std::process::Child, std::net::SocketAddr)> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("run")
        .args(extra)
        .arg("--config")
        .arg(cfg)
        .arg("--metrics-out")
        .arg(metrics)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the station")?;
    let runtime = dir.join("runtime.json");
    let started = Instant::now();
    loop {
        if let Some(a) = std::fs::read_to_string(&runtime)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["broker"].as_str().and_then(|s| s.parse().ok()))
        {
            return Ok((child, a));
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            bail!("the station did not start within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn ward(beds: usize, minutes: f64) -> anyhow::Result<WardResult> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let cfg = ward_config(dir.path(), beds)?;
    let metrics = dir.path().join("metrics.json");
    let (mut child, addr) =
        start_station(dir.path(), &cfg, &metrics, &["--summary-every", "5"]).await?;
    let pid = child.id();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let sim = tokio::spawn(ward_sim::run_ward(
        ward_sim::SimConfig::new(addr, beds),
        stop_rx,
    ));
    let ticks = clock_ticks();
    let t0 = Instant::now();
    let mut last = (0.0, cpu_seconds(pid, ticks)?);
    let mut series = Vec::new();
    let run_for = Duration::from_secs_f64(minutes * 60.0);
    while t0.elapsed() < run_for {
        tokio::time::sleep(Duration::from_secs(10).min(run_for.saturating_sub(t0.elapsed()))).await;
        let now = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds(pid, ticks)?;
        let share = (cpu - last.1) / (now - last.0).max(1e-9);
        series.push((now, share, rss_mb(pid)?));
        last = (now, cpu);
        eprintln!(
            "  {:>5.0} s: station CPU {:>5.1} % of one core, RSS {:>6.1} MB",
            now,
            share * 100.0,
            series.last().map(|s| s.2).unwrap_or(0.0)
        );
    }
    let seconds = t0.elapsed().as_secs_f64();
    stop.send(true).ok();
    let sent = sim.await.context("simulator task")??;
    // A moment for the last packets to reach the station, then a clean stop (it flushes).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&metrics).context("the station's metrics file")?,
    )?;
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "the station exited with {status}");
    let db = dir.path().join("wardwatch.sqlite");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let stored: i64 = conn.query_row("SELECT COALESCE(SUM(n), 0) FROM wave_chunks", [], |r| {
        r.get(0)
    })?;
    let ms = |k: &str| m["store"][k].as_f64().unwrap_or(0.0) / 1000.0;
    let (mosquitto_cpu, mosquitto_delivered) = mosquitto_ward(beds, minutes).await?;
    Ok(WardResult {
        beds,
        seconds,
        samples_sent: sent.samples.values().sum(),
        samples_stored: stored.max(0) as u64,
        series,
        commit_p50_ms: ms("commit_p50_us"),
        commit_p99_ms: ms("commit_p99_us"),
        commit_max_ms: ms("max_commit_us"),
        messages_dropped: m["broker"]["messages_dropped"].as_u64().unwrap_or(0),
        queue_full: m["store"]["queue_full"].as_u64().unwrap_or(0),
        db_mb: std::fs::metadata(&db).map(|x| x.len()).unwrap_or(0) as f64 / 1048576.0,
        mosquitto_cpu,
        mosquitto_delivered,
    })
}

pub fn ward_report(r: &WardResult) -> String {
    let cpu: Vec<f64> = r.series.iter().map(|s| s.1).collect();
    let rss: Vec<f64> = r.series.iter().map(|s| s.2).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    let half = rss.len() / 2;
    let lost = r.samples_sent.saturating_sub(r.samples_stored);
    let mut s = format!(
        "| measure | value | target | ratio to target |\n|---|---|---|---|\n\
         | waveform samples lost | {lost} of {} | 0 | {} |\n\
         | station CPU, mean | {:.1} % of one core | ≤ 25 % | {:.2} |\n\
         | station CPU, highest 10 s | {:.1} % of one core | ≤ 25 % | {:.2} |\n\
         | station CPU ÷ Mosquitto alone routing the same ward ({:.1} % of one core) | {:.2} | ≤ 1.0 | {} |\n\
         | station RSS, highest | {:.1} MB | ≤ 200 MB | {:.2} |\n\
         | station RSS, mean of first half → second half | {:.1} → {:.1} MB | flat | |\n\
         | store commit p50 / p99 / max | {:.2} / {:.2} / {:.2} ms | | |\n\n",
        r.samples_sent,
        if lost == 0 {
            "met".to_string()
        } else {
            "missed".to_string()
        },
        mean(&cpu) * 100.0,
        mean(&cpu) / 0.25,
        max(&cpu) * 100.0,
        max(&cpu) / 0.25,
        r.mosquitto_cpu * 100.0,
        mean(&cpu) / r.mosquitto_cpu.max(1e-9),
        if mean(&cpu) <= r.mosquitto_cpu {
            "met"
        } else {
            "missed"
        },
        max(&rss),
        max(&rss) / 200.0,
        mean(&rss[..half]),
        mean(&rss[half..]),
        r.commit_p50_ms,
        r.commit_p99_ms,
        r.commit_max_ms,
    );
    s += &format!(
        "{} beds for {:.0} s; broker messages dropped {}, store queue full {}; database {:.0} MB at the end. \
         Mosquitto alone, same simulated ward and time, one subscriber on the station's filter: {} messages delivered.\n\n\
         CPU and RSS every 10 s (s, % of one core, MB): {}\n",
        r.beds,
        r.seconds,
        r.messages_dropped,
        r.queue_full,
        r.db_mb,
        r.mosquitto_delivered,
        r.series
            .iter()
            .map(|(t, c, m)| format!("{t:.0}: {:.1} %, {m:.0} MB", c * 100.0))
            .collect::<Vec<_>>()
            .join("; ")
    );
    s
}

pub struct QueryResult {
    pub beds: usize,
    pub hours: u32,
    pub generate_s: f64,
    pub db_gb: f64,
    pub wave_rows: u64,
    pub vital_rows: u64,
    /// Sorted timings in ms.
    pub window_5min: Vec<f64>,
    pub trend_24h: Vec<f64>,
    pub window_samples: usize,
    pub trend_points: usize,
}

/// One simulated second of one bed: three chunks and seven vitals, as the simulator sends.
fn bed_second(bed: usize, t_ms: i64, ecg: &[i16], pleth: &[i16], resp: &[i16]) -> Vec<Record> {
    let device = format!("sim-{bed:02}");
    let bed_id = format!("bed-{bed:02}");
    let mut out = Vec::with_capacity(10);
    for (channel, rate_mhz, samples) in [
        (codes::MDC_ECG_ELEC_POTL_II, 250_000, ecg),
        (codes::MDC_PULS_OXIM_PLETH, 125_000, pleth),
        (codes::MDC_IMPED_TTHOR, 62_500, resp),
    ] {
        out.push(Record::Wave(WaveChunk {
            device: device.clone(),
            bed: Some(bed_id.clone()),
            channel,
            t0_us: t_ms * 1000,
            rate_mhz,
            scale: 0.005,
            offset: 0.0,
            unit: codes::UNIT_MV,
            samples: samples.to_vec(),
        }));
    }
    let s = t_ms / 1000;
    for (code, unit, v) in [
        (
            codes::MDC_ECG_HEART_RATE,
            codes::UNIT_BPM,
            60.0 + (s % 40) as f64,
        ),
        (
            codes::MDC_PULS_OXIM_SAT_O2,
            codes::UNIT_PERCENT,
            95.0 + (s % 4) as f64,
        ),
        (
            codes::MDC_RESP_RATE,
            codes::UNIT_RESP_PER_MIN,
            14.0 + (s % 6) as f64,
        ),
        (codes::MDC_PRESS_BLD_NONINV_SYS, codes::UNIT_MMHG, 120.0),
        (codes::MDC_PRESS_BLD_NONINV_DIA, codes::UNIT_MMHG, 80.0),
        (codes::MDC_PRESS_BLD_NONINV_MEAN, codes::UNIT_MMHG, 93.0),
        (codes::MDC_TEMP_BODY, codes::UNIT_DEGC, 36.8),
    ] {
        out.push(Record::Vital(VitalRow {
            ts_ms: t_ms + bed as i64,
            device: device.clone(),
            bed: Some(bed_id.clone()),
            code,
            unit,
            value: Some(v),
        }));
    }
    out
}

pub fn queries(beds: usize, hours: u32, db: Option<PathBuf>) -> anyhow::Result<QueryResult> {
    let tmp = tempfile::tempdir()?;
    let db = db.unwrap_or_else(|| tmp.path().join("ring.sqlite"));
    // Never over an existing file: --db could name a station's real database.
    anyhow::ensure!(
        !db.exists(),
        "{} exists; the query bench generates a new database",
        db.display()
    );
    let mut store = Store::open(&db)?;
    // Plausible samples (a sawtooth-ish pattern per channel); what matters for the queries is
    // the number and size of rows, not the shape.
    let pattern = |n: usize, k: usize| -> Vec<i16> {
        (0..n).map(|i| (((i * k) % 400) as i16 - 200) * 3).collect()
    };
    let (ecg, pleth, resp) = (pattern(250, 7), pattern(125, 5), pattern(62, 3));
    let end_ms = ward_core::now_ms() / 1000 * 1000;
    let start_ms = end_ms - hours as i64 * 3_600_000;
    let t = Instant::now();
    // One transaction per simulated minute of the whole ward (about 38,000 rows), as the
    // writer batches; far larger than the live 200 ms batches, which is what makes it fast.
    let mut batch = Vec::new();
    let mut s_ms = start_ms;
    while s_ms < end_ms {
        for bed in 1..=beds {
            batch.extend(bed_second(bed, s_ms, &ecg, &pleth, &resp));
        }
        s_ms += 1000;
        if (s_ms - start_ms) % 60_000 == 0 {
            store.write_batch(&batch)?;
            batch.clear();
        }
        if (s_ms - start_ms) % 3_600_000 == 0 {
            eprintln!(
                "  generated {} of {hours} h in {:.0} s",
                (s_ms - start_ms) / 3_600_000,
                t.elapsed().as_secs_f64()
            );
        }
    }
    store.write_batch(&batch)?;
    let generate_s = t.elapsed().as_secs_f64();
    let counts = store.counts()?;
    drop(store);
    let db_gb = std::fs::metadata(&db)?.len() as f64 / 1e9;
    // Timed on a read-only connection, as the window's commands read.
    let ro = Store::open_read_only(&db)?;
    let mut window_5min = Vec::new();
    let mut trend_24h = Vec::new();
    let (mut window_samples, mut trend_points) = (0, 0);
    for i in 0..200 {
        let bed = format!("bed-{:02}", i % beds + 1);
        let q = Instant::now();
        let w = ro.wave_window(
            &bed,
            codes::MDC_ECG_ELEC_POTL_II,
            (end_ms - 300_000) * 1000,
            end_ms * 1000,
        )?;
        window_5min.push(q.elapsed().as_secs_f64() * 1000.0);
        window_samples = w.iter().map(|c| c.samples.len()).sum();
        let q = Instant::now();
        let tr = ro.trend(
            &bed,
            codes::MDC_ECG_HEART_RATE,
            end_ms - 86_400_000,
            end_ms,
            TrendResolution::Minute,
        )?;
        trend_24h.push(q.elapsed().as_secs_f64() * 1000.0);
        trend_points = tr.len();
    }
    window_5min.sort_by(f64::total_cmp);
    trend_24h.sort_by(f64::total_cmp);
    Ok(QueryResult {
        beds,
        hours,
        generate_s,
        db_gb,
        wave_rows: counts.wave_chunks,
        vital_rows: counts.vitals,
        window_5min,
        trend_24h,
        window_samples,
        trend_points,
    })
}

pub fn queries_report(r: &QueryResult) -> String {
    let p = |v: &[f64], q: f64| percentile(v, q);
    format!(
        "| query | p50 | p99 | target | ratio to target (p99) |\n|---|---|---|---|---|\n\
         | last 5 minutes of one channel ({} samples) | {:.2} ms | {:.2} ms | ≤ 5 ms | {:.2} |\n\
         | 24 h HR trend of one bed ({} one-minute points) | {:.2} ms | {:.2} ms | ≤ 20 ms | {:.2} |\n\n\
         On a database of {} h for {} beds generated in simulated time through the store's \
         write path in {:.0} s: {:.1} GB, {} waveform chunks, {} vitals rows. 200 queries \
         each, over every bed in turn, on a read-only connection.\n",
        r.window_samples,
        p(&r.window_5min, 0.5),
        p(&r.window_5min, 0.99),
        p(&r.window_5min, 0.99) / 5.0,
        r.trend_points,
        p(&r.trend_24h, 0.5),
        p(&r.trend_24h, 0.99),
        p(&r.trend_24h, 0.99) / 20.0,
        r.hours,
        r.beds,
        r.generate_s,
        r.db_gb,
        r.wave_rows,
        r.vital_rows,
    )
}
