//! The upstream password, from the OS credential store (never from a config file).
//!
//! Stores, chosen by `[upstream] keyring_store`:
//! - `secret-service`: the desktop session's keyring over D-Bus (GNOME Keyring, KWallet),
//!   kept on disk across reboots, unlocked when the station's user logs in. The default on
//!   Linux desktops.
//! - `keyutils`: the kernel's key store, no daemon, for headless stations. Keys live in the
//!   user's persistent keyring, which the kernel drops after days unused and at reboot, so a
//!   headless station re-provisions it at boot (docs: README, "The upstream password").
//! - `windows`: Windows Credential Manager.
//!
//! `password_from = "env"` is the explicit alternative where no store exists: the password
//! comes from `WARDWATCH_UPSTREAM_PASSWORD` (for example a systemd credential).
//!
//! keyring-core holds one default store per process; the station sets it once, before the
//! first use, from its config.

use crate::error::{SecretError, SyncError};
use std::sync::Mutex;
pub use ward_config::PasswordSource;

/// The credential's service name; the entry's user is `{username}@{host}:{port}`.
pub const SERVICE: &str = "wardwatch-upstream";

/// Which store this process has set as keyring-core's default.
static CURRENT: Mutex<Option<String>> = Mutex::new(None);

fn use_store(name: &str) -> Result<(), SecretError> {
    let unavailable = |reason: String| SecretError::Unavailable {
        store: name.to_string(),
        reason,
    };
    let mut cur = CURRENT
        .lock()
        .map_err(|_| unavailable("the store lock is poisoned".into()))?;
    if cur.as_deref() == Some(name) {
        return Ok(());
    }
    match name {
        #[cfg(target_os = "linux")]
        "secret-service" => keyring_core::set_default_store(
            zbus_secret_service_keyring_store::Store::new()
                .map_err(|e| unavailable(e.to_string()))?,
        ),
        #[cfg(target_os = "linux")]
        "keyutils" => keyring_core::set_default_store(
            linux_keyutils_keyring_store::Store::new().map_err(|e| unavailable(e.to_string()))?,
        ),
        #[cfg(windows)]
        "windows" => keyring_core::set_default_store(
            windows_native_keyring_store::Store::new().map_err(|e| unavailable(e.to_string()))?,
        ),
        _ => return Err(unavailable("not built for this platform".into())),
    }
    *cur = Some(name.to_string());
    Ok(())
}

fn entry(store: &str, account: &str) -> Result<keyring_core::Entry, SecretError> {
    use_store(store)?;
    keyring_core::Entry::new(SERVICE, account).map_err(|e| SecretError::Unavailable {
        store: store.to_string(),
        reason: e.to_string(),
    })
}

/// Reads the password now (the sync worker asks again at each connection attempt, so a
/// password set after start-up is picked up without a restart).
pub fn resolve(
    source: &PasswordSource,
    env_name: &'static str,
) -> Result<Option<String>, SecretError> {
    match source {
        PasswordSource::None => Ok(None),
        PasswordSource::Env => std::env::var(env_name)
            .map(Some)
            .map_err(|_| SecretError::EnvMissing(env_name)),
        PasswordSource::Keyring { store, account } => match entry(store, account)?.get_password() {
            Ok(p) => Ok(Some(p)),
            Err(keyring_core::Error::NoEntry) => Err(SecretError::Missing {
                store: store.clone(),
                account: account.clone(),
            }),
            Err(e) => Err(SecretError::Unavailable {
                store: store.clone(),
                reason: e.to_string(),
            }),
        },
    }
}

/// Stores the password (the CLI, and IT administrators through the station).
pub fn store(source: &PasswordSource, password: &str) -> Result<(), SyncError> {
    let PasswordSource::Keyring { store, account } = source else {
        return Err(SyncError::File {
            key: "upstream.password_from".into(),
            reason: "is not \"keyring\": there is no credential store to write to".into(),
        });
    };
    if password.is_empty() {
        return Err(SyncError::EmptyPassword);
    }
    entry(store, account)?.set_password(password).map_err(|e| {
        SyncError::Secret(SecretError::Unavailable {
            store: store.clone(),
            reason: e.to_string(),
        })
    })
}
