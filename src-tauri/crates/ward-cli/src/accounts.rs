//! `wardwatch users …` and `wardwatch credentials …`: what hospital IT does at the station's
//! console. Secrets are read from the terminal without echo, or one per line from standard
//! input when it is not a terminal (provisioning scripts); never from arguments, which other
//! users can read in the process list.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use ward_core::{Config, UserChange};
use ward_model::Role;

#[derive(Args)]
pub struct ConfigArg {
    /// The station's config file (its data directory and station id are used).
    #[arg(long, env = "WARDWATCH_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a user. Asks for the password (and the PIN with --pin).
    Add {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        username: String,
        /// viewer, nurse, charge_nurse or it_admin.
        #[arg(long)]
        role: String,
        /// Name shown in the window (default: the username).
        #[arg(long)]
        name: Option<String>,
        /// Also ask for a 4-8 digit PIN for quick unlock.
        #[arg(long)]
        pin: bool,
    },
    /// Change a user: role, name, password, PIN, enabled.
    Set {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long)]
        username: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Ask for a new password.
        #[arg(long)]
        password: bool,
        /// Ask for a new PIN.
        #[arg(long, conflicts_with = "no_pin")]
        pin: bool,
        /// Remove the PIN.
        #[arg(long)]
        no_pin: bool,
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
    },
    /// List users, roles and assigned beds (no secrets).
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Subcommand)]
pub enum CredentialsCommand {
    /// Store the hospital core's password in the configured OS credential store.
    SetUpstream {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Check that the upstream password can be read (never prints it).
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
}

/// Reads secrets: prompts on a terminal, else one line each from standard input.
pub(crate) struct Secrets {
    lines: Option<std::io::Lines<std::io::StdinLock<'static>>>,
}

impl Secrets {
    pub(crate) fn new() -> Self {
        let stdin = std::io::stdin();
        let lines = (!stdin.is_terminal()).then(|| stdin.lock().lines());
        Self { lines }
    }

    pub(crate) fn read(&mut self, prompt: &str) -> anyhow::Result<String> {
        match &mut self.lines {
            Some(lines) => Ok(lines
                .next()
                .with_context(|| format!("standard input ended before the {prompt}"))??
                .trim_end_matches('\r')
                .to_string()),
            None => {
                let a = rpassword::prompt_password(format!("{prompt}: "))?;
                let b = rpassword::prompt_password(format!("{prompt} again: "))?;
                anyhow::ensure!(a == b, "the two entries differ");
                Ok(a)
            }
        }
    }
}

/// Who the audit trail names for console changes: the operating-system user.
pub(crate) fn console_actor() -> String {
    let os = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_default();
    let clean: String = os
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(48)
        .collect();
    if clean.is_empty() {
        "console".into()
    } else {
        format!("console.{clean}")
    }
}

fn load(c: &ConfigArg) -> anyhow::Result<Config> {
    c.load()
}

impl ConfigArg {
    pub(crate) fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::load(self.config.as_deref(), toml::Table::new())?)
    }
}

fn role(s: &str) -> anyhow::Result<Role> {
    Ok(Role::parse(s)?)
}

fn change(cfg: &Config, ch: &UserChange) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("create {}", cfg.data_dir.display()))?;
    let v = ward_core::staff::change_user_offline(
        &cfg.db_path(),
        &cfg.station_id,
        &console_actor(),
        ch,
    )?;
    println!(
        "user {} ({}, {}){}{}",
        v.username,
        v.display_name,
        v.role,
        if v.has_pin { ", PIN set" } else { "" },
        if v.disabled { ", DISABLED" } else { "" }
    );
    Ok(())
}

pub fn users(cmd: UsersCommand) -> anyhow::Result<()> {
    match cmd {
        UsersCommand::Add {
            config,
            username,
            role: r,
            name,
            pin,
        } => {
            let cfg = load(&config)?;
            let role = role(&r)?;
            let existing = open_users(&cfg)?
                .into_iter()
                .any(|u| u.username == username);
            anyhow::ensure!(
                !existing,
                "user {username} exists; use `wardwatch users set`"
            );
            let mut s = Secrets::new();
            let password = s.read("password")?;
            let pin = if pin { Some(s.read("PIN")?) } else { None };
            change(
                &cfg,
                &UserChange {
                    username,
                    display_name: name,
                    role: Some(role),
                    password: Some(password),
                    pin: Some(pin),
                    disabled: None,
                },
            )
        }
        UsersCommand::Set {
            config,
            username,
            role: r,
            name,
            password,
            pin,
            no_pin,
            disable,
            enable,
        } => {
            let cfg = load(&config)?;
            let exists = open_users(&cfg)?
                .into_iter()
                .any(|u| u.username == username);
            anyhow::ensure!(
                exists,
                "there is no user {username}; use `wardwatch users add`"
            );
            let mut s = Secrets::new();
            let password = if password {
                Some(s.read("password")?)
            } else {
                None
            };
            let pin = match (pin, no_pin) {
                (true, _) => Some(Some(s.read("PIN")?)),
                (_, true) => Some(None),
                _ => None,
            };
            change(
                &cfg,
                &UserChange {
                    username,
                    display_name: name,
                    role: r.as_deref().map(role).transpose()?,
                    password,
                    pin,
                    disabled: (disable || enable).then_some(disable),
                },
            )
        }
        UsersCommand::List { config } => {
            let cfg = load(&config)?;
            anyhow::ensure!(
                cfg.db_path().exists(),
                "no station database at {} yet: add a user first",
                cfg.db_path().display()
            );
            // Opened for writing so an older database is brought up to date first.
            let store = ward_store::Store::open(&cfg.db_path())?;
            let mut beds: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for (u, b) in store.assignments()? {
                beds.entry(u).or_default().push(b);
            }
            for u in store.users()? {
                println!(
                    "{:<24} {:<13} {:<28} pin:{:<3} {:<8} beds: {}",
                    u.username,
                    u.role,
                    u.display_name,
                    if u.pin_hash.is_some() { "yes" } else { "no" },
                    if u.disabled { "disabled" } else { "enabled" },
                    beds.get(&u.username)
                        .map(|b| b.join(","))
                        .unwrap_or("-".into())
                );
            }
            Ok(())
        }
    }
}

fn open_users(cfg: &Config) -> anyhow::Result<Vec<ward_store::UserRow>> {
    if !cfg.db_path().exists() {
        return Ok(Vec::new());
    }
    Ok(ward_store::Store::open(&cfg.db_path())?.users()?)
}

pub fn credentials(cmd: CredentialsCommand) -> anyhow::Result<()> {
    let upstream = |c: &ConfigArg| -> anyhow::Result<ward_core::config::UpstreamConfig> {
        let cfg = load(c)?;
        cfg.upstream
            .clone()
            .context("upstream.enabled is false in this config: no hospital core is configured")
    };
    match cmd {
        CredentialsCommand::SetUpstream { config } => {
            let up = upstream(&config)?;
            let pw = Secrets::new().read("upstream password")?;
            ward_core::secrets::store(&up.password, &pw)?;
            println!("upstream password stored ({})", describe(&up.password));
            Ok(())
        }
        CredentialsCommand::Check { config } => {
            let up = upstream(&config)?;
            let env = ward_core::config::UPSTREAM_PASSWORD_ENV;
            match ward_core::secrets::resolve(&up.password, env)? {
                Some(_) => println!("upstream password: found ({})", describe(&up.password)),
                None => println!("upstream password: none configured (password_from = \"none\")"),
            }
            Ok(())
        }
    }
}

fn describe(p: &ward_core::secrets::PasswordSource) -> String {
    use ward_core::secrets::PasswordSource::*;
    match p {
        None => "no password".into(),
        Env => format!(
            "environment variable {}",
            ward_core::config::UPSTREAM_PASSWORD_ENV
        ),
        Keyring { store, account } => format!(
            "{store} credential store, service {:?}, account {account:?}",
            ward_core::secrets::SERVICE
        ),
    }
}
