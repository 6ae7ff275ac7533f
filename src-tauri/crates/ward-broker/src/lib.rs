//! ward-broker: the MQTT broker embedded in every Wardwatch station.
//!
//! What it is: our own broker core on rumqttc's packet codec and tokio. Bedside monitors
//! connect to it over TCP (MQTT 3.1.1 or 5.0); the station itself subscribes in-process
//! ([`BrokerHandle::subscribe_local`]) so patient data takes no second network hop.
//!
//! What it is not (yet): this is the walking-skeleton slice. It has CONNECT/CONNACK for both
//! versions, PUBLISH QoS 0/1 (and inbound QoS 2 exactly once per connection), SUBSCRIBE and
//! UNSUBSCRIBE with `+`/`#`, PINGREQ, DISCONNECT, keep-alive, last will, client-id takeover,
//! a CONNECT time limit, a packet size limit and clean shutdown. Retained messages, persistent
//! sessions, outbound QoS 2, TLS, authentication and ACLs belong to issue 3 and are refused or
//! downgraded explicitly, never silently half-done.
//!
//! Layout: `codec` (one view of both protocol versions), `router` (subscriptions, matching),
//! `conn` (one task per connection), this file (config, handle, metrics).
#![forbid(unsafe_code)]

mod codec;
mod conn;
mod router;

pub use codec::Qos;
pub use router::{topic_matches, valid_filter, valid_topic_name};

use bytes::Bytes;
use router::{Router, Sink, Subscription};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid subscription filter {0:?}")]
    BadFilter(String),
    #[error("broker state lock poisoned")]
    Poisoned,
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub listen: SocketAddr,
    /// Largest packet accepted, in bytes. Bigger packets close the connection (v5: 0x95).
    pub max_packet_size: usize,
    /// A connection must send CONNECT within this time or is closed.
    pub connect_timeout: Duration,
    /// Outbound messages queued per connection before new ones are dropped (and counted).
    pub outbound_queue: usize,
    /// Connections beyond this are refused at accept.
    pub max_connections: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            max_packet_size: 256 * 1024,
            connect_timeout: Duration::from_secs(10),
            outbound_queue: 4096,
            max_connections: 1024,
        }
    }
}

/// A message as routed inside the broker.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: Qos,
    /// Client id of the publishing connection (`""` for in-process publishes).
    pub client_id: Arc<str>,
}

/// Counters, each a reason something happened; exported as a snapshot.
#[derive(Default)]
pub(crate) struct Metrics {
    pub connections_total: AtomicU64,
    pub connections_active: AtomicU64,
    pub connections_refused: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub messages_dropped: AtomicU64,
    pub malformed_packets: AtomicU64,
    pub packets_too_large: AtomicU64,
    pub invalid_topics: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub keepalive_timeouts: AtomicU64,
    pub connect_timeouts: AtomicU64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetricsSnapshot {
    pub connections_total: u64,
    pub connections_active: u64,
    pub connections_refused: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub messages_dropped: u64,
    pub malformed_packets: u64,
    pub packets_too_large: u64,
    pub invalid_topics: u64,
    pub protocol_errors: u64,
    pub keepalive_timeouts: u64,
    pub connect_timeouts: u64,
}

impl Metrics {
    fn snapshot(&self) -> MetricsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            connections_total: g(&self.connections_total),
            connections_active: g(&self.connections_active),
            connections_refused: g(&self.connections_refused),
            messages_in: g(&self.messages_in),
            messages_out: g(&self.messages_out),
            messages_dropped: g(&self.messages_dropped),
            malformed_packets: g(&self.malformed_packets),
            packets_too_large: g(&self.packets_too_large),
            invalid_topics: g(&self.invalid_topics),
            protocol_errors: g(&self.protocol_errors),
            keepalive_timeouts: g(&self.keepalive_timeouts),
            connect_timeouts: g(&self.connect_timeouts),
        }
    }
}

pub(crate) fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

pub(crate) struct Shared {
    pub cfg: BrokerConfig,
    pub router: RwLock<Router>,
    pub metrics: Metrics,
    /// client id -> (owner id, control channel), for takeover of duplicate client ids.
    pub clients: Mutex<HashMap<String, (u64, Arc<tokio::sync::Notify>)>>,
    next_owner: AtomicU64,
}

impl Shared {
    pub fn next_owner(&self) -> u64 {
        self.next_owner.fetch_add(1, Ordering::Relaxed)
    }

    /// Routes a message to every matching subscriber. Network subscribers get it if their
    /// queue has room (a slow subscriber loses messages, counted, rather than stalling the
    /// ward). In-process subscribers apply backpressure for QoS 1/2, so what the broker
    /// acknowledged to a device has been handed to the station; QoS 0 (waveforms) is dropped
    /// and counted when the station falls behind.
    pub async fn route(&self, msg: Message) {
        let targets = match self.router.read() {
            Ok(r) => r.targets(&msg.topic),
            Err(_) => {
                tracing::error!("router lock poisoned; message dropped");
                bump(&self.metrics.messages_dropped);
                return;
            }
        };
        for (_, sink, sub_qos) in targets {
            let qos = msg.qos.min(sub_qos);
            let delivered = match sink {
                Sink::Conn(tx) => tx
                    .try_send(router::ToConn::Deliver(msg.clone(), qos))
                    .is_ok(),
                Sink::Local(tx) if msg.qos == 0 => tx.try_send(msg.clone()).is_ok(),
                Sink::Local(tx) => tx.send(msg.clone()).await.is_ok(),
            };
            if delivered {
                bump(&self.metrics.messages_out);
            } else {
                bump(&self.metrics.messages_dropped);
            }
        }
    }
}

/// A running broker. Dropping it does not stop it; call [`BrokerHandle::shutdown`].
pub struct BrokerHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

pub async fn start(cfg: BrokerConfig) -> Result<BrokerHandle, BrokerError> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| BrokerError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| BrokerError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let shared = Arc::new(Shared {
        cfg,
        router: RwLock::new(Router::default()),
        metrics: Metrics::default(),
        clients: Mutex::new(HashMap::new()),
        next_owner: AtomicU64::new(1),
    });
    let (stop, stop_rx) = watch::channel(false);
    let accept = tokio::spawn(conn::accept_loop(listener, shared.clone(), stop_rx));
    tracing::info!(%local_addr, "broker listening");
    Ok(BrokerHandle {
        shared,
        local_addr,
        stop,
        accept,
    })
}

impl BrokerHandle {
    /// The address actually bound (port 0 in the config becomes the OS's choice here).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Subscribes the station in-process. Messages arrive on the returned receiver.
    pub fn subscribe_local(
        &self,
        filter: &str,
        capacity: usize,
    ) -> Result<mpsc::Receiver<Message>, BrokerError> {
        if !valid_filter(filter) {
            return Err(BrokerError::BadFilter(filter.to_string()));
        }
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let owner = self.shared.next_owner();
        self.shared
            .router
            .write()
            .map_err(|_| BrokerError::Poisoned)?
            .subscribe(Subscription {
                owner,
                filter: filter.to_string(),
                qos: 2,
                sink: Sink::Local(tx),
            });
        Ok(rx)
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// Stops accepting, tells every connection to close (v5 clients get DISCONNECT 0x8B) and
    /// waits for the accept loop to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
        // Give connection tasks a moment to send their DISCONNECT; they hold no data that
        // could be lost (QoS 1/2 was handed to the station before it was acknowledged).
        for _ in 0..50 {
            if self
                .shared
                .metrics
                .connections_active
                .load(Ordering::Relaxed)
                == 0
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!("broker stopped");
    }
}
