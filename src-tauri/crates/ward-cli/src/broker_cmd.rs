//! `wardwatch broker ...`: password file entries for devices, and the broker on its own.

use anyhow::Context;
use clap::Subcommand;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Subcommand)]
pub(crate) enum BrokerCommand {
    /// Adds or replaces USER in the password file FILE (argon2id). The password is prompted
    /// for on a terminal, or read as one line from standard input.
    Passwd { file: PathBuf, user: String },
    /// Runs the broker alone, without a station, until SIGINT/SIGTERM.
    Serve {
        #[arg(long, default_value = "127.0.0.1:1883")]
        listen: SocketAddr,
        /// SQLite file for durable sessions and messages (none: memory only).
        #[arg(long)]
        store: Option<PathBuf>,
        #[arg(long)]
        allow_anonymous: bool,
        #[arg(long)]
        password_file: Option<PathBuf>,
        #[arg(long)]
        acl_file: Option<PathBuf>,
        /// Written once listening: {"broker": "ADDR"} (tools wait for it; port 0 allowed).
        #[arg(long)]
        ready_file: Option<PathBuf>,
        /// Longest keep-alive a client may ask for, in seconds (0: any). MQTT 5 clients asking
        /// for more, or for none, are told this value as Server Keep Alive.
        #[arg(long, default_value_t = 600)]
        max_keep_alive: u16,
        /// MiB of QoS 1/2 messages one slow or absent subscriber may have spilled to the store
        /// before publishes it would receive are refused (needs --store).
        #[arg(long, default_value_t = 1024)]
        max_spill_mb: usize,
    },
}

pub(crate) async fn dispatch(c: BrokerCommand) -> anyhow::Result<()> {
    match c {
        BrokerCommand::Passwd { file, user } => passwd(&file, &user),
        BrokerCommand::Serve {
            listen,
            store,
            allow_anonymous,
            password_file,
            acl_file,
            ready_file,
            max_keep_alive,
            max_spill_mb,
        } => {
            let auth = ward_broker::FileAuth {
                allow_anonymous,
                passwords: match &password_file {
                    Some(p) => ward_broker::Passwords::load(p)?,
                    None => ward_broker::Passwords::default(),
                },
                acl: match &acl_file {
                    Some(p) => ward_broker::Acl::load(p)?,
                    None if allow_anonymous => {
                        ward_broker::Acl::parse("pattern readwrite #", "built-in")?
                    }
                    None => ward_broker::Acl::default(),
                },
            };
            let b = ward_broker::start(ward_broker::BrokerConfig {
                listen,
                store,
                max_keep_alive,
                max_spilled_bytes: max_spill_mb.saturating_mul(1024 * 1024),
                auth: ward_broker::AuthHook(Arc::new(auth)),
                ..ward_broker::BrokerConfig::default()
            })
            .await?;
            if let Some(f) = ready_file {
                let tmp = f.with_extension("tmp");
                std::fs::write(&tmp, format!("{{\"broker\": \"{}\"}}", b.local_addr()))?;
                std::fs::rename(&tmp, &f)?;
            }
            println!("broker listening on {}", b.local_addr());
            crate::stop_signal(None).await;
            b.shutdown().await;
            Ok(())
        }
    }
}

fn passwd(file: &std::path::Path, user: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !user.is_empty() && !user.contains([':', '/', '+', '#', '\n']),
        "a username must not be empty or contain ':', '/', '+', '#'"
    );
    let password = crate::accounts::Secrets::new().read("password")?;
    anyhow::ensure!(
        password.len() >= 8,
        "a device password needs at least 8 characters"
    );
    let hash = ward_broker::auth::hash_password(&password)
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    let old = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    // Validate what is there before writing, so a broken file is reported, not extended.
    ward_broker::Passwords::parse(&old, &file.display().to_string())?;
    let mut lines: Vec<String> = old
        .lines()
        .filter(|l| l.split_once(':').map(|(u, _)| u) != Some(user))
        .map(str::to_string)
        .collect();
    lines.push(format!("{user}:{hash}"));
    let tmp = file.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all((lines.join("\n") + "\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)?;
    println!("{user} written to {}", file.display());
    Ok(())
}
