//! ward-cli: the `wardwatch` command line.
//!
//! What it is: argument parsing and process plumbing (logging, signals, exit codes) around
//! ward-core and ward-sim. The desktop binary calls [`main_with`] too when it is started with
//! a subcommand, so one installed program serves both uses.
//!
//! What it is not: no station logic lives here; every subcommand is a few lines over a core
//! API.

mod accounts;
#[cfg(feature = "sim")]
pub mod bench;
#[cfg(feature = "sim")]
mod broker_bench;
mod broker_cmd;
mod exports;
mod hl7_cmd;
mod patients;
mod report_cmd;
pub mod sentinel;
#[cfg(feature = "sim")]
pub mod soak;
#[cfg(feature = "sim")]
pub mod ward_bench;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
#[cfg(feature = "sim")]
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "wardwatch",
    version,
    about = "Wardwatch central monitoring station"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the station headless: embedded broker, ingest, store; prints a live summary.
    Run(RunArgs),
    /// Run simulated bedside monitors against a broker.
    #[cfg(feature = "sim")]
    Sim(SimArgs),
    /// Validate a config file and print what it resolves to.
    CheckConfig {
        #[arg(long, env = "WARDWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print row counts of a station database.
    StoreStats {
        #[arg(long)]
        db: PathBuf,
    },
    /// The audit trail of a station database.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Benchmarks (`make bench` runs them in release builds).
    #[command(subcommand)]
    #[cfg(feature = "sim")]
    Bench(BenchCommand),
    /// Station users: add, change, list (works whether or not the station runs).
    #[command(subcommand)]
    Users(accounts::UsersCommand),
    /// Patients: admit, transfer, discharge, update, list (works whether or not the station
    /// runs; a running station shows the change within a second).
    #[command(subcommand)]
    Patients(patients::PatientsCommand),
    /// HL7 messages to the hospital: refused ones (kept for IT), the backlog.
    #[command(subcommand)]
    Hl7(hl7_cmd::Hl7Command),
    /// The hospital core's password in the OS credential store.
    #[command(subcommand)]
    Credentials(accounts::CredentialsCommand),
    /// Printable ECG strips and trend reports (PNG or SVG) from the station's database.
    #[command(subcommand)]
    Export(exports::ExportCommand),
    /// The station database: `store salvage` copies what can be read from a damaged one
    /// (moved aside at start-up) into the current one.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Reports over the station's database: `report alarms` (the unit's alarm burden).
    #[command(subcommand)]
    Report(report_cmd::ReportCommand),
    /// The embedded broker on its own: password file entries, or a broker without a station
    /// (benchmarks, drills, a test bench for device integrators).
    #[command(subcommand)]
    Broker(broker_cmd::BrokerCommand),
    /// The independent watcher that sounds when the station itself fails (the station
    /// starts it), and confirming its signal.
    #[command(subcommand)]
    Sentinel(sentinel::SentinelCommand),
    /// Write the manual pages (roff): wardwatch-station(1) and one per subcommand, as the
    /// .deb installs them.
    #[command(hide = true)]
    Manual {
        /// The directory to write them into.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy users, assignments, admissions, limits, the alarm log, the audit trail (as far as
    /// its hash chain verifies, kept beside the new chain) and the readable part of the ring
    /// buffer from a damaged database into the station's database. Once per file. Works while
    /// the station runs (its writer waits for the copy).
    Salvage {
        #[arg(long, env = "WARDWATCH_CONFIG")]
        config: Option<PathBuf>,
        /// The damaged file, as the station moved it aside (wardwatch.sqlite.damaged-...).
        #[arg(long)]
        from: PathBuf,
    },
    /// Print the database schema version this program writes and opens (the packages
    /// refuse a downgrade below a database's version with it).
    SchemaVersion,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain; names every edited, deleted or reordered event. Exit code 1 if
    /// anything is wrong.
    Verify {
        #[arg(long)]
        db: PathBuf,
    },
    /// Write every event as JSON lines (to standard output, or --out).
    Export {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[cfg(feature = "sim")]
#[derive(Subcommand)]
enum BenchCommand {
    /// PUBLISH crossing a limit → alarm event, p50/p99, while a simulated ward streams.
    AlarmLatency {
        /// Simulated beds streaming meanwhile (the bench bed is one more).
        #[arg(long, default_value_t = 63)]
        sim_beds: usize,
        #[arg(long, default_value_t = 300)]
        samples: usize,
        /// Markdown file to update between `<!-- bench:alarm-latency -->` markers.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A simulated ward against a headless station process: samples lost, CPU, RSS, commits.
    Ward {
        #[arg(long, default_value_t = 64)]
        beds: usize,
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Markdown file to update between `<!-- bench:ward -->` markers.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Hours of the whole station under a simulated ward and faults (`make soak HOURS=…`):
    /// CPU, RSS, open files, database size every minute into a CSV and a chart; fails on any
    /// loss, growth or missed alarm.
    Soak {
        #[arg(long, default_value_t = 64)]
        beds: usize,
        #[arg(long, default_value_t = 4.0)]
        hours: f64,
        #[arg(long, default_value_t = 0x50a4)]
        seed: u64,
        /// Minutes between the hospital core's one-minute outages.
        #[arg(long, default_value_t = 20)]
        outage_every: u64,
        /// The ring buffer's cap in MiB (store.max_db_mb), low so that the run reaches it
        /// early (64 beds write about 7 MB a minute) and spends the rest evicting as it writes,
        /// as a ward's station does for most of its life. Full disclosure is kept for an
        /// hour in the soak; the cap must hold that hour's raw vitals (about 150 MB) and some
        /// waveforms, or waveforms are evicted before they are counted.
        #[arg(long, default_value_t = 256)]
        max_db_mb: u64,
        /// Where the one-minute samples go (CSV).
        #[arg(long)]
        csv: Option<PathBuf>,
        /// Where the chart goes (PNG or SVG).
        #[arg(long)]
        chart: Option<PathBuf>,
        /// Markdown file to update between `<!-- bench:soak -->` markers.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Review query times on a generated database of `hours` for `beds`.
    /// ward-broker against Debian's Mosquitto 2 under one load generator.
    Broker {
        /// 2,000 messages per publisher instead of 25,000 (a smoke run).
        #[arg(long)]
        quick: bool,
        /// Only the cases whose label contains this (for profiling one case).
        #[arg(long)]
        only: Option<String>,
        /// Write the results into this Markdown file (between its bench markers).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    Queries {
        #[arg(long, default_value_t = 64)]
        beds: usize,
        #[arg(long, default_value_t = 72)]
        hours: u32,
        /// Where to generate the database (default: a temporary directory). Needs about
        /// 0.4 GB per bed-day.
        #[arg(long)]
        db: Option<PathBuf>,
        /// Markdown file to update between `<!-- bench:queries -->` markers.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// Config file laid over the built-in defaults.
    #[arg(long, env = "WARDWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Override broker.listen (use 127.0.0.1:0 for a free port).
    #[arg(long)]
    listen: Option<String>,
    /// Override station.data_dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Start this many simulated monitors inside the station (overrides sim.beds).
    #[arg(long)]
    sim_beds: Option<u64>,
    /// Scenario sentence for the simulated ward; repeatable (overrides sim.scenarios).
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    /// Seconds between live summaries; 0 for none.
    #[arg(long, default_value_t = 5)]
    summary_every: u64,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    duration: Option<u64>,
    /// Create the documented demo accounts (sets access.demo_accounts; demos and tests).
    #[arg(long)]
    demo_accounts: bool,
    /// Let devices connect without a username (sets broker.allow_anonymous; demos and tests).
    #[arg(long)]
    allow_anonymous: bool,
    /// The demo configuration: demo accounts and anonymous devices.
    #[arg(long)]
    demo: bool,
    /// Also write the station's metrics as JSON to this file at each summary (replaced
    /// atomically): for monitoring scripts and `wardwatch bench ward`.
    #[arg(long)]
    metrics_out: Option<PathBuf>,
    /// Do not start the sentinel (sets sentinel.enabled = false): for tests and benchmarks
    /// that kill stations on purpose.
    #[arg(long)]
    no_sentinel: bool,
}

#[cfg(feature = "sim")]
#[derive(Args)]
struct SimArgs {
    /// Broker address, e.g. 127.0.0.1:1883.
    #[arg(long)]
    broker: SocketAddr,
    #[arg(long, default_value_t = 16)]
    beds: usize,
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    /// Device id prefix; ids are PREFIX-01, PREFIX-02, ...
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    duration: Option<u64>,
}

/// Sets the memory allocator up for a process that runs for months; both binaries call it
/// first in `main`, before any thread exists.
///
/// glibc's malloc gives threads their own arenas (up to eight per core) and each arena keeps
/// the high-water mark of what its threads once held: with tokio's workers and blocking
/// threads taking turns in them, the station's resident memory crept up about 3 MB an hour
/// in the soak while its live heap stayed flat (heaptrack: no growth in 30 minutes; the
/// growth was in the arenas' heaps, /proc/<pid>/smaps). Two arenas are plenty for a
/// station's few busy threads (docs/BENCHMARKS.md, "What the RSS creep was").
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc tunable and is safe to call at any time; it is called
    // before any other thread exists, so no arena has been handed out yet.
    #[allow(unsafe_code)]
    unsafe {
        // Returns 1 on success; on failure the default stands, which only costs memory.
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Entry point shared by the `wardwatch` binary and the desktop binary's CLI mode.
pub fn main_with<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(dispatch(cli.command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wardwatch: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // try_init: the desktop shell may have installed a subscriber already.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: log files and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

async fn dispatch(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Run(a) => run_headless(a).await,
        Command::Broker(c) => broker_cmd::dispatch(c).await,
        #[cfg(feature = "sim")]
        Command::Sim(a) => run_sim(a).await,
        Command::CheckConfig { config } => {
            let c = ward_core::Config::load(config.as_deref(), toml::Table::new())?;
            println!("config OK ({})", c.source);
            println!("station: {}", c.station_name);
            println!("data dir: {}", c.data_dir.display());
            println!("broker listens on {}", c.broker.listen);
            println!("beds: {}", c.beds.len());
            match &c.upstream {
                Some(u) => {
                    let nodes: Vec<String> = u
                        .endpoints
                        .iter()
                        .map(|(h, p)| format!("{h}:{p}"))
                        .collect();
                    let version = match u.mqtt_version {
                        ward_core::config::MqttVersion::V5 => "MQTT 5",
                        ward_core::config::MqttVersion::V311 => "MQTT 3.1.1",
                    };
                    println!(
                        "hospital core: {} ({version}, {})",
                        nodes.join(", "),
                        if u.ca_file.is_some() { "TLS" } else { "no TLS" }
                    );
                }
                None => println!("hospital core: none (upstream.enabled = false)"),
            }
            Ok(())
        }
        #[cfg(feature = "sim")]
        Command::Bench(BenchCommand::Ward { beds, minutes, out }) => {
            let r = ward_bench::ward(beds, minutes).await?;
            let text = ward_bench::ward_report(&r);
            bench::publish(&text, out.as_deref(), "ward")
        }
        #[cfg(feature = "sim")]
        Command::Bench(BenchCommand::Soak {
            beds,
            hours,
            seed,
            outage_every,
            max_db_mb,
            csv,
            chart,
            out,
        }) => {
            let r = soak::soak(soak::Options {
                beds,
                minutes: hours * 60.0,
                seed,
                outage_every,
                max_db_mb,
                csv,
                chart: chart.clone(),
            })
            .await?;
            bench::publish(&soak::report(&r, chart.as_deref()), out.as_deref(), "soak")?;
            anyhow::ensure!(
                r.failures.is_empty(),
                "the soak failed: {}",
                r.failures.join("; ")
            );
            Ok(())
        }
        #[cfg(feature = "sim")]
        Command::Bench(BenchCommand::Broker { quick, only, out }) => {
            let rows = broker_bench::run(quick, only.as_deref()).await?;
            bench::publish(&broker_bench::report(&rows), out.as_deref(), "broker")
        }
        #[cfg(feature = "sim")]
        Command::Bench(BenchCommand::Queries {
            beds,
            hours,
            db,
            out,
        }) => {
            let r = tokio::task::spawn_blocking(move || ward_bench::queries(beds, hours, db))
                .await
                .context("query bench task")??;
            let text = ward_bench::queries_report(&r);
            bench::publish(&text, out.as_deref(), "queries")
        }
        #[cfg(feature = "sim")]
        Command::Bench(BenchCommand::AlarmLatency {
            sim_beds,
            samples,
            out,
        }) => {
            let r = bench::alarm_latency(bench::Options { sim_beds, samples }).await?;
            let text = bench::report(&r);
            bench::publish(&text, out.as_deref(), "alarm-latency")
        }
        Command::Audit(AuditCommand::Verify { db }) => {
            let v = ward_store::Store::open_read_only(&db)?.verify_audit()?;
            if v.ok() {
                println!("audit trail OK: {} events, chain intact", v.events);
                Ok(())
            } else {
                for p in &v.problems {
                    println!("{p}");
                }
                anyhow::bail!(
                    "audit trail of {} is NOT intact: {} problem(s) in {} events",
                    db.display(),
                    v.problems.len(),
                    v.events
                )
            }
        }
        Command::Audit(AuditCommand::Export { db, out }) => {
            use std::io::Write;
            let rows = ward_store::Store::open_read_only(&db)?.audit_all()?;
            let mut w: Box<dyn Write> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            for r in &rows {
                serde_json::to_writer(&mut w, r)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
            if let Some(p) = out {
                eprintln!("{} events written to {}", rows.len(), p.display());
            }
            Ok(())
        }
        Command::Users(c) => accounts::users(c),
        Command::Patients(c) => patients::command(c),
        Command::Hl7(c) => hl7_cmd::command(c),
        Command::Sentinel(c) => sentinel::command(c),
        Command::Credentials(c) => accounts::credentials(c),
        Command::Export(c) => exports::export(c),
        Command::Report(c) => report_cmd::command(c),
        Command::Manual { dir } => {
            use clap::CommandFactory;
            let cmd = Cli::command()
                .name("wardwatch-station")
                .about("Wardwatch central monitoring station: the window without arguments, the command line with a subcommand");
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(cmd, &dir)?;
            Ok(())
        }
        Command::Store(StoreCommand::SchemaVersion) => {
            println!("{}", ward_store::schema_version());
            Ok(())
        }
        Command::Store(StoreCommand::Salvage { config, from }) => {
            anyhow::ensure!(from.exists(), "{} does not exist", from.display());
            let cfg = ward_core::Config::load(config.as_deref(), toml::Table::new())?;
            let db = cfg.db_path();
            anyhow::ensure!(
                std::fs::canonicalize(&from).ok() != std::fs::canonicalize(&db).ok(),
                "{} is the station's own database; salvage copies from the damaged file it moved aside",
                from.display()
            );
            let mut store = ward_store::Store::open(&db)?;
            let r = store.salvage_from(&from, ward_core::now_ms())?;
            for t in &r.tables {
                match &t.error {
                    Some(e) => println!("{:<16} not read: {e}", t.table),
                    None => println!(
                        "{:<16} {} rows copied, {} unreadable",
                        t.table, t.copied, t.unreadable
                    ),
                }
            }
            println!(
                "audit            {} events copied with their chain verified{}",
                r.audit_verified,
                r.audit_stopped
                    .as_deref()
                    .map(|s| format!("; stopped: {s}"))
                    .unwrap_or_default()
            );
            store.write_batch(&[ward_store::Record::Audit(ward_store::AuditEvent {
                origin: cfg.station_id.clone(),
                t_ms: ward_core::now_ms(),
                actor: accounts::console_actor(),
                kind: "store.salvaged".into(),
                bed: None,
                detail: serde_json::to_string(&r)?,
            })])?;
            Ok(())
        }
        Command::StoreStats { db } => {
            let s = ward_store::Store::open_read_only(&db)?;
            let c = s.counts()?;
            println!(
                "vitals {} | wave chunks {} | wave samples {} | device events {}",
                c.vitals, c.wave_chunks, c.wave_samples, c.events
            );
            Ok(())
        }
    }
}

/// Options the desktop binary accepts when started without a subcommand: the same station
/// flags as `wardwatch run`.
#[derive(Parser)]
#[command(
    name = "wardwatch-station",
    version,
    about = "Wardwatch central station window"
)]
struct GuiCli {
    #[command(flatten)]
    run: RunArgs,
}

/// Resolves the station config for the desktop binary from its arguments and environment.
pub fn gui_config<I, T>(args: I) -> anyhow::Result<ward_core::Config>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = GuiCli::try_parse_from(args)?;
    Ok(ward_core::Config::load(
        cli.run.config.as_deref(),
        overrides(&cli.run),
    )?)
}

/// True when the arguments name a CLI subcommand, so the desktop binary should act as
/// `wardwatch` instead of opening a window. Read from the command definition itself, so a new
/// subcommand works from the installed desktop program without a second list to keep.
pub fn is_cli_invocation(args: &[OsString]) -> bool {
    use clap::CommandFactory;
    let Some(first) = args.get(1).and_then(|a| a.to_str()) else {
        return false;
    };
    matches!(first, "help" | "--help" | "-h" | "--version" | "-V")
        || Cli::command()
            .get_subcommands()
            .any(|c| c.get_name() == first || c.get_all_aliases().any(|a| a == first))
}

/// Builds the override table that command-line flags lay over the config file.
pub fn overrides(a: &RunArgs) -> toml::Table {
    let mut t = toml::Table::new();
    let mut section = |name: &str, key: &str, v: toml::Value| {
        let s = t
            .entry(name.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(s) = s {
            s.insert(key.to_string(), v);
        }
    };
    if let Some(l) = &a.listen {
        section("broker", "listen", toml::Value::String(l.clone()));
    }
    if let Some(d) = &a.data_dir {
        section(
            "station",
            "data_dir",
            toml::Value::String(d.display().to_string()),
        );
    }
    if let Some(n) = a.sim_beds {
        section(
            "sim",
            "beds",
            toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
        );
    }
    if a.demo_accounts || a.demo {
        section("access", "demo_accounts", toml::Value::Boolean(true));
    }
    if a.no_sentinel {
        section("sentinel", "enabled", toml::Value::Boolean(false));
    }
    if a.allow_anonymous || a.demo {
        section("broker", "allow_anonymous", toml::Value::Boolean(true));
    }
    if !a.scenarios.is_empty() {
        let v = a
            .scenarios
            .iter()
            .cloned()
            .map(toml::Value::String)
            .collect();
        section("sim", "scenarios", toml::Value::Array(v));
    }
    t
}

async fn stop_signal(duration: Option<u64>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    let timer = async {
        match duration {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
        _ = timer => {}
    }
}

async fn run_headless(a: RunArgs) -> anyhow::Result<()> {
    let cfg = ward_core::Config::load(a.config.as_deref(), overrides(&a))?;
    let sentinel = cfg.sentinel.enabled;
    let station = ward_core::Station::start(cfg.clone()).await?;
    println!("wardwatch: station listening on {}", station.broker_addr());
    let link = sentinel.then(|| start_sentinel(&cfg, &station)).flatten();
    ward_core::service::ready();
    let stop = stop_signal(a.duration);
    tokio::pin!(stop);
    let every = Duration::from_secs(a.summary_every.max(1));
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick(), if a.summary_every > 0 => {
                println!("{}", ward_core::summary::render(&station.live().snapshot()));
                if let Some(p) = &a.metrics_out {
                    write_metrics(p, &station.live().metrics());
                }
            }
        }
    }
    println!("wardwatch: stopping");
    ward_core::service::stopping();
    // Goodbye first: the sentinel must not take the stop for a failure.
    if let Some(l) = link {
        l.stop();
    }
    let final_snapshot = station.live().snapshot();
    station.shutdown().await;
    println!("{}", ward_core::summary::render(&final_snapshot));
    Ok(())
}

/// Starts the sentinel link for a running station, with this very program as the sentinel.
pub fn start_sentinel(
    cfg: &ward_core::Config,
    station: &ward_core::StationHandle,
) -> Option<sentinel::Link> {
    match std::env::current_exe() {
        Ok(exe) => Some(sentinel::Link::start(exe, cfg, station)),
        Err(e) => {
            tracing::error!(error = %e, "cannot find this program to start the sentinel");
            station.alarms().report_technical(
                ward_alarm::Technical::SentinelDown,
                true,
                &format!("cannot find this program: {e}"),
            );
            None
        }
    }
}

/// Writes metrics next to `p` and renames over it, so a reader never sees half a file. A
/// failure is logged, never fatal: the station runs on without its metrics file.
fn write_metrics(p: &std::path::Path, m: &ward_core::StationMetrics) {
    let tmp = p.with_extension("tmp");
    let r = serde_json::to_vec(m)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&tmp, b))
        .and_then(|()| std::fs::rename(&tmp, p));
    if let Err(e) = r {
        tracing::warn!(path = %p.display(), error = %e, "cannot write the metrics file");
    }
}

#[cfg(feature = "sim")]
async fn run_sim(a: SimArgs) -> anyhow::Result<()> {
    let mut cfg = ward_sim::SimConfig::new(a.broker, a.beds);
    cfg.device_prefix = a.prefix;
    for s in &a.scenarios {
        cfg.scenarios.push(ward_sim::Scenario::parse(s)?);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ward = tokio::spawn(ward_sim::run_ward(cfg, stop_rx));
    stop_signal(a.duration).await;
    let _ = stop_tx.send(true);
    let stats = ward.await.context("simulator task failed")??;
    let samples: u64 = stats.samples.values().sum();
    let vitals: u64 = stats.vitals_messages.values().sum();
    println!("sim: sent {samples} waveform samples and {vitals} vitals messages");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn every_subcommand_makes_the_desktop_program_the_cli() {
        use clap::CommandFactory;
        for c in Cli::command().get_subcommands() {
            assert!(
                is_cli_invocation(&args(&["wardwatch-station", c.get_name()])),
                "{}",
                c.get_name()
            );
        }
        for name in ["patients", "hl7", "sentinel", "--help", "-V"] {
            assert!(
                is_cli_invocation(&args(&["wardwatch-station", name])),
                "{name}"
            );
        }
        // No subcommand, or a window option: the window.
        assert!(!is_cli_invocation(&args(&["wardwatch-station"])));
        assert!(!is_cli_invocation(&args(&[
            "wardwatch-station",
            "--config",
            "x.toml"
        ])));
        assert!(!is_cli_invocation(&args(&["wardwatch-station", "patient"])));
    }
}
