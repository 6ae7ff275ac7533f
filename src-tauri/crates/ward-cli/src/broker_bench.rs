//! `wardwatch bench broker`: ward-broker and Debian's Mosquitto 2, side by side in one run,
//! under one load generator (this process, rumqttc clients).
//!
//! Each broker runs as its own process on a free loopback port, so its CPU time is read from
//! /proc alone; on a machine with two or more cores each broker is pinned to core 1 (taskset)
//! and the load generator to core 0, so neither competes with the other for a core. Cases:
//!
//! - saturation: 4 unpaced publishers to 1 subscriber, 64 B and 512 B payloads, QoS 0, 1
//!   and 2 (the QoS 2 subscriber holds a persistent session, so ward-broker writes every
//!   message to its store before acknowledging it; Mosquitto keeps it in memory);
//! - ward-like: many connections at a modest rate each, as a ward's monitors publish: 40
//!   publishers at 20,000 msg/s in total (QoS 0 and QoS 1, 512 B) and 20 at 2,000 msg/s
//!   (QoS 2).
//!
//! Reported: messages delivered of those sent, throughput, broker CPU microseconds per
//! message, end-to-end latency p50/p99.

use anyhow::{bail, Context};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Case {
    pub label: String,
    pub size: usize,
    pub qos: u8,
    /// Messages per second across all publishers (None: as fast as they go).
    pub rate: Option<u32>,
    pub publishers: usize,
    pub per_publisher: usize,
}

pub struct Row {
    pub broker: &'static str,
    pub case: String,
    pub sent: usize,
    pub received: usize,
    pub msgs_per_s: f64,
    pub cpu_us_per_msg: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub(crate) struct Peer {
    name: &'static str,
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listening on {addr}")
}

/// The core a broker runs on, when the machine has two or more: the load generator (this
/// process, pinned by `make bench` to core 0) then never takes the broker's core.
fn broker_core() -> Option<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let taskset = Path::new("/usr/bin/taskset").exists();
    (cores >= 2 && taskset).then_some(1)
}

fn pinned(program: &Path) -> Command {
    match broker_core() {
        Some(core) => {
            let mut c = Command::new("/usr/bin/taskset");
            c.args(["-c", &core.to_string()]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn start_ward(dir: &Path) -> anyhow::Result<Peer> {
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let exe = std::env::current_exe()?;
    let child = pinned(&exe)
        .args([
            "broker",
            "serve",
            "--allow-anonymous",
            "--listen",
            &addr.to_string(),
        ])
        .arg("--store")
        .arg(dir.join("broker.sqlite"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    wait_listening(addr)?;
    Ok(Peer {
        name: "ward-broker",
        child,
        addr,
    })
}

pub(crate) fn start_mosquitto(dir: &Path) -> anyhow::Result<Peer> {
    let port = free_port()?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let conf = dir.join("mosquitto.conf");
    // Queues large enough that Mosquitto drops nothing in these runs (its default of 1000
    // queued messages would), in-memory as Mosquitto is by default.
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\nmax_inflight_messages 100\nlog_dest none\n"
        ),
    )?;
    let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("Debian's mosquitto is not installed (make bench installs it)")?;
    let child = pinned(Path::new(bin))
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_listening(addr)?;
    Ok(Peer {
        name: "mosquitto",
        child,
        addr,
    })
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn opts(id: &str, addr: SocketAddr, clean: bool) -> MqttOptions {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(60));
    o.set_clean_session(clean);
    o.set_inflight(100);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o
}

async fn run_case(peer: &Peer, case: &Case, n: usize, ticks: f64) -> anyhow::Result<Row> {
    let addr = peer.addr;
    let total = case.per_publisher * case.publishers;
    let topic = format!("bench/{}/{}", case.label, n);
    // Subscriber: persistent for QoS 2 (durable), clean otherwise.
    let sub_id = format!("bench-sub-{n}");
    let (sub, mut sev) = AsyncClient::new(opts(&sub_id, addr, case.qos < 2), 10_000);
    sub.subscribe(&topic, qos(case.qos)).await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sev.poll()).await?? {
            Event::Incoming(Packet::SubAck(_)) => break,
            _ => continue,
        }
    }
    let t0 = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total)));
    let (r2, l2) = (received.clone(), lat.clone());
    let receiver = tokio::spawn(async move {
        let mut idle = 0;
        while r2.load(Ordering::Relaxed) < total as u64 {
            match tokio::time::timeout(Duration::from_secs(1), sev.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    idle = 0;
                    r2.fetch_add(1, Ordering::Relaxed);
                    if p.payload.len() >= 8 {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&p.payload[..8]);
                        let sent_us = u64::from_le_bytes(b);
                        let now_us = t0.elapsed().as_micros() as u64;
                        if let Ok(mut l) = l2.lock() {
                            l.push(now_us.saturating_sub(sent_us));
                        }
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    idle += 1;
                    if idle >= 5 {
                        break;
                    }
                }
            }
        }
    });
    let cpu0 = crate::ward_bench::cpu_seconds(peer.child.id(), ticks)?;
    let start = Instant::now();
    let mut pubs = Vec::new();
    for p in 0..case.publishers {
        let (c, mut ev) = AsyncClient::new(opts(&format!("bench-pub-{n}-{p}"), addr, true), 1000);
        let topic = topic.clone();
        let case_qos = case.qos;
        let size = case.size.max(8);
        let per = case.per_publisher;
        let gap = case
            .rate
            .map(|r| Duration::from_secs_f64(case.publishers as f64 / f64::from(r)));
        let poller = tokio::spawn(async move {
            // Drives the connection until the publisher's last acknowledgement.
            let mut acked = 0;
            while acked < per || case_qos == 0 {
                match ev.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_))) => acked += 1,
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        pubs.push(tokio::spawn(async move {
            let mut next = Instant::now();
            for _ in 0..per {
                if let Some(g) = gap {
                    next += g;
                    tokio::time::sleep_until(next.into()).await;
                }
                let mut payload = vec![0u8; size];
                let us = t0.elapsed().as_micros() as u64;
                payload[..8].copy_from_slice(&us.to_le_bytes());
                if c.publish(topic.as_str(), qos(case_qos), false, payload)
                    .await
                    .is_err()
                {
                    break;
                }
            }
            if case_qos > 0 {
                let _ = poller.await;
            } else {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let _ = c.disconnect().await;
        }));
    }
    for p in pubs {
        let _ = p.await;
    }
    let _ = receiver.await;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = crate::ward_bench::cpu_seconds(peer.child.id(), ticks)? - cpu0;
    let got = received.load(Ordering::Relaxed) as usize;
    let _ = sub.disconnect().await;
    let mut l = lat.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_unstable();
    let pct = |q: f64| ward_core::percentile(&l, q) as f64 / 1000.0;
    Ok(Row {
        broker: peer.name,
        case: case.label.clone(),
        sent: total,
        received: got,
        msgs_per_s: got as f64 / elapsed,
        cpu_us_per_msg: cpu * 1e6 / got.max(1) as f64,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

pub fn cases(quick: bool) -> Vec<Case> {
    let per = if quick { 2_000 } else { 25_000 };
    let mut v = Vec::new();
    for size in [64, 512] {
        for q in [0u8, 1, 2] {
            v.push(Case {
                label: format!("q{q}-{size}B"),
                size,
                qos: q,
                rate: None,
                publishers: 4,
                per_publisher: if q == 2 { per / 2 } else { per },
            });
        }
    }
    // Ward-like: seconds of steady load at the rate a unit's monitors make, many connections
    // each at a modest rate (the cost is per wake-up and per syscall here, not per byte).
    let seconds = if quick { 2 } else { 15 };
    for (publishers, rate, q) in [(40, 20_000u32, 0u8), (40, 20_000, 1), (20, 2_000, 2)] {
        v.push(Case {
            label: format!("paced-{publishers}p-{}k-q{q}-512B", rate / 1000),
            size: 512,
            qos: q,
            rate: Some(rate),
            publishers,
            per_publisher: rate as usize * seconds / publishers,
        });
    }
    v
}

pub async fn run(quick: bool, only: Option<&str>) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let ticks = 100.0;
    let ward = start_ward(dir.path())?;
    let mosq = start_mosquitto(dir.path())?;
    let mut rows = Vec::new();
    let chosen = cases(quick)
        .into_iter()
        .filter(|c| only.is_none_or(|o| c.label.contains(o)));
    for (n, case) in chosen.enumerate() {
        // Alternate which broker goes first so neither always runs on a warmer machine.
        let order: [&Peer; 2] = if n % 2 == 0 {
            [&ward, &mosq]
        } else {
            [&mosq, &ward]
        };
        for peer in order {
            let row = run_case(peer, &case, n, ticks).await?;
            eprintln!(
                "{:<11} {:<18} {:>7}/{:<7} {:>9.0} msg/s {:>6.1} us/msg p50 {:.2} ms p99 {:.2} ms",
                row.broker,
                row.case,
                row.received,
                row.sent,
                row.msgs_per_s,
                row.cpu_us_per_msg,
                row.p50_ms,
                row.p99_ms
            );
            rows.push(row);
        }
    }
    Ok(rows)
}

pub fn report(rows: &[Row]) -> String {
    let mut s = String::from(
        "| Case | Broker | Delivered | Throughput (msg/s) | Broker CPU (µs/msg) | p50 (ms) | p99 (ms) | Throughput ratio | CPU ratio |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows.iter().filter(|r| r.broker == "ward-broker") {
        let m = rows
            .iter()
            .find(|m| m.broker == "mosquitto" && m.case == r.case);
        for x in [Some(r), m].into_iter().flatten() {
            let (tr, cr) = match (x.broker, m) {
                ("ward-broker", Some(m)) => (
                    format!("{:.2}", r.msgs_per_s / m.msgs_per_s),
                    format!("{:.2}", r.cpu_us_per_msg / m.cpu_us_per_msg),
                ),
                _ => ("1.00".into(), "1.00".into()),
            };
            s.push_str(&format!(
                "| {} | {} | {}/{} | {:.0} | {:.1} | {:.2} | {:.2} | {} | {} |\n",
                x.case,
                x.broker,
                x.received,
                x.sent,
                x.msgs_per_s,
                x.cpu_us_per_msg,
                x.p50_ms,
                x.p99_ms,
                tr,
                cr
            ));
        }
    }
    s.push_str("\nRatios are ward-broker / Mosquitto (throughput: higher is better; CPU: lower is better). QoS 2 runs use a persistent subscriber session, so ward-broker commits every message to SQLite before PUBREC; Mosquitto keeps it in memory.\n");
    s
}
