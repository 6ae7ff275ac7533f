//! What every connection to the hospital core uses (outbox, peers, liveness): keep-alive,
//! credentials from the OS keyring or the environment, TLS. The endpoints and the MQTT
//! version are `link`'s.

use crate::error::SyncError;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use ward_config::UpstreamConfig;

fn tls(cfg: &UpstreamConfig) -> Result<Option<rumqttc::TlsConfiguration>, SyncError> {
    let Some(ca_file) = &cfg.ca_file else {
        return Ok(None);
    };
    let read = |p: &PathBuf, key: &str| {
        std::fs::read(p).map_err(|e| SyncError::File {
            key: key.into(),
            reason: format!("cannot read {}: {e}", p.display()),
        })
    };
    let ca = read(ca_file, "upstream.ca_file")?;
    let client_auth = match &cfg.client_cert {
        Some((c, k)) => Some((
            read(c, "upstream.client_cert")?,
            read(k, "upstream.client_key")?,
        )),
        None => None,
    };
    // rustls with the ring provider (no C++ toolchain needed); installed once per process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(Some(rumqttc::TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    }))
}

/// What every connection to the core shares, whatever its endpoint and MQTT version: the
/// credentials (read now, from the keyring or the environment) and the TLS set-up.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub credentials: Option<(String, String)>,
    pub tls: Option<rumqttc::TlsConfiguration>,
    pub keep_alive: Duration,
}

pub(crate) fn prepare(cfg: &UpstreamConfig) -> Result<Prepared, SyncError> {
    let credentials = match &cfg.username {
        Some(user) => {
            let pw = crate::secrets::resolve(&cfg.password, ward_config::UPSTREAM_PASSWORD_ENV)?;
            Some((user.clone(), pw.unwrap_or_default()))
        }
        None => None,
    };
    Ok(Prepared {
        credentials,
        tls: tls(cfg)?,
        keep_alive: Duration::from_secs(15),
    })
}

/// The connection set-up, once it can be made: the password may not be readable yet (IT has
/// not set it, the desktop keyring is still locked). Until then the station runs and alarms
/// as always; `waiting` is told each failure and it asks again every 10 s. `None` when
/// stopped.
pub(crate) async fn prepared_when_ready(
    cfg: &UpstreamConfig,
    stop: &CancellationToken,
    mut waiting: impl FnMut(&SyncError),
) -> Option<Prepared> {
    loop {
        match prepare(cfg) {
            Ok(o) => return Some(o),
            Err(e) => {
                waiting(&e);
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
            }
        }
    }
}
