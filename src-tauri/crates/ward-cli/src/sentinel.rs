//! The sentinel: a second, small process that watches the station and sounds when the
//! station cannot (docs/alarms.md, "When the station fails"). And the station's side of the
//! link, [`Link`], which starts it, beats to it and restarts it.
//!
//! The channel is one TCP connection on 127.0.0.1 (a port the OS picks, named in
//! `<data_dir>/sentinel.json`), JSON lines, station to sentinel:
//! `{"hello":{"station":…,"pid":…}}`, then `{"beat":n}` every second while the station's
//! alarm loop ticks, and `{"bye":reason}` on an orderly stop. Loopback TCP rather than a Unix
//! socket or a pipe: it works the same on Windows, a dead process's connection is closed by
//! the kernel (so a `kill -9` is seen at once, not after the timeout), and a sentinel started
//! by a service manager before its station is found the same way as one the station spawned.
//! `wardwatch sentinel confirm` sends `{"confirm":user}` on a connection of its own.
//!
//! The sentinel holds nothing of the station's: its own process (its own process group, so
//! a Ctrl-C or a kill of the station's group does not reach it), its own audio stream and
//! notifier, its own log (stderr; the station points it at `<data_dir>/sentinel.log`). The
//! decisions are `ward_alarm::sentinel::Watch`'s, a pure machine with its own tests.

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use ward_alarm::sentinel::{Watch, WatchEvent, WatchPolicy};
use ward_alarm::{tone, Priority};

const INFO_FILE: &str = "sentinel.json";
pub const LOG_FILE: &str = "sentinel.log";
const BEAT_EVERY: Duration = Duration::from_secs(1);

#[derive(Subcommand)]
pub enum SentinelCommand {
    /// Watch a station (the station starts this itself; a service manager may too).
    Run(RunArgs),
    /// Confirm a sounding failure signal: you know the station is down. It still sounds
    /// for at least its minimum time.
    Confirm {
        #[arg(long)]
        data_dir: PathBuf,
        /// Who confirms (their user name).
        #[arg(long)]
        user: String,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// The station's data directory (where sentinel.json and sentinel.log live).
    #[arg(long)]
    data_dir: PathBuf,
    /// The station's name, for the log and the notification.
    #[arg(long, default_value = "station")]
    station: String,
    #[arg(long, default_value_t = 3)]
    heartbeat_timeout_s: u64,
    #[arg(long, default_value_t = 120)]
    min_signal_s: u64,
    #[arg(long, default_value_t = 30)]
    startup_grace_s: u64,
}

pub fn command(c: SentinelCommand) -> anyhow::Result<()> {
    match c {
        SentinelCommand::Run(a) => run(a),
        SentinelCommand::Confirm { data_dir, user } => confirm(&data_dir, &user),
    }
}

fn info_addr(data_dir: &Path) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(data_dir.join(INFO_FILE)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let port = u16::try_from(v["port"].as_u64()?).ok()?;
    Some(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A connection to the sentinel of `data_dir`, if one answers there: it greets each
/// connection with `{"sentinel": pid}`, so a stale sentinel.json whose port another program
/// has since taken is not mistaken for one.
fn connect(data_dir: &Path) -> Option<TcpStream> {
    let addr = info_addr(data_dir)?;
    let s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut greeting = String::new();
    BufReader::new(&s).read_line(&mut greeting).ok()?;
    let v: Value = serde_json::from_str(&greeting).ok()?;
    v.get("sentinel")?;
    s.set_read_timeout(None).ok()?;
    Some(s)
}

fn confirm(data_dir: &Path, user: &str) -> anyhow::Result<()> {
    let mut s = connect(data_dir).with_context(|| {
        format!(
            "no sentinel is running for {} (no {INFO_FILE}, or its port does not answer)",
            data_dir.display()
        )
    })?;
    writeln!(s, "{}", json!({ "confirm": user }))?;
    let mut answer = String::new();
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    BufReader::new(&s).read_line(&mut answer)?;
    let v: Value = serde_json::from_str(&answer).context("the sentinel's answer")?;
    match v["error"].as_str() {
        Some(e) => anyhow::bail!("refused: {e}"),
        None => {
            println!("confirmed by {user}");
            Ok(())
        }
    }
}

enum Msg {
    Hello {
        conn: u64,
        station: String,
        pid: u32,
    },
    Beat {
        conn: u64,
    },
    Bye {
        conn: u64,
        reason: String,
    },
    Closed {
        conn: u64,
    },
    Confirm {
        user: String,
        reply: TcpStream,
    },
    Bad {
        conn: u64,
        line: String,
    },
}

fn reader(conn: u64, stream: TcpStream, tx: mpsc::Sender<Msg>) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut hello = false;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let msg = if let Some(h) = v.get("hello") {
            hello = true;
            Msg::Hello {
                conn,
                station: h["station"].as_str().unwrap_or("station").to_string(),
                pid: h["pid"]
                    .as_u64()
                    .and_then(|p| u32::try_from(p).ok())
                    .unwrap_or(0),
            }
        } else if v.get("beat").is_some() && hello {
            Msg::Beat { conn }
        } else if let Some(r) = v.get("bye").filter(|_| hello) {
            Msg::Bye {
                conn,
                reason: r.as_str().unwrap_or("orderly stop").to_string(),
            }
        } else if let Some(u) = v.get("confirm").and_then(Value::as_str) {
            let _ = tx.send(Msg::Confirm {
                user: u.to_string(),
                reply: write_half,
            });
            return;
        } else {
            Msg::Bad { conn, line }
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
    if hello {
        let _ = tx.send(Msg::Closed { conn });
    }
}

fn run(a: RunArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("data directory {}", a.data_dir.display()))?;
    if let Some(s) = connect(&a.data_dir) {
        let addr = s.peer_addr().map(|p| p.to_string()).unwrap_or_default();
        tracing::info!(%addr, "a sentinel already watches this station; not starting another");
        return Ok(());
    }
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the sentinel's port")?;
    let port = listener.local_addr()?.port();
    let info = a.data_dir.join(INFO_FILE);
    let tmp = a.data_dir.join(format!("{INFO_FILE}.tmp"));
    std::fs::write(
        &tmp,
        json!({ "port": port, "pid": std::process::id() }).to_string(),
    )
    .and_then(|()| std::fs::rename(&tmp, &info))
    .with_context(|| format!("writing {}", info.display()))?;

    let (tx, rx) = mpsc::channel();
    let accept_tx = tx.clone();
    std::thread::Builder::new()
        .name("sentinel-accept".into())
        .spawn(move || {
            for (conn, stream) in (1u64..).zip(listener.incoming()) {
                let Ok(mut stream) = stream else { continue };
                let greeting = json!({ "sentinel": std::process::id() });
                if writeln!(stream, "{greeting}").is_err() {
                    continue;
                }
                let tx = accept_tx.clone();
                let _ = std::thread::Builder::new()
                    .name("sentinel-conn".into())
                    .spawn(move || reader(conn, stream, tx));
            }
        })?;
    drop(tx);

    let policy = WatchPolicy {
        heartbeat_timeout_ms: secs_ms(a.heartbeat_timeout_s),
        min_signal_ms: secs_ms(a.min_signal_s),
        startup_grace_ms: secs_ms(a.startup_grace_s),
    };
    tracing::info!(
        station = %a.station,
        port,
        timeout_s = a.heartbeat_timeout_s,
        min_signal_s = a.min_signal_s,
        "sentinel watching"
    );
    let epoch = Instant::now();
    let mono = || i64::try_from(epoch.elapsed().as_millis()).unwrap_or(i64::MAX);
    let mut watch = Watch::new(policy, mono());
    // The failure signal takes the HIGH slot; nothing else is ever played here.
    let audio = ward_annunciate::Annunciator::start_with([
        tone::spec(Priority::Low),
        tone::spec(Priority::Medium),
        tone::failure_spec(),
    ]);
    let notifier = ward_annunciate::Notifier::start(true);
    let mut current: Option<u64> = None;
    let mut said_mute = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Msg::Hello { conn, station, pid }) => {
                current = Some(conn);
                watch.hello(mono(), &station, pid);
            }
            Ok(Msg::Beat { conn }) if current == Some(conn) => watch.beat(mono()),
            Ok(Msg::Bye { conn, reason }) if current == Some(conn) => {
                current = None;
                watch.goodbye(mono(), &reason);
            }
            Ok(Msg::Closed { conn }) if current == Some(conn) => {
                current = None;
                watch.closed(mono());
            }
            Ok(Msg::Confirm { user, mut reply }) => {
                let answer = match watch.confirm(mono(), &user) {
                    Ok(()) => json!({ "ok": true }),
                    Err(e) => {
                        tracing::warn!(%user, error = %e, "confirmation refused");
                        json!({ "error": e })
                    }
                };
                let _ = writeln!(reply, "{answer}");
            }
            Ok(Msg::Bad { conn, line }) => {
                let line: String = line.chars().take(200).collect();
                tracing::warn!(conn, %line, "sentinel: unreadable line on its channel, ignored");
            }
            // Beats, goodbyes and closes of an old connection: the station has a new one.
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                tracing::error!("sentinel: its listener stopped");
                break;
            }
        }
        watch.poll(mono());
        for (_, e) in watch.drain() {
            report(&e, &a.station, &notifier);
        }
        audio.set(watch.sounding().then_some(Priority::High));
        let st = audio.status();
        let mute = !st.ok && !st.detail.is_empty() && watch.sounding();
        if mute && !said_mute {
            // Nothing more it can do than say so (once) where someone may read it.
            tracing::error!(detail = %st.detail, "sentinel: cannot sound the failure signal");
        }
        said_mute = mute;
        if watch.stopped() && !watch.sounding() {
            tracing::info!("sentinel stopping: the station stopped in order");
            break;
        }
        if !a.data_dir.exists() {
            // The station was removed (a package purge, a test's temporary directory): there
            // is nothing left to watch.
            tracing::warn!(dir = %a.data_dir.display(), "sentinel stopping: the station's data directory is gone");
            break;
        }
    }
    audio.set(None);
    if info_addr(&a.data_dir).is_some_and(|p| p.port() == port) {
        let _ = std::fs::remove_file(&info);
    }
    Ok(())
}

fn secs_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn report(e: &WatchEvent, station: &str, notifier: &ward_annunciate::Notifier) {
    match e {
        WatchEvent::Connected { station, pid } => {
            tracing::info!(%station, pid, "sentinel: station connected")
        }
        WatchEvent::Stopped { reason } => {
            tracing::info!(%reason, "sentinel: station stopped in order")
        }
        WatchEvent::Failed { reason } => {
            tracing::error!(%reason, "sentinel: ALARM SYSTEM FAILURE, sounding");
            notifier.send(ward_annunciate::Notice {
                priority: Priority::High,
                summary: format!("{station}: alarm system failure"),
                body: format!("{reason}. Check the patients of this station directly."),
            });
        }
        WatchEvent::Confirmed { user } => {
            tracing::warn!(%user, "sentinel: failure confirmed")
        }
        WatchEvent::Back => tracing::warn!("sentinel: the station is beating again"),
        WatchEvent::SignalEnded { why } => {
            tracing::warn!(%why, "sentinel: failure signal ended")
        }
    }
}

/// The station's side: starts the sentinel if none answers, says hello, beats every second
/// while the alarm loop ticks, and starts a new sentinel when the link breaks. While there is
/// no sentinel the station shows the LOW technical alarm "Alarm sentinel not running"; every
/// (re)start is in the audit trail.
pub struct Link {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Link {
    pub fn start(
        exe: PathBuf,
        cfg: &ward_core::Config,
        station: &ward_core::StationHandle,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let ctx = LinkCtx {
            exe,
            data_dir: cfg.data_dir.clone(),
            name: cfg.station_name.clone(),
            origin: cfg.station_id.clone(),
            watch: cfg.sentinel.watch.clone(),
            alarms: station.alarms().clone(),
        };
        let thread = std::thread::Builder::new()
            .name("sentinel-link".into())
            .spawn(move || ctx.run(&s))
            .map_err(|e| tracing::error!(error = %e, "cannot start the sentinel link"))
            .ok();
        Self { stop, thread }
    }

    /// An orderly stop: the sentinel is told goodbye and stops without sounding.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct LinkCtx {
    exe: PathBuf,
    data_dir: PathBuf,
    name: String,
    origin: String,
    watch: WatchPolicy,
    alarms: ward_core::AlarmsHandle,
}

impl LinkCtx {
    fn audit(&self, kind: &str, detail: String) {
        self.alarms.audit(ward_store::AuditEvent {
            origin: self.origin.clone(),
            t_ms: ward_store::wall_clock_ms(),
            actor: "system".into(),
            kind: kind.into(),
            bed: None,
            detail,
        });
    }

    fn spawn(&self) -> std::io::Result<std::process::Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join(LOG_FILE))?;
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.arg("sentinel")
            .arg("run")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--station")
            .arg(&self.name)
            .arg("--heartbeat-timeout-s")
            .arg((self.watch.heartbeat_timeout_ms / 1000).to_string())
            .arg("--min-signal-s")
            .arg((self.watch.min_signal_ms / 1000).to_string())
            .arg("--startup-grace-s")
            .arg((self.watch.startup_grace_ms / 1000).to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            // The service manager's channel is the station's, not the sentinel's.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID");
        // Its own process group: a Ctrl-C at the station's terminal, or a signal to the
        // station's group, must not take the sentinel down with it.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.spawn()
    }

    /// A connection to a sentinel for this data directory, started if none answers.
    fn connect(&self, child: &mut Option<std::process::Child>) -> Result<TcpStream, String> {
        if let Some(s) = connect(&self.data_dir) {
            return Ok(s);
        }
        let _ = std::fs::remove_file(self.data_dir.join(INFO_FILE));
        let c = self
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.exe.display()))?;
        let pid = c.id();
        *child = Some(c);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Some(s) = connect(&self.data_dir) {
                tracing::info!(pid, "sentinel started");
                self.audit("sentinel.started", json!({ "pid": pid }).to_string());
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "sentinel (pid {pid}) started but did not answer within 10 s"
        ))
    }

    fn run(&self, stop: &AtomicBool) {
        let mut child: Option<std::process::Child> = None;
        let mut link: Option<TcpStream> = None;
        let mut beats: u64 = 0;
        let mut down_reported = false;
        while !stop.load(Ordering::Relaxed) {
            // Reap a sentinel that ended, so it leaves no zombie behind.
            if let Some(c) = child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    tracing::warn!(%status, "the sentinel process ended");
                    child = None;
                }
            }
            if link.is_none() {
                match self.connect(&mut child) {
                    Ok(mut s) => {
                        let hello =
                            json!({ "hello": { "station": self.name, "pid": std::process::id() } });
                        if writeln!(s, "{hello}").is_ok() {
                            link = Some(s);
                            if down_reported {
                                self.alarms.report_technical(
                                    ward_alarm::Technical::SentinelDown,
                                    false,
                                    "",
                                );
                                down_reported = false;
                            }
                        }
                    }
                    Err(reason) => {
                        tracing::error!(%reason, "no sentinel watches this station");
                        if !down_reported {
                            self.alarms.report_technical(
                                ward_alarm::Technical::SentinelDown,
                                true,
                                &reason,
                            );
                            down_reported = true;
                        }
                    }
                }
            }
            // Beat only while the alarm loop ticks: a stalled alarm thread stops the beats
            // though this thread and the process live on.
            if let Some(s) = link.as_mut() {
                if self.alarms.loop_alive() {
                    beats += 1;
                    if writeln!(s, "{}", json!({ "beat": beats })).is_err() {
                        tracing::error!("the sentinel's link broke: starting a new sentinel");
                        self.audit(
                            "sentinel.lost",
                            json!({ "reason": "its link broke (process ended or killed)" })
                                .to_string(),
                        );
                        self.alarms.report_technical(
                            ward_alarm::Technical::SentinelDown,
                            true,
                            "its link broke; restarting it",
                        );
                        down_reported = true;
                        link = None;
                        continue;
                    }
                }
            }
            let until = Instant::now() + BEAT_EVERY;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Some(mut s) = link {
            let _ = writeln!(s, "{}", json!({ "bye": "the station stopped in order" }));
            let _ = s.flush();
        }
        if let Some(mut c) = child {
            // It exits by itself after the goodbye; wait briefly so it is reaped.
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
