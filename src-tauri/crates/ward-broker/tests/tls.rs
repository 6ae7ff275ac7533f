//! The TLS listener with certificates made fresh by rcgen and rumqttc (rustls) as the client:
//! TLS MQTT, mutual TLS with the certificate's name as the device identity, the handshake time
//! limit, and certificate reload.
#![allow(clippy::unwrap_used)]

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use ward_broker::{Acl, AuthHook, BrokerConfig, FileAuth, Passwords, TlsConfig};

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Self {
            ca: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// (certificate PEM, key PEM) for `cn`, valid for 127.0.0.1.
    fn leaf(&self, cn: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(&self, dir: &Path, cn: &str, stem: &str) {
        let (c, k) = self.leaf(cn);
        std::fs::write(dir.join(format!("{stem}.pem")), c).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), k).unwrap();
    }
}

fn client_tls(ca: &Pki, client: Option<&Pki>) -> rumqttc::TlsConfiguration {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        Some(pki) => {
            use rustls::pki_types::pem::PemObject;
            let (c, k) = pki.leaf("m7");
            let chain =
                vec![rustls::pki_types::CertificateDer::from_pem_slice(c.as_bytes()).unwrap()];
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(k.as_bytes()).unwrap();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    rumqttc::TlsConfiguration::Rustls(Arc::new(cfg))
}

async fn broker(dir: &Path, client_ca: bool, anonymous: bool) -> ward_broker::BrokerHandle {
    ward_broker::start(BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        connect_timeout: Duration::from_millis(500),
        tls: Some(TlsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            client_ca: client_ca.then(|| dir.join("ca.pem")),
            require_client_cert: client_ca,
            reload_interval: Duration::ZERO,
        }),
        auth: AuthHook(Arc::new(FileAuth {
            allow_anonymous: anonymous,
            passwords: Passwords::default(),
            acl: Acl::default(),
        })),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Connects over TLS, publishes one QoS 1 message, returns the PUBACK reason.
async fn publish_over_tls(
    addr: std::net::SocketAddr,
    tls: rumqttc::TlsConfiguration,
    topic: &str,
) -> Result<rumqttc::v5::mqttbytes::v5::PubAckReason, String> {
    let mut o = MqttOptions::new("tls-client", "127.0.0.1", addr.port());
    o.set_transport(rumqttc::Transport::Tls(tls));
    let (c, mut ev) = AsyncClient::new(o, 8);
    c.publish(topic, QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(a)))) => return Ok(a.reason),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("timed out".into()),
        }
    }
}

#[tokio::test]
async fn mqtt_over_tls_and_mutual_tls_names_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("ward-ca");
    pki.write(dir.path(), "station", "server");
    std::fs::write(dir.path().join("ca.pem"), pki.ca.pem()).unwrap();
    let b = broker(dir.path(), true, false).await;
    let addr = b.tls_addr().unwrap();
    let mut rx = b.subscribe_local("ward/#", 8).unwrap();
    // The certificate says "m7": m7's prefix is allowed, m8's is not (0x87).
    let ok = publish_over_tls(addr, client_tls(&pki, Some(&pki)), "ward/v1/dev/m7/vitals").await;
    assert_eq!(ok, Ok(rumqttc::v5::mqttbytes::v5::PubAckReason::Success));
    let denied =
        publish_over_tls(addr, client_tls(&pki, Some(&pki)), "ward/v1/dev/m8/vitals").await;
    assert_eq!(
        denied,
        Ok(rumqttc::v5::mqttbytes::v5::PubAckReason::NotAuthorized)
    );
    assert_eq!(&*rx.recv().await.unwrap().topic, "ward/v1/dev/m7/vitals");
    // No client certificate: the handshake fails.
    let none = publish_over_tls(addr, client_tls(&pki, None), "ward/v1/dev/m7/vitals").await;
    assert!(none.is_err(), "{none:?}");
    // A certificate from another CA: refused too.
    let other = Pki::new("other-ca");
    let foreign = publish_over_tls(addr, client_tls(&pki, Some(&other)), "ward/v1/dev/m7/x").await;
    assert!(foreign.is_err(), "{foreign:?}");
    assert!(b.metrics().tls_handshake_failures >= 2);
}

#[tokio::test]
async fn a_silent_tls_client_is_dropped_at_the_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("ward-ca");
    pki.write(dir.path(), "station", "server");
    let b = broker(dir.path(), false, true).await;
    let mut s = tokio::net::TcpStream::connect(b.tls_addr().unwrap())
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(b.metrics().tls_handshake_timeouts, 1);
}

#[tokio::test]
async fn a_renewed_certificate_is_served_after_reload_and_a_bad_one_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let old = Pki::new("old-ca");
    old.write(dir.path(), "station", "server");
    let b = broker(dir.path(), false, true).await;
    let addr = b.tls_addr().unwrap();
    let topic = "ward/v1/dev/tls-client/vitals";
    assert!(publish_over_tls(addr, client_tls(&old, None), topic)
        .await
        .is_ok());
    // Renewal from a new CA.
    let new = Pki::new("new-ca");
    new.write(dir.path(), "station", "server");
    b.reload_tls().unwrap();
    assert!(publish_over_tls(addr, client_tls(&new, None), topic)
        .await
        .is_ok());
    assert!(publish_over_tls(addr, client_tls(&old, None), topic)
        .await
        .is_err());
    // A broken key file: reload fails, the renewed certificate stays in service.
    std::fs::write(dir.path().join("server.key"), "not a key").unwrap();
    let e = b.reload_tls().unwrap_err().to_string();
    assert!(e.contains("server.key"), "{e}");
    assert!(publish_over_tls(addr, client_tls(&new, None), topic)
        .await
        .is_ok());
    let m = b.metrics();
    assert_eq!((m.tls_reloads, m.tls_reload_failures), (1, 1));
}
