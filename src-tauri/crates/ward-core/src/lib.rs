//! ward-core: the station service, with no window. The Tauri shell and the `wardwatch` CLI
//! both start a [`Station`] and talk to its [`StationHandle`].
//!
//! What it is: configuration, the embedded broker, in-process ingest, the store writer, the
//! live view (numerics, connection state, trace rings, binary frames for the UI), the
//! optional simulated ward, the runtime file, and an orderly shutdown that loses nothing the
//! broker accepted.
//!
//! What it is not: no UI, no Tauri, no sound. The alarm driver, upstream sync and export grow
//! here in later issues, each in its own module.
//!
//! Layout: `config`, `ingest`, `live`, `writer`, `summary` (headless text view), this file
//! (start, handle, shutdown).

pub mod config;
mod ingest;
pub mod live;
pub mod summary;
mod writer;

pub use config::Config;
pub use live::{BedView, Connection, FrameCursor};
pub use writer::StoreMetrics;

use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("config {file}: {}{reason}", if key.is_empty() { String::new() } else { format!("key `{key}`: ") })]
    Config {
        file: String,
        key: String,
        reason: String,
    },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Broker(#[from] ward_broker::BrokerError),
    #[error(transparent)]
    Store(#[from] ward_store::StoreError),
    #[error("simulator: {0}")]
    Sim(#[from] ward_sim::SimError),
    #[error("station start-up failed: {0}")]
    Start(String),
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Everything the station counts, for the window, the summary and tests.
#[derive(Debug, Clone, Serialize)]
pub struct StationMetrics {
    pub broker: ward_broker::MetricsSnapshot,
    /// Accepted messages by topic kind, refused ones by reason (bad_json, bad_wave, ...).
    pub ingest: BTreeMap<String, u64>,
    pub store: StoreMetrics,
}

#[derive(Debug, Clone, Serialize)]
pub struct WardSnapshot {
    pub station: String,
    pub now_ms: i64,
    pub broker: String,
    pub beds: Vec<BedView>,
    pub unassigned: Vec<live::DeviceView>,
    pub metrics: StationMetrics,
}

/// What a running station writes to `runtime.json` in its data directory, so operators and
/// tests can find the port it actually bound.
#[derive(Debug, Serialize)]
struct RuntimeInfo<'a> {
    pid: u32,
    broker: String,
    database: String,
    started_ms: i64,
    station: &'a str,
}

pub struct Station;

/// The simulated ward started with the station: its stop signal and its task.
type SimRun = (
    watch::Sender<bool>,
    JoinHandle<Result<ward_sim::SimStats, ward_sim::SimError>>,
);

pub struct StationHandle {
    cfg: Config,
    broker: Option<ward_broker::BrokerHandle>,
    broker_addr: SocketAddr,
    live: Arc<Mutex<live::LiveState>>,
    writer: Arc<writer::Writer>,
    counters: ingest::IngestCounters,
    ingest_stop: watch::Sender<bool>,
    ingest: Option<JoinHandle<()>>,
    sim: Option<SimRun>,
}

/// Capacity of the in-process queue from broker to ingest. QoS 1/2 publishers wait when it
/// is full; QoS 0 messages are dropped and counted by the broker.
const INGEST_QUEUE: usize = 65_536;

impl Station {
    pub async fn start(cfg: Config) -> Result<StationHandle, CoreError> {
        std::fs::create_dir_all(&cfg.data_dir).map_err(|source| CoreError::DataDir {
            path: cfg.data_dir.display().to_string(),
            source,
        })?;
        let writer = Arc::new(writer::Writer::start(
            cfg.db_path(),
            cfg.batch_interval,
            cfg.prune_every,
            cfg.retention,
        )?);
        let broker = ward_broker::start(cfg.broker.clone()).await?;
        let broker_addr = broker.local_addr();
        let rx = broker.subscribe_local(ward_model::topic::DEVICE_FILTER, INGEST_QUEUE)?;

        let live = Arc::new(Mutex::new(live::LiveState::new(&cfg)));
        let counters: ingest::IngestCounters = Arc::default();
        let (ingest_stop, stop_rx) = watch::channel(false);
        let ingest = ingest::Ingest::new(live.clone(), writer.clone(), counters.clone());
        let ingest = tokio::spawn(ingest.run(rx, stop_rx));

        let sim = if cfg.sim_beds > 0 {
            let mut sim_cfg = ward_sim::SimConfig::new(broker_addr, cfg.sim_beds);
            sim_cfg.scenarios = cfg.scenarios.clone();
            let (stop, stop_rx) = watch::channel(false);
            tracing::info!(beds = cfg.sim_beds, "starting simulated ward");
            Some((stop, tokio::spawn(ward_sim::run_ward(sim_cfg, stop_rx))))
        } else {
            None
        };

        let handle = StationHandle {
            cfg,
            broker: Some(broker),
            broker_addr,
            live,
            writer,
            counters,
            ingest_stop,
            ingest: Some(ingest),
            sim,
        };
        handle.write_runtime_file();
        tracing::info!(broker = %broker_addr, db = %handle.cfg.db_path().display(), "station started");
        Ok(handle)
    }
}

impl StationHandle {
    pub fn broker_addr(&self) -> SocketAddr {
        self.broker_addr
    }

    fn write_runtime_file(&self) {
        let info = RuntimeInfo {
            pid: std::process::id(),
            broker: self.broker_addr.to_string(),
            database: self.cfg.db_path().display().to_string(),
            started_ms: now_ms(),
            station: &self.cfg.station_name,
        };
        let path = self.cfg.runtime_path();
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

    pub fn metrics(&self) -> StationMetrics {
        let broker = self
            .broker
            .as_ref()
            .map(|b| b.metrics())
            .unwrap_or_default();
        let ingest = self
            .counters
            .lock()
            .map(|c| c.iter().map(|(k, v)| (k.to_string(), *v)).collect())
            .unwrap_or_default();
        StationMetrics {
            broker,
            ingest,
            store: self.writer.counters.snapshot(),
        }
    }

    pub fn snapshot(&self) -> WardSnapshot {
        let now = now_ms();
        let (beds, unassigned) = match self.live.lock() {
            Ok(l) => (l.beds(now), l.unassigned(now)),
            Err(_) => (Vec::new(), Vec::new()),
        };
        WardSnapshot {
            station: self.cfg.station_name.clone(),
            now_ms: now,
            broker: self.broker_addr.to_string(),
            beds,
            unassigned,
            metrics: self.metrics(),
        }
    }

    /// One binary live frame for a viewer (see `live` for the layout).
    pub fn frame(&self, cursor: &mut FrameCursor) -> Vec<u8> {
        match self.live.lock() {
            Ok(l) => l.frame(cursor, now_ms()),
            Err(_) => Vec::new(),
        }
    }

    /// Orderly stop: simulator (it disconnects cleanly after sending everything), broker,
    /// ingest (drains what the broker handed over), then the store writer (writes all queued).
    pub async fn shutdown(mut self) -> Option<ward_sim::SimStats> {
        let mut sim_stats = None;
        if let Some((stop, task)) = self.sim.take() {
            let before = self
                .broker
                .as_ref()
                .map(|b| b.metrics().connections_active)
                .unwrap_or(0);
            let _ = stop.send(true);
            match task.await {
                Ok(Ok(s)) => sim_stats = Some(s),
                Ok(Err(e)) => tracing::error!(error = %e, "simulator ended with an error"),
                Err(e) => tracing::error!(error = %e, "simulator task failed"),
            }
            // The simulated monitors have sent DISCONNECT; their connection tasks end only
            // after routing every packet before it. Wait for that (bounded) so stopping the
            // broker below cannot cut off what they already sent.
            let target = before.saturating_sub(self.cfg.sim_beds as u64);
            for _ in 0..250 {
                let active = self
                    .broker
                    .as_ref()
                    .map(|b| b.metrics().connections_active)
                    .unwrap_or(0);
                if active <= target {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        if let Some(b) = self.broker.take() {
            b.shutdown().await;
        }
        let _ = self.ingest_stop.send(true);
        if let Some(t) = self.ingest.take() {
            let _ = t.await;
        }
        match Arc::try_unwrap(self.writer) {
            Ok(mut w) => w.finish(),
            Err(_) => tracing::error!(
                "store writer still shared at shutdown; queued records may be unwritten"
            ),
        }
        let _ = std::fs::remove_file(self.cfg.runtime_path());
        tracing::info!("station stopped");
        sim_stats
    }
}
