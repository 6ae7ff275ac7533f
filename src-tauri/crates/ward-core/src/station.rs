//! The composition: [`Station::start`] builds every part in dependency order and registers
//! each one's stop with the [`Lifecycle`]; [`StationHandle::shutdown`] walks it.

use crate::alarms::{self, Input};
use crate::clock::now_ms;
use crate::error::CoreError;
#[cfg(feature = "sim")]
use crate::handle::SimStatsSlot;
use crate::handle::{
    AdminHandle, AlarmsHandle, LiveHandle, ReviewHandle, StaffHandle, StationHandle,
};
use crate::ingest;
use crate::lifecycle::{Lifecycle, Stage};
use crate::live;
use crate::writer::Writer;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use ward_config::Config;
use ward_store::{Record, RecordSink};

/// Capacity of the in-process queue from broker to ingest. QoS 1/2 publishers wait when it
/// is full; QoS 0 messages are dropped and counted by the broker.
const INGEST_QUEUE: usize = 65_536;

/// What a running station writes to `runtime.json` in its data directory, so operators and
/// tests can find the port it actually bound.
#[derive(Debug, Serialize)]
struct RuntimeInfo<'a> {
    pid: u32,
    broker: String,
    /// The TLS listener, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_tls: Option<String>,
    /// The WebSocket listeners, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_ws: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_wss: Option<String>,
    /// The HL7 ADT feed's listener, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    hl7_adt: Option<String>,
    database: String,
    started_ms: i64,
    station: &'a str,
}

/// The alarm driver's never-drop queue as a record sink (users, assignments, denials and
/// their audit events, in the order they happened).
struct DriverQueue(std::sync::mpsc::Sender<Input>);

impl RecordSink for DriverQueue {
    fn append(&self, records: Vec<Record>) -> bool {
        self.0.send(Input::Records(records)).is_ok()
    }
}

pub struct Station;

/// An audit event about the station itself.
fn station_event(cfg: &Config, kind: &str, detail: serde_json::Value) -> ward_store::AuditEvent {
    ward_store::AuditEvent {
        origin: cfg.station_id.clone(),
        t_ms: now_ms(),
        actor: "system".into(),
        kind: kind.into(),
        bed: None,
        detail: detail.to_string(),
    }
}

/// Each configured bed's limit rules: edited ones from the database, else the defaults of
/// its patient category.
fn bed_setups(cfg: &Config) -> Result<Vec<alarms::BedSetup>, CoreError> {
    let mut rules = crate::burden::stored_rules(cfg)?;
    Ok(cfg
        .beds
        .iter()
        .map(|b| {
            let id = b.id.to_string();
            alarms::BedSetup {
                rules: rules.remove(&id).unwrap_or_default(),
                id,
                label: b.label.clone(),
                monitored: b.device.is_some(),
            }
        })
        .collect())
}

/// This station's bed alarms as its followers see them (care group).
fn shared_alarms(
    shared: &alarms::Shared,
    labels: &BTreeMap<String, String>,
) -> Vec<ward_alarm::care::SharedAlarm> {
    let Ok(alarms) = shared.alarms.lock() else {
        return Vec::new();
    };
    alarms
        .iter()
        .filter_map(|a| {
            let bed = a.bed.clone()?;
            Some(ward_alarm::care::SharedAlarm {
                bed_label: labels.get(&bed).cloned().unwrap_or_else(|| bed.clone()),
                bed,
                key: a.key.clone(),
                label: a.label.clone(),
                priority: a.priority,
                onset_ms: a.onset_ms,
                silenced: !a.audible(),
                acknowledged_by: match &a.inactivation {
                    ward_alarm::Inactivation::Acknowledged { by, .. } => Some(by.clone()),
                    _ => None,
                },
                latched: !a.cause_active,
            })
        })
        .collect()
}

/// What the log holds of an earlier run: whether there was one, and its unfinished alarms.
fn previous_run(cfg: &Config) -> Result<alarms::Previous, CoreError> {
    let store = ward_store::Store::open_read_only(&cfg.db_path())?;
    Ok(alarms::Previous {
        ran_before: store.station_ran_before()?,
        unfinished: store.unfinished_alarms()?,
        max_alarm_id: store.max_alarm_id()?,
    })
}

/// The config's device-to-bed map with the admissions and discharges made at the station
/// laid over it (the station's decisions are newer than the file). A device admitted to a
/// bed leaves the bed the file had it at.
fn with_admitted_devices(mut cfg: Config) -> Result<Config, CoreError> {
    let stored = ward_store::Store::open_read_only(&cfg.db_path())?.bed_devices()?;
    for (bed, device) in stored {
        let device = match device.map(ward_model::DeviceId::new).transpose() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(%bed, error = %e, "stored admission unreadable; keeping the config's");
                continue;
            }
        };
        if let Some(d) = &device {
            for b in cfg.beds.iter_mut().filter(|b| b.device.as_ref() == Some(d)) {
                b.device = None;
            }
        }
        if let Some(b) = cfg.beds.iter_mut().find(|b| b.id.as_str() == bed) {
            b.device = device;
        }
    }
    Ok(cfg)
}

/// A database found damaged at start-up and moved aside: which, where it is now, and why.
struct Replaced {
    what: &'static str,
    kept_at: std::path::PathBuf,
    reason: String,
}

/// Checks the station's and the broker's databases before anything opens them. A damaged
/// one is moved aside (renamed with the time, never deleted) so the station starts on a new
/// file and monitors at once; the HIGH technical alarm and the audit trail say where the old
/// file is. A file that cannot even be renamed stops the start with the reason.
///
/// What is checked here must not grow with the file: a full `quick_check` reads every page
/// (measured 0.75 s/GB with the file cached, 23 s/GB from a cold disk), so a full 36 GB ward
/// database would hold monitoring back for minutes. The station database gets the cheap
/// check ([`ward_store::salvage::check_opening`]) and the reads start-up itself makes; the
/// full check runs after start-up ([`check_in_background`]) and leaves a mark that the
/// next start acts on. The broker store is checked in full here: it is bounded by the
/// broker's queue limits, and the broker reads all of it at start anyway.
fn guard_databases(cfg: &Config) -> Result<Vec<Replaced>, CoreError> {
    use ward_store::salvage::{self, Health};
    let mut out = Vec::new();
    let files = [
        ("station database", Some(cfg.db_path())),
        ("broker store", cfg.broker.store.clone()),
    ];
    for (what, path) in files {
        let Some(path) = path else { continue };
        let reason = match salvage::take_mark(&path) {
            Some(found) if path.exists() => {
                Some(format!("found by the full check of the last run: {found}"))
            }
            _ if what == "broker store" => match salvage::check(&path) {
                Health::Damaged(r) => Some(r),
                _ => None,
            },
            _ => match salvage::check_opening(&path) {
                Health::Damaged(r) => Some(r),
                Health::Ok => start_up_reads(cfg)
                    .err()
                    .map(|e| format!("start-up cannot read it: {e}")),
                Health::Missing => None,
            },
        };
        let Some(reason) = reason else { continue };
        let kept_at = salvage::move_aside(&path, now_ms()).map_err(|e| {
            CoreError::Start(format!(
                "the {what} {} is damaged ({reason}) and cannot be moved aside: {e}",
                path.display()
            ))
        })?;
        tracing::error!(%what, damaged = %path.display(), kept_at = %kept_at.display(), %reason,
            "damaged database moved aside; starting on a new one");
        out.push(Replaced {
            what,
            kept_at,
            reason,
        });
    }
    Ok(out)
}

/// The reads of the station database that start-up makes before the writer runs (the last
/// run's alarms, the admissions): if they fail, the file cannot be started on.
fn start_up_reads(cfg: &Config) -> Result<(), CoreError> {
    previous_run(cfg)?;
    ward_store::Store::open_read_only(&cfg.db_path())?.bed_devices()?;
    Ok(())
}

/// The full check of the databases, on its own thread once the station monitors. It reads
/// through its own read-only connection (the writer goes on: WAL), so the write-ahead log
/// grows while it runs and is checkpointed after. Damage found raises a HIGH technical alarm
/// for the rest of the run and leaves a mark beside the file: the next start moves it aside.
/// The station does not swap files while running; the writer goes on with the damaged file
/// until a restart (a storage alarm follows if its writes fail).
fn check_in_background(
    files: Vec<(&'static str, std::path::PathBuf)>,
    alarms: std::sync::mpsc::Sender<Input>,
    station: String,
) -> Result<(), CoreError> {
    std::thread::Builder::new()
        .name("ward-dbcheck".into())
        .spawn(move || {
            let mut found = Vec::new();
            for (what, path) in files {
                let began = std::time::Instant::now();
                let health = ward_store::salvage::check(&path);
                let seconds = began.elapsed().as_secs_f64();
                let size_mb = std::fs::metadata(&path).map(|m| m.len() / 1_000_000).unwrap_or(0);
                let ward_store::salvage::Health::Damaged(reason) = health else {
                    tracing::info!(%what, file = %path.display(), size_mb, seconds, "full database check: ok");
                    continue;
                };
                tracing::error!(%what, file = %path.display(), %reason, seconds, "full database check: damaged");
                let marked = match ward_store::salvage::mark_damaged(&path, &reason) {
                    Ok(()) => "the next start moves it aside and starts a new one".to_string(),
                    Err(e) => format!("the mark for the next start could not be written ({e}); move it aside by hand"),
                };
                let _ = alarms.send(Input::Audit(ward_store::AuditEvent {
                    origin: station.clone(),
                    t_ms: now_ms(),
                    actor: "system".into(),
                    kind: "store.damage_found".into(),
                    bed: None,
                    detail: serde_json::json!({ "what": what, "file": path.display().to_string(), "reason": reason, "check_seconds": seconds }).to_string(),
                }));
                found.push(format!(
                    "the {what} {} failed its check ({reason}); monitoring goes on with it; {marked} (restart when convenient, then `wardwatch store salvage`)",
                    path.display()
                ));
            }
            if !found.is_empty() {
                let _ = alarms.send(Input::Technical {
                    t: ward_alarm::Technical::DatabaseDamaged,
                    active: true,
                    detail: found.join(" | "),
                });
            }
        })
        .map(|_| ())
        .map_err(|e| CoreError::Start(format!("cannot start the database check: {e}")))
}

impl Station {
    pub async fn start(cfg: Config) -> Result<StationHandle, CoreError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|source| CoreError::DataDir {
            path: cfg.data_dir.display().to_string(),
            source,
        })?;
        let replaced = guard_databases(&cfg)?;
        let mut lifecycle = Lifecycle::new();
        let writer = Arc::new(Writer::start(
            cfg.db_path(),
            cfg.batch_interval,
            cfg.prune_every,
            cfg.retention,
            cfg.hold_when_failing,
        )?);
        {
            let writer = writer.clone();
            lifecycle.add(Stage::Writer, move || async move {
                // The writer's thread ends once everything queued is written.
                let _ = tokio::task::spawn_blocking(move || writer.finish()).await;
            });
        }
        let cfg = Arc::new(with_admitted_devices(cfg)?);

        // The alarm system starts before the broker accepts anyone, so the first value a
        // monitor sends is already judged.
        let (alarm_tx, alarm_rx) = std::sync::mpsc::channel();
        let alarm_shared = Arc::new(alarms::Shared::default());
        let (alarm_events, _) = tokio::sync::broadcast::channel(4096);
        let driver = alarms::Driver::new(
            cfg.station_id.clone(),
            cfg.alarm_policy.clone(),
            bed_setups(&cfg)?,
            writer.clone(),
            cfg.notifications,
            alarm_events.clone(),
            alarm_shared.clone(),
            (previous_run(&cfg)?, cfg.care_group.policy.clone()),
        )?;
        let notify_counters = driver.notify_counters();
        let _ = alarm_tx.send(Input::Audit(station_event(
            &cfg,
            "station.start",
            serde_json::json!({ "version": env!("CARGO_PKG_VERSION"), "config": cfg.source }),
        )));
        // One alarm (one condition), naming every file replaced.
        let mut details = Vec::new();
        for r in &replaced {
            let after = if r.what == "station database" {
                format!(
                    "`wardwatch store salvage --from {}` copies back what can be read",
                    r.kept_at.display()
                )
            } else {
                "its sessions and queued messages stay in the old file; devices reconnect".into()
            };
            details.push(format!(
                "the {} was damaged ({}); kept at {}; a new one was started; {after}",
                r.what,
                r.reason,
                r.kept_at.display(),
            ));
            let _ = alarm_tx.send(Input::Audit(station_event(
                &cfg,
                "store.damaged",
                serde_json::json!({ "what": r.what, "kept_at": r.kept_at.display().to_string(), "reason": r.reason }),
            )));
        }
        if !details.is_empty() {
            let _ = alarm_tx.send(Input::Technical {
                t: ward_alarm::Technical::DatabaseReplaced,
                active: true,
                detail: details.join(" | "),
            });
        }
        let staff = Arc::new(ward_access::Staff::start(
            cfg.access.clone(),
            cfg.db_path(),
            cfg.station_id.clone(),
            Arc::new(DriverQueue(alarm_tx.clone())),
        )?);
        let alarm_thread = std::thread::Builder::new()
            .name("ward-alarms".into())
            .spawn(move || driver.run(alarm_rx))
            .map_err(|e| CoreError::Start(format!("cannot start the alarm driver: {e}")))?;
        // Only now, with the alarm system running, the full check of the station database.
        check_in_background(
            vec![("station database", cfg.db_path())],
            alarm_tx.clone(),
            cfg.station_id.clone(),
        )?;
        {
            let tx = alarm_tx.clone();
            let stop = station_event(&cfg, "station.stop", serde_json::json!({}));
            lifecycle.add(Stage::AlarmDriver, move || async move {
                // In the driver's own queue, so it comes after everything already sent.
                let _ = tx.send(Input::Audit(stop));
                let _ = tx.send(Input::Stop);
                match tokio::task::spawn_blocking(move || alarm_thread.join()).await {
                    Ok(Ok(())) => {}
                    _ => tracing::error!("alarm driver thread panicked"),
                }
            });
        }

        let mut broker_cfg = cfg.broker.clone();
        #[allow(unused_mut)]
        let mut auth = cfg.broker_auth.clone();
        // Simulated monitors authenticate like real ones when anonymous access is off: each
        // device id gets this run's random password (hashed once, in memory only).
        #[cfg(feature = "sim")]
        let sim_password = if cfg.sim_beds > 0 && !auth.allow_anonymous {
            let secret = ward_access::new_token()?;
            let hash = ward_broker::auth::hash_password(&secret).map_err(|e| {
                CoreError::Start(format!("cannot hash the simulator's password: {e}"))
            })?;
            for bed in 1..=cfg.sim_beds {
                auth.passwords
                    .insert(&ward_sim::device_id("sim", bed), hash.clone());
            }
            Some(secret)
        } else {
            None
        };
        broker_cfg.auth = ward_broker::AuthHook(Arc::new(auth));
        let broker = ward_broker::start(broker_cfg).await?;
        let broker_addr = broker.local_addr();
        let mut listeners = Listeners {
            adt: None,
            tls: broker.tls_addr(),
            ws: broker.ws_addr(),
            wss: broker.wss_addr(),
        };
        let broker_view = broker.metrics_view();
        // Confirmed: a device's QoS 1/2 message is acknowledged once its records are committed.
        let rx =
            broker.subscribe_local_confirmed(ward_model::topic::DEVICE_FILTER, INGEST_QUEUE)?;
        lifecycle.add(Stage::Broker, move || broker.shutdown());

        let live = Arc::new(Mutex::new(live::LiveState::new(&cfg)));
        let counters: ingest::IngestCounters = Arc::default();
        let ingest = ingest::Ingest::new(
            live.clone(),
            writer.clone(),
            counters.clone(),
            alarm_tx.clone(),
            cfg.station_id.clone(),
        );
        let token = lifecycle.token();
        let task = tokio::spawn(ingest.run(rx, token.clone()));
        lifecycle.add_task(Stage::Ingest, token, task);

        let sync_status = ward_sync::SharedStatus::default();
        if let Some(up) = &cfg.upstream {
            if let Ok(mut s) = sync_status.lock() {
                s.enabled = true;
                s.upstream = up.name.clone();
            }
            let worker = ward_sync::Worker {
                cfg: up.clone(),
                origin: cfg.station_id.clone(),
                db: cfg.db_path(),
                writer: writer.clone(),
                status: sync_status.clone(),
            };
            let tx = Mutex::new(alarm_tx.clone());
            let peer_tx = Mutex::new(alarm_tx.clone());
            let follow_tx = Mutex::new(alarm_tx.clone());
            let peers = ward_sync::PeerListener {
                origin: cfg.station_id.clone(),
                follow: cfg.care_group.follow.clone(),
                followed: Box::new(move |list| {
                    if let Ok(tx) = follow_tx.lock() {
                        let _ = tx.send(Input::Followed(list));
                    }
                }),
                liveness: Box::new(move |change: ward_sync::PeerChange| {
                    let input = match change {
                        ward_sync::PeerChange::Down {
                            peer,
                            label,
                            reason,
                        } => Input::Peer {
                            peer,
                            down: true,
                            label,
                            detail: reason,
                        },
                        ward_sync::PeerChange::Up { peer, label } => Input::Peer {
                            peer,
                            down: false,
                            label,
                            detail: String::new(),
                        },
                    };
                    if let Ok(tx) = peer_tx.lock() {
                        let _ = tx.send(input);
                    }
                }),
                cfg: up.clone(),
                status: sync_status.clone(),
                acks: Box::new(move |ack: ward_sync::PeerAck| {
                    if let Ok(tx) = tx.lock() {
                        let _ = tx.send(Input::Command {
                            command: ack.command,
                            user: ack.user,
                            reply: None,
                        });
                    }
                }),
            };
            tracing::info!(upstream = %up.name, tls = up.ca_file.is_some(), "store-and-forward to the hospital core");
            // This station's liveness for its peers: beats only while the alarm loop ticks.
            let shared = alarm_shared.clone();
            let published = alarm_shared.clone();
            let labels: BTreeMap<String, String> = cfg
                .beds
                .iter()
                .map(|b| (b.id.to_string(), b.label.clone()))
                .collect();
            let liveness = ward_sync::Liveness {
                cfg: up.clone(),
                origin: cfg.station_id.clone(),
                alive: Arc::new(move || shared.loop_alive()),
                alarms: Arc::new(move || shared_alarms(&published, &labels)),
            };
            let token = lifecycle.token();
            let outbox = worker.run(token.clone());
            let peers = peers.run(token.clone());
            let liveness = liveness.run(token.clone());
            let task = tokio::spawn(async move {
                tokio::join!(outbox, peers, liveness);
            });
            lifecycle.add_task(Stage::Sync, token, task);
        }

        #[cfg(feature = "sim")]
        let sim_stats = start_sim(
            &cfg,
            &mut lifecycle,
            broker_addr,
            sim_password,
            &broker_view,
        );
        #[cfg(not(feature = "sim"))]
        let sim_stats = ();

        let alarms = AlarmsHandle {
            tx: alarm_tx,
            shared: alarm_shared,
            events: alarm_events,
            notify: notify_counters,
            policy: Arc::new(cfg.alarm_policy.clone()),
            staff: staff.clone(),
            origin: cfg.station_id.clone(),
        };
        // The census, and the alarm limits of each bed's patient category (which can set
        // limits: after the alarm driver, before the first reader).
        let patients = {
            let (cfg, alarms) = (cfg.clone(), alarms.clone());
            let set_limits: crate::patients::SetLimits = Box::new(move |bed, rules, user| {
                let command = ward_alarm::AlarmCommand::SetRules {
                    bed: bed.to_string(),
                    rules,
                };
                alarms.run(command, user.to_string()).map(|_| ())
            });
            tokio::task::spawn_blocking(move || crate::patients::Patients::open(&cfg, set_limits))
                .await
                .map_err(|e| CoreError::Start(format!("census: {e}")))??
        };
        let hl7_counters = crate::hl7::Hl7Counters::default();
        let hl7_links = crate::hl7_out::Links::default();
        let burden = crate::burden::BurdenSlot::default();
        {
            let token = lifecycle.token();
            let adt = match cfg.hl7.adt_listen {
                Some(addr) => {
                    let l = tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|e| CoreError::Start(format!("hl7.adt_listen {addr}: {e}")))?;
                    listeners.adt = l.local_addr().ok();
                    tracing::info!(addr = ?listeners.adt, "HL7 ADT feed listening");
                    let feed = Arc::new(crate::hl7::AdtFeed::new(
                        cfg.hl7.clone(),
                        cfg.beds.clone(),
                        patients.clone(),
                        hl7_counters.clone(),
                    ));
                    let tls = match &cfg.hl7.adt_tls {
                        None => None,
                        Some((cert, key)) => Some(
                            ward_broker::acceptor_for(&ward_broker::TlsConfig {
                                listen: addr,
                                cert: cert.clone(),
                                key: key.clone(),
                                client_ca: None,
                                require_client_cert: false,
                                reload_interval: std::time::Duration::ZERO,
                            })
                            .map_err(|e| CoreError::Start(format!("hl7.adt_tls_cert: {e}")))?,
                        ),
                    };
                    Some(crate::hl7::serve(l, tls, feed, token.clone()))
                }
                None => None,
            };
            // PCD-01 and PCD-04 out, through the outbox.
            let out = (cfg.hl7.pcd01_to.is_some() || cfg.hl7.pcd04_to.is_some()).then(|| {
                if let Ok(mut l) = hl7_links.lock() {
                    for (dest, to) in [
                        (crate::hl7_out::PCD01, &cfg.hl7.pcd01_to),
                        (crate::hl7_out::PCD04, &cfg.hl7.pcd04_to),
                    ] {
                        if let Some(to) = to {
                            l.push(crate::hl7_out::LinkStatus {
                                dest: dest.into(),
                                to: to.clone(),
                                ..Default::default()
                            });
                        }
                    }
                }
                let alarms = alarms.clone();
                let out = Arc::new(crate::hl7_out::Out {
                    cfg: cfg.hl7.clone(),
                    db: cfg.db_path(),
                    origin: cfg.station_id.clone(),
                    patients: patients.clone(),
                    live: live.clone(),
                    rules: Box::new(move |bed| alarms.limits(bed)),
                    counters: hl7_counters.clone(),
                    links: hl7_links.clone(),
                });
                crate::hl7_out::run(out, token.clone())
            });
            // The console writes the census while the station runs: look once a second.
            let refresh = {
                let (p, t) = (patients.clone(), token.clone());
                async move {
                    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                    loop {
                        tokio::select! {
                            _ = t.cancelled() => break,
                            _ = tick.tick() => {
                                let p = p.clone();
                                let _ = tokio::task::spawn_blocking(move || p.refresh()).await;
                            }
                        }
                    }
                }
            };
            // The last 24 hours' alarm figures for the metrics, once a minute.
            let burden_refresh = {
                let (slot, t, cfg) = (burden.clone(), token.clone(), cfg.clone());
                let beds: Vec<String> = cfg.beds.iter().map(|b| b.id.to_string()).collect();
                async move {
                    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
                    loop {
                        tokio::select! {
                            _ = t.cancelled() => break,
                            _ = tick.tick() => {
                                let (slot, cfg, beds) = (slot.clone(), cfg.clone(), beds.clone());
                                let _ = tokio::task::spawn_blocking(move || {
                                    crate::burden::refresh(&cfg, &beds, &slot, now_ms())
                                })
                                .await;
                            }
                        }
                    }
                }
            };
            let task = tokio::spawn(async move {
                tokio::join!(
                    refresh,
                    burden_refresh,
                    async {
                        if let Some(a) = adt {
                            a.await
                        }
                    },
                    async {
                        if let Some(o) = out {
                            o.await
                        }
                    }
                );
            });
            lifecycle.add_task(Stage::Ingest, token, task);
        }

        let handle = StationHandle {
            broker_addr,
            staff: StaffHandle {
                staff: staff.clone(),
                beds: Arc::new(cfg.beds.iter().map(|b| b.id.to_string()).collect()),
            },
            review: ReviewHandle {
                cfg: cfg.clone(),
                staff: staff.clone(),
                alarms: alarms.clone(),
            },
            live: LiveHandle {
                cfg: cfg.clone(),
                broker_addr,
                broker: broker_view,
                live: live.clone(),
                counters,
                writer,
                sync: sync_status,
                alarms: alarms.clone(),
                patients: patients.clone(),
                hl7: hl7_counters,
                hl7_links,
                burden,
            },
            patients: crate::handle::PatientsHandle {
                staff: staff.clone(),
                patients,
            },
            admin: AdminHandle {
                staff,
                live,
                alarms: alarms.clone(),
            },
            alarms,
            cfg,
            lifecycle,
            sim_stats,
        };
        write_runtime_file(&handle.cfg, broker_addr, listeners);
        tracing::info!(broker = %broker_addr, db = %handle.cfg.db_path().display(), "station started");
        Ok(handle)
    }
}

/// The simulated ward: its stop waits, on the broker's connection count, until its monitors'
/// connections have ended (each after routing every packet it read), so stopping the broker
/// next cannot cut off what they sent.
#[cfg(feature = "sim")]
fn start_sim(
    cfg: &Config,
    lifecycle: &mut Lifecycle,
    broker_addr: std::net::SocketAddr,
    password: Option<String>,
    broker: &ward_broker::MetricsView,
) -> SimStatsSlot {
    let slot = SimStatsSlot::default();
    if cfg.sim_beds == 0 {
        return slot;
    }
    let mut sim_cfg = ward_sim::SimConfig::new(broker_addr, cfg.sim_beds);
    sim_cfg.scenarios = cfg.scenarios.clone();
    sim_cfg.password = password;
    // ward-sim stops on a watch channel of its own (it is also used without a station).
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tracing::info!(beds = cfg.sim_beds, "starting simulated ward");
    let task = tokio::spawn(ward_sim::run_ward(sim_cfg, stop_rx));
    let beds = cfg.sim_beds as u64;
    let broker = broker.clone();
    let stats = slot.clone();
    lifecycle.add(Stage::Simulator, move || async move {
        let before = broker.snapshot().connections_active;
        let _ = stop.send(true);
        match task.await {
            Ok(Ok(s)) => {
                if let Ok(mut slot) = stats.lock() {
                    *slot = Some(s);
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "simulator ended with an error"),
            Err(e) => tracing::error!(error = %e, "simulator task failed"),
        }
        let target = before.saturating_sub(beds);
        broker
            .wait_connections(target, std::time::Duration::from_secs(5))
            .await;
    });
    slot
}

/// The broker's listeners beside the plain one, as bound.
struct Listeners {
    adt: Option<std::net::SocketAddr>,
    tls: Option<std::net::SocketAddr>,
    ws: Option<std::net::SocketAddr>,
    wss: Option<std::net::SocketAddr>,
}

fn write_runtime_file(cfg: &Config, broker: std::net::SocketAddr, l: Listeners) {
    let text = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string());
    let info = RuntimeInfo {
        pid: std::process::id(),
        broker: broker.to_string(),
        broker_tls: text(l.tls),
        broker_ws: text(l.ws),
        broker_wss: text(l.wss),
        hl7_adt: text(l.adt),
        database: cfg.db_path().display().to_string(),
        started_ms: now_ms(),
        station: &cfg.station_name,
    };
    let path = cfg.runtime_path();
    // Write then rename, so a reader never sees half a file.
    let tmp = path.with_extension("json.tmp");
    let result = serde_json::to_vec_pretty(&info)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&tmp, b))
        .and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot write runtime file");
    }
}

impl StationHandle {
    /// Orderly stop, in the lifecycle's stage order (see `lifecycle`). Returns what the
    /// simulated ward sent, when there was one.
    #[cfg(feature = "sim")]
    pub async fn shutdown(self) -> Option<ward_sim::SimStats> {
        let StationHandle {
            cfg,
            lifecycle,
            sim_stats,
            ..
        } = self;
        finish(&cfg, lifecycle).await;
        let stats = sim_stats.lock().ok().and_then(|mut s| s.take());
        stats
    }

    /// Orderly stop, in the lifecycle's stage order (see `lifecycle`).
    #[cfg(not(feature = "sim"))]
    pub async fn shutdown(self) {
        let StationHandle { cfg, lifecycle, .. } = self;
        finish(&cfg, lifecycle).await;
    }
}

async fn finish(cfg: &Config, lifecycle: Lifecycle) {
    lifecycle.shutdown().await;
    let _ = std::fs::remove_file(cfg.runtime_path());
    tracing::info!("station stopped");
}
