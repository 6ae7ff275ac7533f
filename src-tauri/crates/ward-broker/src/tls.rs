//! The TLS listener: rustls (ring provider), TLS 1.2 and 1.3, certificate and key from PEM
//! files, optional mutual TLS against a client CA. The files are re-read when they change
//! (checked every `reload_interval`) or on [`crate::BrokerHandle::reload_tls`]; a bad new file
//! leaves the old certificate in service, logged and counted, so a botched renewal never
//! takes the ward offline. Connections already open keep their session keys.

use crate::{bump, Shared};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub listen: std::net::SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle that client certificates must chain to (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// Refuse clients without a certificate from `client_ca`. When false, a certificate is
    /// optional and, when given, still verified.
    pub require_client_cert: bool,
    /// How often the files are checked for changes (zero: only on explicit reload).
    pub reload_interval: Duration,
}

pub(crate) struct TlsState {
    cfg: TlsConfig,
    acceptor: RwLock<TlsAcceptor>,
    stamps: Mutex<Vec<Option<SystemTime>>>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    let certs = certs.map_err(|e| TlsError::Pem {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.display().to_string(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// A TLS acceptor for another listener of the station (the HL7 ADT feed), with the same
/// certificate handling as the broker's.
pub fn acceptor_for(cfg: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    build(cfg)
}

fn build(cfg: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let chain = certs(&cfg.cert)?;
    let key_pem = read(&cfg.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: cfg.key.display().to_string(),
        reason: format!("no usable private key: {e}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &cfg.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                roots.add(c).map_err(|e| TlsError::Pem {
                    path: ca.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if cfg.require_client_cert {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder
                .with_client_cert_verifier(v.build().map_err(|e| TlsError::Config(e.to_string()))?)
        }
        None => builder.with_no_client_auth(),
    };
    let server = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("certificate and key: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn stamps(cfg: &TlsConfig) -> Vec<Option<SystemTime>> {
    [Some(&cfg.cert), Some(&cfg.key), cfg.client_ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

impl TlsState {
    pub fn new(cfg: TlsConfig) -> Result<Self, TlsError> {
        let acceptor = build(&cfg)?;
        let st = stamps(&cfg);
        Ok(Self {
            cfg,
            acceptor: RwLock::new(acceptor),
            stamps: Mutex::new(st),
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn reload(&self) -> Result<(), TlsError> {
        let a = build(&self.cfg)?;
        *self.acceptor.write().unwrap_or_else(|p| p.into_inner()) = a;
        *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) = stamps(&self.cfg);
        tracing::info!(cert = %self.cfg.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    fn changed(&self) -> bool {
        let now = stamps(&self.cfg);
        *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) != now
    }
}

/// Reloads the certificate when its files change.
pub(crate) async fn watch_files(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let Some(t) = &shared.tls else { return };
    if t.cfg.reload_interval.is_zero() {
        let _ = stop.changed().await;
        return;
    }
    let mut tick = tokio::time::interval(t.cfg.reload_interval);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                if t.changed() {
                    match t.reload() {
                        Ok(()) => bump(&shared.metrics.tls_reloads),
                        Err(e) => {
                            bump(&shared.metrics.tls_reload_failures);
                            // Keep the stamps so the same bad files are not retried every tick.
                            *t.stamps.lock().unwrap_or_else(|p| p.into_inner()) = stamps(&t.cfg);
                            tracing::error!(error = %e, "TLS reload failed; the previous certificate stays in service");
                        }
                    }
                }
            }
        }
    }
}

/// The common name of a verified client certificate: the device identity under mutual TLS.
pub(crate) fn peer_name(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let leaf = certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    cn
}
