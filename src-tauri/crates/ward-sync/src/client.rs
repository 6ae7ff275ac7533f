//! The MQTT client options every connection to the hospital core uses (outbox, peers,
//! liveness): address, keep-alive, credentials from the OS keyring or the environment, TLS.

use crate::error::SyncError;
use rumqttc::v5::MqttOptions;
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

pub fn options(cfg: &UpstreamConfig) -> Result<MqttOptions, SyncError> {
    let mut o = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
    o.set_keep_alive(Duration::from_secs(15));
    o.set_clean_start(true);
    if let Some(user) = &cfg.username {
        let pw = crate::secrets::resolve(&cfg.password, ward_config::UPSTREAM_PASSWORD_ENV)?;
        o.set_credentials(user, pw.unwrap_or_default());
    }
    if let Some(t) = tls(cfg)? {
        o.set_transport(rumqttc::Transport::Tls(t));
    }
    Ok(o)
}

/// Client options, once they can be made: the password may not be readable yet (IT has not
/// set it, the desktop keyring is still locked). Until then the station runs and alarms as
/// always; `waiting` is told each failure and it asks again every 10 s. `None` when stopped.
pub(crate) async fn options_when_ready(
    cfg: &UpstreamConfig,
    stop: &CancellationToken,
    mut waiting: impl FnMut(&SyncError),
) -> Option<MqttOptions> {
    loop {
        match options(cfg) {
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
