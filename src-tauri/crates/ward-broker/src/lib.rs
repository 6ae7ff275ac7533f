//! ward-broker: the MQTT broker embedded in every Wardwatch station.
//!
//! Our own broker core on rumqttc's packet codec and tokio. Bedside monitors connect over TCP
//! or TLS (MQTT 3.1.1 or 5.0); the station subscribes in-process
//! ([`BrokerHandle::subscribe_local`]) so patient data takes no second network hop.
//!
//! It has QoS 0/1/2 both ways with exactly-once inbound state by packet id, retained messages,
//! wills (with MQTT 5 will delay), clean and persistent sessions with expiry and offline
//! queues, redelivery on reconnect, the MQTT 5 features (receive maximum, maximum packet size,
//! topic aliases both ways, subscription identifiers, no-local, retain-as-published, retain
//! handling, message expiry, request/response properties, user properties, server keep-alive,
//! assigned client ids, reason codes, shared subscriptions), durable sessions and messages in
//! SQLite with group commit, a slow subscriber's backlog spilled to SQLite (nothing
//! acknowledged is dropped), MQTT over WebSockets, TLS and mutual TLS, argon2 passwords and
//! Mosquitto-style ACLs, limits with counters, and `$SYS` metrics.
//!
//! Layout: `codec` (both protocol versions), `router` (subscriptions, matching), `session`
//! (state that outlives a connection, its queue and spill), `machine` (a connection's
//! protocol as a machine without I/O), `conn` (its tokio driver, one task per connection),
//! `ws` (MQTT over WebSockets), `persist` (SQLite), `auth` (identities, passwords, ACL),
//! `tls` (rustls listener), this file (config, shared state, planning and routing, handle,
//! metrics).
#![forbid(unsafe_code)]

pub mod auth;
mod codec;
mod conn;
mod hold;
mod machine;
mod persist;
mod router;
mod session;
pub mod tls;
mod ws;

pub use auth::{Acl, Authorizer, FileAuth, Identity, Passwords, SubAccess};
pub use codec::{reason, PubProps, Qos};
pub use hold::AckHold;
pub use persist::PersistError;
pub use router::{split_share, topic_matches, valid_filter, valid_topic_name};
pub use tls::{acceptor_for, TlsConfig, TlsError};
/// The acceptor type other listeners of the station use (`acceptor_for`).
pub use tokio_rustls::TlsAcceptor;

/// The decode path and the connection machine as the fuzzers see them
/// (`fuzz/fuzz_targets/decode.rs`, `sequence.rs`): not for other use.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::machine::fuzz::run_sequence;

    use crate::codec::{decode, Proto};
    use bytes::BytesMut;

    /// Decodes `data` as a connection would: first as the bytes before CONNECT, then as a
    /// stream of 3.1.1 packets and as a stream of 5.0 packets, each until it needs more bytes
    /// or finds an error. Whatever the bytes, this must return, not panic.
    pub fn decode_all(data: &[u8]) {
        for proto in [None, Some(Proto::V4), Some(Proto::V5)] {
            let mut buf = BytesMut::from(data);
            for _ in 0..1024 {
                match decode(proto, &mut buf, 64 * 1024) {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}

use bytes::Bytes;
use persist::{Op, Persist, StoredMsg};
use router::{Entry, Router, Target, Targets};
use session::{Delivery, Refused, SessionSlot};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
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
    #[error("invalid topic name {0:?}")]
    BadTopic(String),
    #[error("broker state lock poisoned")]
    Poisoned,
    #[error(transparent)]
    Store(#[from] PersistError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("no TLS listener is configured")]
    NoTls,
}

/// The decision hook, shared by every connection. A newtype so the config stays `Debug`.
#[derive(Clone)]
pub struct AuthHook(pub Arc<dyn Authorizer>);

impl std::fmt::Debug for AuthHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthHook")
    }
}

/// Broker settings. Each limit says what happens when it is reached; each has a counter in
/// [`MetricsSnapshot`].
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Plain TCP listener.
    pub listen: SocketAddr,
    /// Optional TLS listener beside the plain one.
    pub tls: Option<TlsConfig>,
    /// MQTT over WebSockets (`ws://HOST:PORT/`, any path, subprotocol `mqtt`), for
    /// dashboards and browser tools. Same authentication, ACL and limits as TCP.
    pub ws_listen: Option<SocketAddr>,
    /// MQTT over secure WebSockets (`wss://`), with the certificate of `tls` (required).
    pub wss_listen: Option<SocketAddr>,
    /// Largest packet accepted, in bytes. Bigger: closed (v5: DISCONNECT 0x95).
    pub max_packet_size: usize,
    /// A connection must complete its TLS handshake and send CONNECT within this time, or is
    /// closed, so a silent client holds nothing for long.
    pub connect_timeout: Duration,
    /// Connections beyond this are closed at accept (counted as refused).
    pub max_connections: usize,
    /// Inbound QoS 1/2 messages a v5 client may have unacknowledged (advertised as receive
    /// maximum). Exceeded: DISCONNECT 0x93.
    pub receive_max: u16,
    /// Outbound QoS 1/2 messages in flight per client (also capped by the client's receive
    /// maximum). Reached: further messages wait in the session queue.
    pub max_inflight: u16,
    /// Messages and payload bytes queued in memory per session. Reached: QoS 1/2 messages for
    /// that session spill to the store (their payloads wait on disk, read back in order when
    /// the client catches up); QoS 0 messages are dropped for that session and counted
    /// (`dropped_queue_full`). Other subscribers are not affected either way.
    pub max_queued_messages: usize,
    pub max_queued_bytes: usize,
    /// Payload bytes one session may have spilled to the store. Reached (or, without a store,
    /// the in-memory limit reached): a QoS 1/2 PUBLISH that session would receive is refused
    /// before it is acknowledged (MQTT 5: PUBACK/PUBREC 0x97 quota exceeded; MQTT 3.1.1, which
    /// cannot say no: the connection is closed unacknowledged, so the client sends it again),
    /// counted as `refused_quota`. Nothing acknowledged is dropped.
    pub max_spilled_bytes: usize,
    /// PUBLISH packets per second per client (0: no limit). Exceeded: the broker stops reading
    /// from that client until it is back under the rate (TCP backpressure, nothing dropped),
    /// counted as `rate_limited`.
    pub max_msg_rate: u32,
    /// Topic aliases a client may use towards us.
    pub topic_alias_max: u16,
    /// Longest keep-alive allowed (seconds, 0: any). A v5 client asking for more, or for none,
    /// is told this value as server keep-alive.
    pub max_keep_alive: u16,
    /// Longest session expiry (seconds). 3.1.1 persistent sessions get exactly this.
    pub max_session_expiry: u32,
    /// SQLite file for persistent sessions, queued QoS 1/2 messages, inbound QoS 2 state and
    /// retained messages. `None`: all of that lives in memory only.
    pub store: Option<PathBuf>,
    /// fsync each group commit (power-loss durability); without it commits survive a killed
    /// process but not a power cut.
    pub fsync: bool,
    /// How often `$SYS/broker/...` metrics are published (zero: never).
    pub sys_interval: Duration,
    pub auth: AuthHook,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            tls: None,
            ws_listen: None,
            wss_listen: None,
            max_packet_size: 256 * 1024,
            connect_timeout: Duration::from_secs(10),
            max_connections: 1024,
            receive_max: 1024,
            max_inflight: 256,
            max_queued_messages: 10_000,
            max_queued_bytes: 64 * 1024 * 1024,
            max_spilled_bytes: 1024 * 1024 * 1024,
            max_msg_rate: 0,
            topic_alias_max: 64,
            max_keep_alive: 600,
            max_session_expiry: 7 * 24 * 3600,
            store: None,
            fsync: false,
            sys_interval: Duration::from_secs(10),
            auth: AuthHook(Arc::new(FileAuth::default())),
        }
    }
}

/// A message as routed inside the broker.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: Qos,
    pub retain: bool,
    /// Client id of the publishing connection (`""` for in-process publishes).
    pub client_id: Arc<str>,
    /// MQTT 5 properties forwarded to subscribers.
    pub props: Option<Arc<PubProps>>,
    /// Message expiry as wall-clock Unix milliseconds.
    pub expires_at_ms: Option<i64>,
    /// Durable id when the message is stored (0 otherwise).
    pub id: u64,
    /// Set on the copy a confirming in-process subscriber receives of a QoS 1/2 message from
    /// a client: the publisher's acknowledgement waits until every clone is dropped.
    pub hold: Option<AckHold>,
}

impl Message {
    pub fn new(topic: &str, payload: impl Into<Bytes>, qos: Qos, retain: bool) -> Self {
        Self {
            topic: Arc::from(topic),
            payload: payload.into(),
            qos,
            retain,
            client_id: Arc::from(""),
            props: None,
            expires_at_ms: None,
            id: 0,
            hold: None,
        }
    }

    fn stored(&self) -> StoredMsg {
        StoredMsg {
            id: self.id,
            topic: self.topic.to_string(),
            payload: self.payload.to_vec(),
            qos: self.qos,
            retain: self.retain,
            props: self.props.as_deref().cloned(),
            expires_at_ms: self.expires_at_ms,
            publisher: self.client_id.to_string(),
        }
    }

    fn from_stored(m: StoredMsg) -> Self {
        Self {
            topic: Arc::from(m.topic),
            payload: Bytes::from(m.payload),
            qos: m.qos,
            retain: m.retain,
            client_id: Arc::from(m.publisher),
            props: m.props.map(Arc::new),
            expires_at_ms: m.expires_at_ms,
            id: m.id,
            hold: None,
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

macro_rules! metrics {
    ($($name:ident),* $(,)?) => {
        /// Counters, each a reason something happened.
        #[derive(Default)]
        pub(crate) struct Metrics { $(pub $name: AtomicU64,)* }

        /// A snapshot of the counters, plus gauges read at snapshot time.
        #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
        #[cfg_attr(feature = "ts", derive(ts_rs::TS))]
        pub struct MetricsSnapshot {
            $(pub $name: u64,)*
            pub sessions: u64,
            pub sessions_persistent: u64,
            pub queued_messages: u64,
            pub spilled_messages: u64,
            pub inflight_messages: u64,
            pub retained_messages: u64,
            pub subscriptions: u64,
            pub store_commits: u64,
            pub store_ops: u64,
            pub store_errors: u64,
        }

        impl Metrics {
            fn counters(&self) -> MetricsSnapshot {
                MetricsSnapshot {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                    ..MetricsSnapshot::default()
                }
            }
        }
    };
}

metrics!(
    connections_total,
    connections_active,
    connections_refused,
    messages_in,
    messages_out,
    messages_dropped,
    dropped_queue_full,
    dropped_local_full,
    dropped_expired,
    dropped_too_large_for_client,
    messages_spilled,
    spill_read_failures,
    refused_quota,
    refused_store_failing,
    malformed_packets,
    packets_too_large,
    invalid_topics,
    protocol_errors,
    keepalive_timeouts,
    connect_timeouts,
    auth_failures,
    acl_denied_publish,
    acl_denied_subscribe,
    receive_max_exceeded,
    rate_limited,
    tls_handshake_failures,
    tls_handshake_timeouts,
    websocket_handshake_failures,
    tls_reloads,
    tls_reload_failures,
    sessions_expired,
    wills_published,
);

pub(crate) fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Deliveries decided for one message, carried out once the message is durable.
pub(crate) struct Plan {
    pub msg: Arc<Message>,
    pub targets: Targets,
    /// Per session target: a delivery row was written.
    pub durable: Vec<bool>,
    /// Per session target: its in-memory queue was full, so it gets the message spilled (its
    /// payload on disk only).
    pub spill: Vec<bool>,
    /// Per session target: room was reserved for it (QoS 1/2 to a session that keeps it).
    pub reserved: Vec<bool>,
    /// The publisher's acknowledgement waits on this: handed to confirming local
    /// subscribers, dropped with the plan once dispatched.
    pub hold: Option<AckHold>,
}

impl Drop for Plan {
    /// A plan dropped without being dispatched (its connection ended before the commit)
    /// gives back the room it reserved. `dispatch` empties the lists first.
    fn drop(&mut self) {
        let len = self.msg.payload.len();
        for ((t, spill), reserved) in self
            .targets
            .sessions
            .iter()
            .zip(&self.spill)
            .zip(&self.reserved)
        {
            if *reserved {
                t.slot.lock().unreserve(*spill, len);
            }
        }
    }
}

/// Why a QoS 1/2 publish is refused before it is acknowledged.
#[derive(Debug)]
pub(crate) enum NoRoom {
    /// This session (client id) has no room for it, in memory or on disk.
    Full(Arc<str>),
    /// A persistent session needs it kept on disk and the broker's store cannot write (a full
    /// disk): acknowledging would promise what cannot be kept.
    StoreFailing,
}

pub(crate) struct Shared {
    pub cfg: BrokerConfig,
    pub router: RwLock<Router>,
    pub metrics: Metrics,
    pub sessions: Mutex<HashMap<Arc<str>, Arc<SessionSlot>>>,
    pub retained: RwLock<HashMap<Arc<str>, Arc<Message>>>,
    pub persist: Option<Persist>,
    pub tls: Option<tls::TlsState>,
    next_owner: AtomicU64,
    started: std::time::Instant,
    /// The open connection count, published at every change so shutdown and the station
    /// wait for connections to end on a signal instead of polling the counter.
    connections: watch::Sender<u64>,
}

impl Shared {
    pub(crate) fn new(
        cfg: BrokerConfig,
        persist: Option<Persist>,
        tls: Option<tls::TlsState>,
    ) -> Self {
        Self {
            cfg,
            router: RwLock::new(Router::default()),
            metrics: Metrics::default(),
            sessions: Mutex::new(HashMap::new()),
            retained: RwLock::new(HashMap::new()),
            persist,
            tls,
            next_owner: AtomicU64::new(1),
            started: std::time::Instant::now(),
            connections: watch::channel(0).0,
        }
    }

    pub fn connections_changed(&self) {
        let n = self.metrics.connections_active.load(Ordering::Relaxed);
        self.connections.send_replace(n);
    }

    pub fn next_owner(&self) -> u64 {
        self.next_owner.fetch_add(1, Ordering::Relaxed)
    }

    pub fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<SessionSlot>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Submits writes (if any and if there is a store) and returns the ticket to wait for;
    /// 0 means nothing to wait for.
    pub fn submit(&self, ops: Vec<Op>) -> u64 {
        match &self.persist {
            Some(p) if !ops.is_empty() => p.submit(ops),
            _ => 0,
        }
    }

    /// Whether the store failed to commit the batch that held `ticket` (0: nothing was
    /// written, so nothing failed).
    pub fn ticket_failed(&self, ticket: u64) -> bool {
        ticket > 0 && self.persist.as_ref().is_some_and(|p| p.failed(ticket))
    }

    pub async fn wait(&self, ticket: u64) {
        if let (Some(p), true) = (&self.persist, ticket > 0) {
            p.wait(ticket).await;
        }
    }

    /// Decides where a message goes and which writes must be durable before it is
    /// acknowledged: a delivery row for each persistent session that gets it at QoS 1/2, and
    /// for each session whose in-memory queue is full (the spill), and the retained copy.
    /// Retained state changes now, in publish order.
    ///
    /// A QoS 1/2 message that some session has no room for at all is refused here, before
    /// anything is acknowledged or changed, when `may_refuse` (a client's publish); the
    /// station's own publishes and wills are never refused and queue in memory past the limit.
    pub fn plan(
        &self,
        mut msg: Message,
        ops: &mut Vec<Op>,
        may_refuse: bool,
    ) -> Result<Plan, NoRoom> {
        let targets = match self.router.read() {
            Ok(r) => r.targets(&msg.topic, &msg.client_id, &*self.cfg.auth.0),
            Err(_) => Targets::default(),
        };
        let len = msg.payload.len();
        let store = self.persist.is_some();
        let n = targets.sessions.len();
        let (mut durable, mut spill, mut reserved) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        // Room is reserved target by target; on a refusal the partial plan is dropped, and its
        // Drop gives back what was reserved so far.
        let mut no_room = None;
        for t in &targets.sessions {
            let (d, sp, r) = if msg.qos.min(t.qos) == 0 {
                (false, false, false)
            } else {
                let persistent = t.slot.is_persistent();
                let mut s = t.slot.lock();
                let (d, sp, r) = if s.removed || (s.link.is_none() && s.expiry == 0) {
                    // A clean session whose client is gone keeps nothing.
                    (false, false, false)
                } else if s.memory_has_room(
                    len,
                    self.cfg.max_queued_messages,
                    self.cfg.max_queued_bytes,
                ) {
                    (store && persistent, false, true)
                } else if store && s.spill_has_room(len, self.cfg.max_spilled_bytes) {
                    (true, true, true)
                } else if may_refuse {
                    no_room = Some(t.slot.client_id.clone());
                    break;
                } else {
                    (store && persistent, false, true)
                };
                if r {
                    s.reserve(sp, len);
                }
                (d, sp, r)
            };
            durable.push(d);
            spill.push(sp);
            reserved.push(r);
        }
        let mut no_room = no_room.map(NoRoom::Full);
        // The store's disk refuses writes and a persistent session needs this message kept:
        // refused before the acknowledgement (never after), unless the station itself takes
        // it in-process; the station's own store then keeps it (acknowledged after its
        // commit), and a ward's monitors must never be refused for a bystander's session.
        if no_room.is_none()
            && may_refuse
            && msg.qos > 0
            && targets.locals.is_empty()
            && durable.iter().any(|d| *d)
            && self.persist.as_ref().is_some_and(|p| p.failing())
        {
            no_room = Some(NoRoom::StoreFailing);
        }
        if let Some(why) = no_room {
            drop(Plan {
                msg: Arc::new(msg),
                targets,
                durable,
                spill,
                reserved,
                hold: None,
            });
            return Err(why);
        }
        if let (Some(p), true) = (&self.persist, durable.iter().any(|d| *d)) {
            msg.id = p.next_msg_id();
            ops.push(Op::Msg(msg.stored()));
            for (t, _) in targets.sessions.iter().zip(&durable).filter(|(_, d)| **d) {
                ops.push(Op::Deliver {
                    client: t.slot.client_id.clone(),
                    msg_id: msg.id,
                    qos: msg.qos.min(t.qos),
                    retain: msg.retain && t.retain_as_published,
                    sub_ids: t.sub_ids.clone(),
                });
            }
        }
        let msg = Arc::new(msg);
        if msg.retain {
            self.update_retained(&msg, ops);
        }
        Ok(Plan {
            msg,
            targets,
            durable,
            spill,
            reserved,
            hold: None,
        })
    }

    fn update_retained(&self, msg: &Arc<Message>, ops: &mut Vec<Op>) {
        let Ok(mut r) = self.retained.write() else {
            return;
        };
        // Only an empty retained payload clears (MQTT 3.3.1.3); QoS 0 retained messages stay
        // in memory, and replacing a stored one removes the stored copy.
        let previous = if msg.payload.is_empty() {
            r.remove(&msg.topic)
        } else {
            r.insert(msg.topic.clone(), msg.clone())
        };
        if self.persist.is_none() {
            return;
        }
        if !msg.payload.is_empty() && msg.qos > 0 {
            let mut stored = msg.stored();
            stored.retain = true;
            ops.push(Op::RetainSet(stored));
        } else if previous.is_some_and(|p| p.qos > 0) {
            ops.push(Op::RetainClear(msg.topic.to_string()));
        }
    }

    /// Hands a planned message to its subscribers.
    pub async fn dispatch(&self, mut plan: Plan) {
        let msg = plan.msg.clone();
        let targets = std::mem::take(&mut plan.targets);
        let durables = std::mem::take(&mut plan.durable);
        let spills = std::mem::take(&mut plan.spill);
        let reserved = std::mem::take(&mut plan.reserved);
        // Given to confirming local subscribers below; this clone goes when dispatch ends.
        let hold = plan.hold.take();
        drop(plan);
        let len = msg.payload.len();
        // One payload-less copy of the message serves every session it spilled for.
        let stub = spills.iter().any(|s| *s).then(|| {
            let mut m = (*msg).clone();
            m.payload = Bytes::new();
            Arc::new(m)
        });
        let mut done = Vec::new();
        let sessions = targets.sessions.into_iter().zip(reserved);
        for (((t, r), durable), spilled) in sessions.zip(durables).zip(spills) {
            let d = Delivery {
                msg: match (&stub, spilled) {
                    (Some(stub), true) => stub.clone(),
                    _ => msg.clone(),
                },
                qos: msg.qos.min(t.qos),
                retain: msg.retain && t.retain_as_published,
                sub_ids: t.sub_ids,
                durable,
                spilled: spilled.then_some(len),
            };
            let r = {
                let mut s = t.slot.lock();
                if r {
                    s.unreserve(spilled, len);
                }
                s.offer(
                    d,
                    self.cfg.max_queued_messages,
                    self.cfg.max_queued_bytes,
                    true,
                )
            };
            match r {
                Ok(()) if spilled => bump(&self.metrics.messages_spilled),
                Ok(()) => {}
                Err(Refused::QueueFull) => {
                    bump(&self.metrics.messages_dropped);
                    bump(&self.metrics.dropped_queue_full);
                    tracing::debug!(client = %t.slot.client_id, topic = %msg.topic, "session queue full; QoS 0 message dropped for this subscriber");
                }
                Err(Refused::NotKept | Refused::Ended) => {}
            }
            if r.is_err() && durable {
                done.push(Op::DeliveryDone {
                    client: t.slot.client_id.clone(),
                    msg_id: msg.id,
                });
            }
        }
        self.submit(done);
        for (tx, sub_qos, confirms) in targets.locals {
            let mut m = (*msg).clone();
            m.qos = msg.qos.min(sub_qos);
            if confirms && m.qos > 0 {
                m.hold = hold.clone();
            }
            // The station applies backpressure for QoS 1/2, so what the broker acknowledged
            // to a device has been handed to the station; QoS 0 (waveforms) is dropped and
            // counted when the station falls behind.
            let ok = if m.qos == 0 {
                tx.try_send(m).is_ok()
            } else {
                tx.send(m).await.is_ok()
            };
            if ok {
                bump(&self.metrics.messages_out);
            } else {
                bump(&self.metrics.messages_dropped);
                bump(&self.metrics.dropped_local_full);
            }
        }
    }

    /// A publish from inside the broker or station (wills, `$SYS`, the handle).
    pub async fn publish_internal(&self, msg: Message) {
        let mut ops = Vec::new();
        let Ok(plan) = self.plan(msg, &mut ops, false) else {
            return;
        };
        let ticket = self.submit(ops);
        self.wait(ticket).await;
        self.dispatch(plan).await;
    }

    /// Ends a session: its subscriptions go, its queue is dropped, and its rows are deleted.
    pub fn end_session(
        &self,
        slot: &Arc<SessionSlot>,
        map: &mut HashMap<Arc<str>, Arc<SessionSlot>>,
    ) {
        let was_persistent = {
            let mut s = slot.lock();
            s.removed = true;
            if let Some(l) = s.link.take() {
                l.kill.notify_one();
            }
            s.drain_all();
            // A clean session that spilled has rows to delete too.
            let p = s.expiry > 0 || s.has_rows;
            s.expiry = 0;
            slot.sync_flags(&s);
            p
        };
        if let Ok(mut r) = self.router.write() {
            r.remove_client(&slot.client_id);
        }
        if map
            .get(&slot.client_id)
            .is_some_and(|cur| Arc::ptr_eq(cur, slot))
        {
            map.remove(&slot.client_id);
        }
        if was_persistent {
            self.submit(vec![Op::SessionDelete(slot.client_id.clone())]);
        }
    }

    fn snapshot(&self) -> MetricsSnapshot {
        let mut m = self.metrics.counters();
        {
            let map = self.sessions();
            m.sessions = map.len() as u64;
            for slot in map.values() {
                let s = slot.lock();
                m.sessions_persistent += u64::from(s.expiry > 0);
                m.queued_messages += s.queue.len() as u64;
                m.spilled_messages += s.spilled as u64;
                m.inflight_messages += s.inflight.len() as u64;
            }
        }
        m.retained_messages = self.retained.read().map(|r| r.len() as u64).unwrap_or(0);
        m.subscriptions = self.router.read().map(|r| r.len() as u64).unwrap_or(0);
        if let Some(p) = &self.persist {
            m.store_commits = p.commits.load(Ordering::Relaxed);
            m.store_ops = p.ops_written.load(Ordering::Relaxed);
            m.store_errors = p.errors.load(Ordering::Relaxed);
        }
        m
    }

    /// Rebuilds sessions, subscriptions, queues and retained messages from the store.
    fn restore(&self, loaded: persist::Loaded) {
        let now = now_ms();
        let mut map = self.sessions();
        for ls in loaded.sessions {
            let client: Arc<str> = Arc::from(ls.client.as_str());
            let slot = Arc::new(SessionSlot::new(client.clone(), ls.expiry));
            {
                let mut s = slot.lock();
                // A session that was online when the station died went offline then.
                let away_ms = ls.offline_since_ms.map(|t| (now - t).max(0)).unwrap_or(0);
                s.offline_since = Some(
                    tokio::time::Instant::now()
                        .checked_sub(Duration::from_millis(away_ms as u64))
                        .unwrap_or_else(tokio::time::Instant::now),
                );
                s.inbound_qos2.extend(ls.inbound_qos2);
                for (filter, opts) in &ls.subs {
                    s.subs.insert(filter.clone(), *opts);
                }
                for d in ls.deliveries {
                    let delivery = Delivery {
                        msg: Arc::new(Message::from_stored(d.msg)),
                        qos: d.qos,
                        retain: d.retain,
                        sub_ids: d.sub_ids,
                        durable: true,
                        spilled: None,
                    };
                    match d.pkid {
                        Some(pkid) => {
                            s.push_flight(pkid, delivery);
                            if d.released {
                                s.released(pkid);
                            }
                        }
                        None => {
                            s.queued_bytes += delivery.msg.payload.len();
                            s.queue.push_back(delivery);
                        }
                    }
                }
                slot.sync_flags(&s);
            }
            // A row from before identities were stored has neither a username nor the
            // anonymous flag: its subscriptions are restored as they were granted, and
            // checked when the client connects again (`recheck_subscriptions`).
            let id = (ls.username.is_some() || ls.anonymous).then(|| {
                Arc::new(Identity {
                    username: ls.username,
                    client_id: ls.client.clone(),
                    anonymous: ls.anonymous,
                })
            });
            self.route_subscriptions(&slot, id.as_ref(), ls.subs);
            map.insert(client, slot);
        }
        drop(map);
        if let Ok(mut r) = self.retained.write() {
            for m in loaded.retained {
                let m = Message::from_stored(m);
                r.insert(m.topic.clone(), Arc::new(m));
            }
        }
    }

    /// Puts a session's subscriptions into the router, with the read rights of `id` checked
    /// again (the ACL may have changed while the client or the station was away): a filter no
    /// longer allowed is dropped from the session (and its row), one overlapping a deny rule
    /// gets its per-message check. `None`: granted as stored, unchecked (an identity not
    /// known yet).
    fn route_subscriptions(
        &self,
        slot: &Arc<SessionSlot>,
        id: Option<&Arc<Identity>>,
        subs: Vec<(String, codec::SubOpts)>,
    ) {
        let mut dropped = Vec::new();
        if let Ok(mut r) = self.router.write() {
            for (filter, opts) in subs {
                let Some((share, f)) = split_share(&filter) else {
                    continue;
                };
                let check = match id.map(|id| (id, self.cfg.auth.0.subscribe(id, f))) {
                    None | Some((_, auth::SubAccess::Granted)) => None,
                    Some((id, auth::SubAccess::CheckEach)) => Some(id.clone()),
                    Some((_, auth::SubAccess::Refused)) => {
                        tracing::warn!(client = %slot.client_id, filter = %filter, "subscription no longer allowed by the ACL; dropped");
                        r.unsubscribe_client(&slot.client_id, f, share);
                        dropped.push(filter);
                        continue;
                    }
                };
                r.subscribe(Entry {
                    filter: f.to_string(),
                    share: share.map(str::to_string),
                    opts,
                    target: Target::Session(slot.clone()),
                    check,
                });
            }
        }
        if dropped.is_empty() {
            return;
        }
        let mut ops = Vec::new();
        {
            let mut s = slot.lock();
            for filter in dropped {
                s.subs.remove(&filter);
                if s.expiry > 0 {
                    ops.push(Op::SubRemove {
                        client: slot.client_id.clone(),
                        filter,
                    });
                }
            }
        }
        self.submit(ops);
    }

    /// A client is back on its session: its subscriptions are checked against who it
    /// authenticated as now.
    pub(crate) fn recheck_subscriptions(&self, slot: &Arc<SessionSlot>, id: &Arc<Identity>) {
        let subs: Vec<(String, codec::SubOpts)> = slot
            .lock()
            .subs
            .iter()
            .map(|(f, o)| (f.clone(), *o))
            .collect();
        if !subs.is_empty() {
            self.route_subscriptions(slot, Some(id), subs);
        }
    }

    /// Ends sessions whose expiry has passed since their client left.
    fn expire_sessions(&self) {
        let now = tokio::time::Instant::now();
        let mut map = self.sessions();
        let expired: Vec<Arc<SessionSlot>> = map
            .values()
            .filter(|slot| {
                let s = slot.lock();
                s.link.is_none()
                    && s.expiry != u32::MAX
                    && s.offline_since
                        .is_some_and(|t| now >= t + Duration::from_secs(u64::from(s.expiry)))
            })
            .cloned()
            .collect();
        for slot in expired {
            tracing::info!(client = %slot.client_id, "session expired");
            bump(&self.metrics.sessions_expired);
            self.end_session(&slot, &mut map);
        }
    }

    async fn publish_sys(&self) {
        let m = self.snapshot();
        let uptime = self.started.elapsed().as_secs();
        let items: [(&str, String); 13] = [
            (
                "version",
                format!("wardwatch {}", env!("CARGO_PKG_VERSION")),
            ),
            ("uptime", uptime.to_string()),
            ("clients/connected", m.connections_active.to_string()),
            ("clients/total", m.sessions.to_string()),
            ("clients/persistent", m.sessions_persistent.to_string()),
            ("messages/received", m.messages_in.to_string()),
            ("messages/sent", m.messages_out.to_string()),
            ("messages/dropped", m.messages_dropped.to_string()),
            ("messages/queued", m.queued_messages.to_string()),
            ("messages/inflight", m.inflight_messages.to_string()),
            ("retained/count", m.retained_messages.to_string()),
            ("subscriptions/count", m.subscriptions.to_string()),
            (
                "denied",
                (m.acl_denied_publish + m.acl_denied_subscribe + m.auth_failures).to_string(),
            ),
        ];
        for (k, v) in items {
            self.publish_internal(Message::new(&format!("$SYS/broker/{k}"), v, 0, true))
                .await;
        }
    }
}

/// A running broker. Dropping it does not stop it; call [`BrokerHandle::shutdown`].
/// See [`BrokerHandle::metrics_view`].
#[derive(Clone)]
pub struct MetricsView(Arc<Shared>);

impl MetricsView {
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.0.snapshot()
    }

    /// See [`BrokerHandle::wait_connections`].
    pub async fn wait_connections(&self, target: u64, limit: Duration) -> u64 {
        let mut rx = self.0.connections.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|n| *n <= target)).await;
        let n = *rx.borrow();
        n
    }
}

pub struct BrokerHandle {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    ws_addr: Option<SocketAddr>,
    wss_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), BrokerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| BrokerError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| BrokerError::Bind { addr, source })?;
    Ok((listener, local))
}

pub async fn start(cfg: BrokerConfig) -> Result<BrokerHandle, BrokerError> {
    let (listener, local_addr) = bind(cfg.listen).await?;
    let tls_state = match &cfg.tls {
        Some(t) => Some(tls::TlsState::new(t.clone())?),
        None => None,
    };
    let tls_listener = match &cfg.tls {
        Some(t) => Some(bind(t.listen).await?),
        None => None,
    };
    if cfg.wss_listen.is_some() && cfg.tls.is_none() {
        return Err(BrokerError::NoTls);
    }
    let ws_listener = match cfg.ws_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let wss_listener = match cfg.wss_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let (persist, loaded) = match &cfg.store {
        Some(path) => {
            let (p, l) = persist::open(path, cfg.fsync)?;
            (Some(p), Some(l))
        }
        None => (None, None),
    };
    let shared = Arc::new(Shared::new(cfg, persist, tls_state));
    if let Some(l) = loaded {
        let n = l.sessions.len();
        shared.restore(l);
        tracing::info!(sessions = n, "broker state restored from store");
    }
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = vec![tokio::spawn(conn::accept_loop(
        listener,
        shared.clone(),
        stop_rx.clone(),
        conn::Transport::Tcp,
    ))];
    let mut ws_addrs = [None, None];
    for ((l, transport), slot) in [
        (ws_listener, conn::Transport::Ws),
        (wss_listener, conn::Transport::Wss),
    ]
    .into_iter()
    .zip(&mut ws_addrs)
    {
        if let Some((l, addr)) = l {
            *slot = Some(addr);
            tasks.push(tokio::spawn(conn::accept_loop(
                l,
                shared.clone(),
                stop_rx.clone(),
                transport,
            )));
            tracing::info!(%addr, ?transport, "broker WebSocket listening");
        }
    }
    let mut tls_addr = None;
    if let Some((l, addr)) = tls_listener {
        tls_addr = Some(addr);
        tasks.push(tokio::spawn(conn::accept_loop(
            l,
            shared.clone(),
            stop_rx.clone(),
            conn::Transport::Tls,
        )));
        tasks.push(tokio::spawn(tls::watch_files(
            shared.clone(),
            stop_rx.clone(),
        )));
        tracing::info!(%addr, "broker TLS listening");
    }
    tasks.push(tokio::spawn(housekeeping(shared.clone(), stop_rx)));
    tracing::info!(%local_addr, "broker listening");
    Ok(BrokerHandle {
        shared,
        local_addr,
        tls_addr,
        ws_addr: ws_addrs[0],
        wss_addr: ws_addrs[1],
        stop,
        tasks,
    })
}

/// Session expiry once a second, `$SYS` metrics at their interval.
async fn housekeeping(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sys = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {
                shared.expire_sessions();
                let every = shared.cfg.sys_interval;
                if !every.is_zero() && last_sys.elapsed() >= every {
                    last_sys = tokio::time::Instant::now();
                    shared.publish_sys().await;
                }
            }
        }
    }
}

impl BrokerHandle {
    /// The address actually bound (port 0 in the config becomes the OS's choice here).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The TLS listener's address, when one is configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The WebSocket listeners' addresses (`ws://`, `wss://`), when configured.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    pub fn wss_addr(&self) -> Option<SocketAddr> {
        self.wss_addr
    }

    /// Subscribes the station in-process. Messages arrive on the returned receiver.
    pub fn subscribe_local(
        &self,
        filter: &str,
        capacity: usize,
    ) -> Result<mpsc::Receiver<Message>, BrokerError> {
        self.subscribe_local_with(filter, capacity, false)
    }

    /// Subscribes in-process as a subscriber that keeps what it receives: each QoS 1/2
    /// message from a client comes with an [`AckHold`] (in `Message::hold`), and the
    /// publisher is acknowledged only once the subscriber has dropped it (after its own
    /// commit). A subscriber that falls behind thereby slows QoS 1/2 publishers down
    /// instead of losing what was acknowledged to them.
    pub fn subscribe_local_confirmed(
        &self,
        filter: &str,
        capacity: usize,
    ) -> Result<mpsc::Receiver<Message>, BrokerError> {
        self.subscribe_local_with(filter, capacity, true)
    }

    fn subscribe_local_with(
        &self,
        filter: &str,
        capacity: usize,
        confirms: bool,
    ) -> Result<mpsc::Receiver<Message>, BrokerError> {
        let Some((share, f)) = split_share(filter) else {
            return Err(BrokerError::BadFilter(filter.to_string()));
        };
        if !valid_filter(f) {
            return Err(BrokerError::BadFilter(filter.to_string()));
        }
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let owner = self.shared.next_owner();
        self.shared
            .router
            .write()
            .map_err(|_| BrokerError::Poisoned)?
            .subscribe(Entry {
                filter: f.to_string(),
                share: share.map(str::to_string),
                opts: router::LOCAL_OPTS,
                target: Target::Local(owner, tx, confirms),
                check: None,
            });
        Ok(rx)
    }

    /// Publishes from the station itself (no ACL: the station is the broker's owner).
    pub async fn publish(&self, msg: Message) -> Result<(), BrokerError> {
        if !valid_topic_name(&msg.topic) {
            return Err(BrokerError::BadTopic(msg.topic.to_string()));
        }
        self.shared.publish_internal(msg).await;
        Ok(())
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.snapshot()
    }

    /// A cheap, cloneable view of the broker's counters for whoever shows them (the station's
    /// live view), independent of the handle that stops the broker.
    pub fn metrics_view(&self) -> MetricsView {
        MetricsView(self.shared.clone())
    }

    /// Waits until at most `target` connections are open (a completion signal: each
    /// connection task publishes the count when it ends, after routing all it read), or
    /// `limit` has passed. Returns the count then.
    pub async fn wait_connections(&self, target: u64, limit: Duration) -> u64 {
        self.metrics_view().wait_connections(target, limit).await
    }

    /// Re-reads the TLS certificate, key and client CA now. On failure the old ones stay.
    pub fn reload_tls(&self) -> Result<(), BrokerError> {
        let t = self.shared.tls.as_ref().ok_or(BrokerError::NoTls)?;
        match t.reload() {
            Ok(()) => {
                bump(&self.shared.metrics.tls_reloads);
                Ok(())
            }
            Err(e) => {
                bump(&self.shared.metrics.tls_reload_failures);
                Err(e.into())
            }
        }
    }

    /// Stops accepting, tells every connection to close (v5 clients get DISCONNECT 0x8B) and
    /// waits for the accept loops to end. Durable state is already on disk.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in &mut self.tasks {
            let _ = t.await;
        }
        // Connections got the stop signal above; give them half a second to say goodbye.
        let left = self.wait_connections(0, Duration::from_millis(500)).await;
        if left > 0 {
            tracing::warn!(
                connections = left,
                "broker stopped with connections still closing"
            );
        }
        tracing::info!("broker stopped");
    }
}
