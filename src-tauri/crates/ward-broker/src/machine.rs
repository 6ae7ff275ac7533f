//! The connection as a protocol machine: decoded packets and the time in; packets to send,
//! messages to route and store writes out; no sockets, no sleeping, no clock of its own.
//! Split the way quinn-proto and rustls split theirs, so that the whole protocol after CONNECT
//! is driven by tests and a fuzzer in simulated time, and the tokio driver (`conn.rs`) only
//! reads, feeds, routes what was released, writes and waits.
//!
//! Acknowledgements that promise durability wait for the store: a QoS 1/2 PUBLISH that some
//! persistent session will receive is acknowledged (and delivered) only once its rows are
//! committed. Such work waits in `pending`, in arrival order, while the connection keeps
//! reading; one commit then releases many messages.

use crate::auth::{Identity, SubAccess};
use crate::codec::{
    self, reason, ConnAckInfo, DecodeError, Inbound, Outbound, Proto, PublishIn, PublishOut,
    SubResult,
};
use crate::hold::{AckHold, HoldInner};
use crate::persist::Op;
use crate::router::{split_share, valid_filter, valid_topic_name, Entry, Target};
use crate::session::{Delivery, Flight, SessionSlot};
use crate::{bump, now_ms, Message, NoRoom, Plan, Shared};
use bytes::BytesMut;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How a connection ended, which decides whether its will is published.
pub(crate) enum End {
    /// DISCONNECT without "publish my will", or server shutdown.
    Clean,
    /// Anything else: network loss, protocol error, keep-alive timeout, takeover.
    Abnormal,
}

pub(crate) enum Then {
    Dispatch(Plan, Option<Outbound>),
    Send(Outbound),
    SubAck(Outbound, Vec<Delivery>),
}

struct Pending {
    ticket: u64,
    qos1: bool,
    then: Then,
}

struct Held {
    /// `None`: nothing to wait for (it only keeps its place in the order).
    hold: Option<Weak<HoldInner>>,
    qos1: bool,
    ack: Outbound,
}

/// The protocol side of one connection, after CONNECT: packets in, bytes out, no I/O and no
/// clock of its own. Every entry point takes [`Now`]; what it decides to send accumulates in
/// `out` for the driver to write, and the messages it released for routing come back to the
/// driver to hand over (`Shared::dispatch`, which may wait for the station's queue).
pub(crate) struct Machine {
    shared: Arc<Shared>,
    peer: SocketAddr,
    proto: Proto,
    id: Arc<Identity>,
    client_id: Arc<str>,
    owner: u64,
    slot: Arc<SessionSlot>,
    /// Encoded packets to send, in order.
    out: BytesMut,
    pending: VecDeque<Pending>,
    pending_qos1: usize,
    /// Acknowledgements of dispatched messages, in order, each waiting until its hold is
    /// dropped (a confirming local subscriber has kept the message; see `hold.rs`). What
    /// comes after a held acknowledgement waits behind it, so acknowledgements leave in the
    /// order the packets came (MQTT 3.1.1 4.6).
    held: VecDeque<Held>,
    /// Woken by the last drop of a hold; the driver then calls [`Machine::release_held`].
    held_wake: Arc<Notify>,
    in_aliases: HashMap<u16, Arc<str>>,
    out_aliases: HashMap<Arc<str>, u16>,
    client_alias_max: u16,
    client_receive_max: u16,
    client_max_packet: Option<u32>,
    tokens: f64,
    refilled: Instant,
    denials: u64,
    /// CONNECT asked for session expiry 0, so DISCONNECT may not raise it (MQTT 5 3.14.2.2.2).
    expiry_was_zero: bool,
    /// The DISCONNECT reason to send once the acknowledgements already due have gone out.
    close_with: Option<u8>,
    /// DISCONNECT has been written: nothing may follow it.
    closed: bool,
    /// A 3.1.1 publish was refused after it was queued (its store write failed): the
    /// connection must end unacknowledged, the only refusal 3.1.1 has.
    refused_v4: bool,
    /// The time of the latest input.
    now: Now,
    /// 1.5 x the keep-alive in force, and when it runs out without a packet from the client.
    keep_alive: Option<Duration>,
    deadline: Option<Instant>,
}

/// The time, as the driver read it: monotonic for keep-alive and rate, wall-clock for
/// message expiry (an absolute time on the wire and in the store).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub mono: Instant,
    pub wall_ms: i64,
}

impl Now {
    pub fn read() -> Self {
        Self {
            mono: Instant::now(),
            wall_ms: now_ms(),
        }
    }
}

/// What the driver knows after CONNECT, authentication and session attach.
pub(crate) struct Setup {
    pub peer: SocketAddr,
    pub proto: Proto,
    pub id: Arc<Identity>,
    pub client_id: Arc<str>,
    pub owner: u64,
    pub slot: Arc<SessionSlot>,
    pub client_alias_max: u16,
    pub client_receive_max: u16,
    pub client_max_packet: Option<u32>,
    /// Keep-alive in force, seconds (the client's, or the server's cap); 0: none.
    pub keep_alive_s: u16,
    pub expiry_was_zero: bool,
}

pub(crate) fn count_decode_error(shared: &Shared, e: &DecodeError) {
    let m = &shared.metrics;
    match e {
        DecodeError::TooLarge { .. } => bump(&m.packets_too_large),
        DecodeError::TopicNotUtf8 => bump(&m.invalid_topics),
        DecodeError::Malformed(_) | DecodeError::NotConnect(_) => bump(&m.malformed_packets),
        DecodeError::UnsupportedProtocol(_) => bump(&m.protocol_errors),
    }
}

pub(crate) enum Flow {
    Continue,
    Close(End),
}

impl Machine {
    pub fn new(shared: Arc<Shared>, s: Setup, now: Now) -> Self {
        let keep_alive =
            (s.keep_alive_s > 0).then(|| Duration::from_millis(u64::from(s.keep_alive_s) * 1500));
        Self {
            tokens: f64::from(shared.cfg.max_msg_rate),
            shared,
            peer: s.peer,
            proto: s.proto,
            id: s.id,
            client_id: s.client_id,
            owner: s.owner,
            slot: s.slot,
            out: BytesMut::with_capacity(8 * 1024),
            pending: VecDeque::new(),
            pending_qos1: 0,
            held: VecDeque::new(),
            held_wake: Arc::new(Notify::new()),
            in_aliases: HashMap::new(),
            out_aliases: HashMap::new(),
            client_alias_max: s.client_alias_max,
            client_receive_max: s.client_receive_max,
            client_max_packet: s.client_max_packet,
            refilled: now.mono,
            denials: 0,
            expiry_was_zero: s.expiry_was_zero,
            close_with: None,
            closed: false,
            refused_v4: false,
            now,
            keep_alive,
            deadline: keep_alive.map(|k| now.mono + k),
        }
    }

    /// CONNACK, then what the session owes the client: its unacknowledged messages again
    /// (DUP) and its queue.
    pub fn start(&mut self, connack: ConnAckInfo) {
        self.push(Outbound::ConnAck(connack));
        self.resend_inflight();
        self.pull();
    }

    pub fn slot(&self) -> &Arc<SessionSlot> {
        &self.slot
    }

    /// Bytes to send. The driver writes them and clears the buffer.
    pub fn out(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// A DISCONNECT has been written; nothing may follow it.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// A publish was refused that MQTT 3.1.1 can refuse only by closing the connection; the
    /// driver closes it (abnormally: the will, if any, goes out) and sends nothing more.
    pub fn must_drop(&self) -> bool {
        self.refused_v4
    }

    /// Work waits for the store (its acknowledgement is due once the commit lands).
    pub fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Acknowledgements wait for a confirming local subscriber.
    pub fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// What the last drop of a hold wakes (the driver waits on it while [`Machine::holding`]).
    pub fn held_wake(&self) -> Arc<Notify> {
        self.held_wake.clone()
    }

    /// Sends the held acknowledgements whose holds are all dropped, in order, stopping at
    /// the first still held.
    pub fn release_held(&mut self) {
        while self
            .held
            .front()
            .is_some_and(|h| h.hold.as_ref().is_none_or(|w| w.strong_count() == 0))
        {
            let Some(h) = self.held.pop_front() else {
                break;
            };
            if h.qos1 {
                self.pending_qos1 -= 1;
            }
            self.push(h.ack);
        }
    }

    /// Sends `ack` now, or behind the held ones.
    fn ack_in_order(&mut self, ack: Outbound, qos1: bool) {
        if self.held.is_empty() {
            if qos1 {
                self.pending_qos1 -= 1;
            }
            self.push(ack);
        } else {
            self.held.push_back(Held {
                hold: None,
                qos1,
                ack,
            });
        }
    }

    /// When [`Machine::on_timeout`] is due: the keep-alive deadline.
    pub fn timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// The keep-alive ran out (1.5 x its value without a packet): DISCONNECT 0x8D.
    pub fn on_timeout(&mut self, now: Now) -> Option<Flow> {
        self.now = now;
        if self.deadline.is_none_or(|d| now.mono < d) {
            return None;
        }
        bump(&self.shared.metrics.keepalive_timeouts);
        tracing::info!(peer = %self.peer, client = %self.client_id, "closed: keep-alive expired");
        self.disconnect(reason::KEEP_ALIVE_TIMEOUT);
        Some(Flow::Close(End::Abnormal))
    }

    /// Ends the connection from the server's side with a DISCONNECT (v5) carrying `code`:
    /// session taken over, server shutting down.
    pub fn disconnect(&mut self, code: u8) {
        self.push(Outbound::Disconnect(code));
        self.closed = true;
    }

    /// The session's queue has something new: send what the client's window allows.
    pub fn wake(&mut self, now: Now) {
        self.now = now;
        self.pull();
    }

    /// Bytes read from the client: every complete packet in `buf` is handled.
    pub fn receive(&mut self, buf: &mut BytesMut, now: Now) -> Flow {
        self.now = now;
        // Any bytes count as activity (MQTT 3.1.2.10: a packet within 1.5 x keep-alive).
        self.deadline = self.keep_alive.map(|k| now.mono + k);
        self.drain_packets(buf)
    }

    fn drain_packets(&mut self, buf: &mut BytesMut) -> Flow {
        loop {
            match codec::decode(Some(self.proto), buf, self.shared.cfg.max_packet_size) {
                Ok(None) => return Flow::Continue,
                Ok(Some(packet)) => {
                    if let Flow::Close(end) = self.handle(packet) {
                        return Flow::Close(end);
                    }
                }
                Err(e) => {
                    count_decode_error(&self.shared, &e);
                    tracing::warn!(peer = %self.peer, client = %self.client_id, reason = %e, "closed: bad packet");
                    self.close_with = Some(e.reason());
                    return Flow::Close(End::Abnormal);
                }
            }
        }
    }

    /// Per-client message rate: when over budget, the time reading may resume (the driver
    /// stops reading until then: TCP backpressure, nothing dropped).
    pub fn throttle(&mut self) -> Option<Instant> {
        let rate = f64::from(self.shared.cfg.max_msg_rate);
        if rate <= 0.0 || self.tokens >= 0.0 {
            return None;
        }
        bump(&self.shared.metrics.rate_limited);
        let wait = Duration::from_secs_f64((-self.tokens / rate).min(10.0));
        tracing::debug!(client = %self.client_id, ?wait, "message rate over the limit; reading paused");
        Some(self.now.mono + wait)
    }

    fn take_token(&mut self) {
        let rate = f64::from(self.shared.cfg.max_msg_rate);
        if rate <= 0.0 {
            return;
        }
        let now = self.now.mono;
        let add = now.duration_since(self.refilled).as_secs_f64() * rate;
        self.refilled = now;
        self.tokens = (self.tokens + add).min(rate) - 1.0;
    }

    pub fn handle(&mut self, packet: Inbound) -> Flow {
        match packet {
            Inbound::Publish(p) => self.on_publish(p),
            Inbound::PubRel(pkid) => {
                let had = self.slot.lock().inbound_qos2.remove(&pkid);
                let mut ops = Vec::new();
                if had && self.slot.is_persistent() {
                    ops.push(Op::InboundRemove {
                        client: self.client_id.clone(),
                        pkid,
                    });
                }
                // PUBCOMP only once the id is free on disk too; otherwise a crash could leave
                // it looking in use and swallow the client's next message with that id.
                self.enqueue(ops, false, Then::Send(Outbound::PubComp(pkid)));
                Flow::Continue
            }
            Inbound::PubAck(pkid) => {
                let d = self.slot.lock().complete(pkid, Flight::Ack);
                self.finished(d);
                self.pull();
                Flow::Continue
            }
            Inbound::PubRec(pkid) => {
                let durable = self
                    .slot
                    .lock()
                    .released(pkid)
                    .map(|d| (d.durable, d.msg.id));
                if let Some((true, msg_id)) = durable {
                    self.shared.submit(vec![Op::DeliveryReleased {
                        client: self.client_id.clone(),
                        msg_id,
                    }]);
                }
                self.push(Outbound::PubRel(pkid));
                Flow::Continue
            }
            Inbound::PubComp(pkid) => {
                let d = self.slot.lock().complete(pkid, Flight::Comp);
                self.finished(d);
                self.pull();
                Flow::Continue
            }
            Inbound::Subscribe { pkid, filters } => self.on_subscribe(pkid, filters),
            Inbound::Unsubscribe { pkid, filters } => {
                let mut results = Vec::with_capacity(filters.len());
                let mut ops = Vec::new();
                for f in filters {
                    let existed = self.slot.lock().subs.remove(&f).is_some();
                    if let (Some((share, ff)), Ok(mut r)) =
                        (split_share(&f), self.shared.router.write())
                    {
                        r.unsubscribe_client(&self.client_id, ff, share);
                    }
                    if existed && self.slot.is_persistent() {
                        ops.push(Op::SubRemove {
                            client: self.client_id.clone(),
                            filter: f.clone(),
                        });
                    }
                    results.push(if existed {
                        reason::SUCCESS
                    } else {
                        reason::NO_SUBSCRIPTION_EXISTED
                    });
                }
                self.enqueue(ops, false, Then::Send(Outbound::UnsubAck { pkid, results }));
                Flow::Continue
            }
            Inbound::PingReq => {
                self.push(Outbound::PingResp);
                Flow::Continue
            }
            Inbound::Disconnect {
                with_will,
                session_expiry,
            } => {
                if let Some(e) = session_expiry {
                    if self.expiry_was_zero && e > 0 {
                        return self.protocol_close(
                            reason::PROTOCOL_ERROR,
                            "DISCONNECT raised a session expiry of 0",
                        );
                    }
                    let e = e.min(self.shared.cfg.max_session_expiry);
                    let mut s = self.slot.lock();
                    s.expiry = e;
                    self.slot.sync_flags(&s);
                }
                tracing::info!(peer = %self.peer, client = %self.client_id, "client disconnected");
                Flow::Close(if with_will { End::Abnormal } else { End::Clean })
            }
            Inbound::Connect(_) => self.protocol_close(reason::PROTOCOL_ERROR, "second CONNECT"),
            Inbound::Unexpected(name) => self.protocol_close(reason::PROTOCOL_ERROR, name),
        }
    }

    fn finished(&mut self, d: Option<Delivery>) {
        if let Some(d) = d {
            if d.durable {
                self.shared.submit(vec![Op::DeliveryDone {
                    client: self.client_id.clone(),
                    msg_id: d.msg.id,
                }]);
            }
        }
    }

    fn on_publish(&mut self, p: PublishIn) -> Flow {
        self.take_token();
        // Topic aliases (MQTT 5 3.3.2.3.4): an alias with a topic sets it, an alias alone
        // uses it.
        let topic: Arc<str> = match (p.alias, p.topic.is_empty()) {
            (Some(0), _) => {
                return self.protocol_close(reason::TOPIC_ALIAS_INVALID, "topic alias 0")
            }
            (Some(a), _) if a > self.shared.cfg.topic_alias_max => {
                return self
                    .protocol_close(reason::TOPIC_ALIAS_INVALID, "topic alias above maximum")
            }
            (Some(a), true) => match self.in_aliases.get(&a) {
                Some(t) => t.clone(),
                None => return self.protocol_close(reason::PROTOCOL_ERROR, "unknown topic alias"),
            },
            (Some(a), false) => {
                let t: Arc<str> = Arc::from(p.topic.as_str());
                self.in_aliases.insert(a, t.clone());
                t
            }
            (None, _) => Arc::from(p.topic.as_str()),
        };
        if !valid_topic_name(&topic) || p.sub_ids_present {
            bump(&self.shared.metrics.invalid_topics);
            tracing::warn!(peer = %self.peer, client = %self.client_id, topic = %topic.escape_debug(), "closed: invalid topic name");
            self.close_with = Some(reason::TOPIC_NAME_INVALID);
            return Flow::Close(End::Abnormal);
        }
        if p.qos > 0 && p.pkid == 0 {
            return self.protocol_close(reason::PROTOCOL_ERROR, "QoS 1/2 PUBLISH with packet id 0");
        }
        if p.qos > 0 && self.proto == Proto::V5 {
            let in_flight = self.pending_qos1 + self.slot.lock().inbound_qos2.len();
            if in_flight >= usize::from(self.shared.cfg.receive_max) {
                bump(&self.shared.metrics.receive_max_exceeded);
                return self.protocol_close(
                    reason::RECEIVE_MAXIMUM_EXCEEDED,
                    "more unacknowledged QoS 1/2 messages than the receive maximum",
                );
            }
        }
        bump(&self.shared.metrics.messages_in);

        if !self.shared.cfg.auth.0.publish(&self.id, &topic) {
            bump(&self.shared.metrics.acl_denied_publish);
            self.denials += 1;
            // Every denial is counted; the log names the first few per connection and then
            // every thousandth, so a misconfigured 50 Hz monitor cannot flood the log.
            if self.denials <= 5 || self.denials.is_multiple_of(1000) {
                tracing::warn!(peer = %self.peer, client = %self.client_id, user = self.id.username.as_deref().unwrap_or(""), topic = %topic, denials = self.denials, "publish denied by ACL");
            }
            // MQTT 5: the acknowledgement carries 0x87. MQTT 3.1.1 has no way to say no: the
            // message is acknowledged and dropped, as Mosquitto does.
            let code = if self.proto == Proto::V5 {
                reason::NOT_AUTHORIZED
            } else {
                0
            };
            match p.qos {
                1 => self.enqueue(
                    Vec::new(),
                    false,
                    Then::Send(Outbound::PubAck {
                        pkid: p.pkid,
                        reason: code,
                    }),
                ),
                2 => {
                    if self.proto == Proto::V4 {
                        // The 3.1.1 client will send PUBREL; remember the id so it completes.
                        self.slot.lock().inbound_qos2.insert(p.pkid);
                    }
                    self.enqueue(
                        Vec::new(),
                        false,
                        Then::Send(Outbound::PubRec {
                            pkid: p.pkid,
                            reason: code,
                        }),
                    )
                }
                _ => {}
            }
            return Flow::Continue;
        }

        if p.qos == 2 {
            // Exactly once: a PUBLISH whose id is still held (sent again with DUP, or after a
            // reconnect) is acknowledged again but not delivered again.
            let fresh = self.slot.lock().inbound_qos2.insert(p.pkid);
            if !fresh {
                self.enqueue(
                    Vec::new(),
                    false,
                    Then::Send(Outbound::PubRec {
                        pkid: p.pkid,
                        reason: 0,
                    }),
                );
                return Flow::Continue;
            }
        }
        let (qos, pkid) = (p.qos, p.pkid);
        let msg = Message {
            topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            client_id: self.client_id.clone(),
            props: p.props.map(Arc::new),
            expires_at_ms: p
                .expiry_interval
                .map(|e| self.now.wall_ms + i64::from(e) * 1000),
            id: 0,
            hold: None,
        };
        let mut ops = Vec::new();
        let plan = match self.shared.plan(msg, &mut ops, true) {
            Ok(plan) => plan,
            Err(why) => return self.refuse_no_room(qos, pkid, why),
        };
        let ack = match p.qos {
            0 => None,
            1 => Some(Outbound::PubAck {
                pkid: p.pkid,
                reason: 0,
            }),
            _ => {
                if self.slot.is_persistent() {
                    ops.push(Op::InboundAdd {
                        client: self.client_id.clone(),
                        pkid: p.pkid,
                    });
                }
                Some(Outbound::PubRec {
                    pkid: p.pkid,
                    reason: 0,
                })
            }
        };
        self.enqueue(ops, p.qos == 1, Then::Dispatch(plan, ack));
        Flow::Continue
    }

    /// A QoS 1/2 PUBLISH that some subscriber's session has no room for, in memory or on
    /// disk: refused before anything is acknowledged, so the client still owns it.
    fn refuse_no_room(&mut self, qos: u8, pkid: u16, why: NoRoom) -> Flow {
        if qos == 2 {
            // The flow ends here: the client will not send PUBREL for a refused PUBREC.
            self.slot.lock().inbound_qos2.remove(&pkid);
        }
        let code = match why {
            NoRoom::Full(full) => {
                bump(&self.shared.metrics.refused_quota);
                tracing::warn!(peer = %self.peer, client = %self.client_id, subscriber = %full, "publish refused: a subscriber's queue is full in memory and on disk");
                reason::QUOTA_EXCEEDED
            }
            NoRoom::StoreFailing => {
                self.count_store_refusal(
                    "a persistent session needs it kept and the broker store cannot write",
                );
                reason::IMPLEMENTATION_SPECIFIC
            }
        };
        if self.proto == Proto::V4 {
            // MQTT 3.1.1 has no negative acknowledgement; closing unacknowledged is the only
            // refusal it understands (the client sends the message again when it reconnects).
            bump(&self.shared.metrics.protocol_errors);
            return Flow::Close(End::Abnormal);
        }
        let ack = if qos == 1 {
            Outbound::PubAck { pkid, reason: code }
        } else {
            Outbound::PubRec { pkid, reason: code }
        };
        self.enqueue(Vec::new(), false, Then::Send(ack));
        Flow::Continue
    }

    /// Counts a publish refused because the broker store cannot write; the first few and
    /// then every thousandth are logged.
    fn count_store_refusal(&self, why: &str) {
        let n = self
            .shared
            .metrics
            .refused_store_failing
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n < 5 || n.is_multiple_of(1000) {
            tracing::warn!(peer = %self.peer, client = %self.client_id, refused = n + 1, "publish refused: {why}");
        }
    }

    /// The refusal of a publish whose batch failed to commit: MQTT 5 answers 0x83 in its
    /// place in the acknowledgement order; 3.1.1 closes the connection (`must_drop`).
    fn refuse_unwritten(&mut self, ack: Outbound, qos1: bool) {
        self.count_store_refusal("the broker store failed to write it for a persistent session");
        let ack = match ack {
            Outbound::PubAck { pkid, .. } => Outbound::PubAck {
                pkid,
                reason: reason::IMPLEMENTATION_SPECIFIC,
            },
            Outbound::PubRec { pkid, .. } => {
                // The QoS 2 flow ends here: the client sends no PUBREL for a refused PUBREC.
                self.slot.lock().inbound_qos2.remove(&pkid);
                Outbound::PubRec {
                    pkid,
                    reason: reason::IMPLEMENTATION_SPECIFIC,
                }
            }
            other => other,
        };
        if self.proto == Proto::V4 {
            if qos1 {
                self.pending_qos1 -= 1;
            }
            bump(&self.shared.metrics.protocol_errors);
            self.refused_v4 = true;
            return;
        }
        self.ack_in_order(ack, qos1);
    }

    fn on_subscribe(&mut self, pkid: u16, filters: Vec<codec::SubReq>) -> Flow {
        let mut results = Vec::with_capacity(filters.len());
        let mut ops = Vec::new();
        let mut retained = Vec::new();
        for req in filters {
            let (share, f) = match split_share(&req.filter) {
                Some((s, f)) if valid_filter(f) => (s, f),
                _ => {
                    tracing::info!(client = %self.client_id, filter = %req.filter, "subscription refused: invalid filter");
                    results.push(SubResult::Refused(reason::TOPIC_FILTER_INVALID));
                    continue;
                }
            };
            if share.is_some() && req.opts.no_local {
                return self
                    .protocol_close(reason::PROTOCOL_ERROR, "no-local on a shared subscription");
            }
            let check = match self.shared.cfg.auth.0.subscribe(&self.id, f) {
                SubAccess::Refused => {
                    bump(&self.shared.metrics.acl_denied_subscribe);
                    tracing::warn!(peer = %self.peer, client = %self.client_id, user = self.id.username.as_deref().unwrap_or(""), filter = %req.filter, "subscribe denied by ACL");
                    results.push(SubResult::Refused(reason::NOT_AUTHORIZED));
                    continue;
                }
                SubAccess::Granted => None,
                SubAccess::CheckEach => Some(self.id.clone()),
            };
            let opts = codec::SubOpts {
                qos: req.opts.qos.min(2),
                ..req.opts
            };
            let new = self
                .slot
                .lock()
                .subs
                .insert(req.filter.clone(), opts)
                .is_none();
            if let Ok(mut r) = self.shared.router.write() {
                r.subscribe(Entry {
                    filter: f.to_string(),
                    share: share.map(str::to_string),
                    opts,
                    target: Target::Session(self.slot.clone()),
                    check: check.clone(),
                });
            }
            if self.slot.is_persistent() {
                ops.push(Op::SubAdd {
                    client: self.client_id.clone(),
                    filter: req.filter.clone(),
                    opts,
                });
            }
            // Retained messages: not for shared subscriptions (MQTT 5 4.8.2), and per the
            // subscription's retain handling.
            if share.is_none() && (opts.retain_handling == 0 || (opts.retain_handling == 1 && new))
            {
                let now = self.now.wall_ms;
                if let Ok(r) = self.shared.retained.read() {
                    for m in r.values() {
                        let readable = || {
                            check
                                .as_ref()
                                .is_none_or(|id| self.shared.cfg.auth.0.read(id, &m.topic))
                        };
                        if crate::topic_matches(&m.topic, f)
                            && m.expires_at_ms.is_none_or(|e| e > now)
                            && readable()
                        {
                            retained.push(Delivery {
                                msg: m.clone(),
                                qos: m.qos.min(opts.qos),
                                retain: true,
                                sub_ids: opts.sub_id.into_iter().collect(),
                                durable: false,
                                spilled: None,
                            });
                        }
                    }
                }
            }
            results.push(SubResult::Granted(opts.qos));
        }
        self.enqueue(
            ops,
            false,
            Then::SubAck(Outbound::SubAck { pkid, results }, retained),
        );
        Flow::Continue
    }

    /// Runs `then` now if nothing is waiting and no write is needed; otherwise queues it
    /// behind earlier work so acknowledgements leave in order.
    fn enqueue(&mut self, ops: Vec<Op>, qos1: bool, then: Then) {
        let ticket = self.shared.submit(ops);
        if qos1 {
            self.pending_qos1 += 1;
        }
        self.pending.push_back(Pending { ticket, qos1, then });
    }

    /// Carries out queued work whose writes are committed (`committed`: the store's
    /// watermark; `u64::MAX` without a store). Acknowledgements go into `out`; the messages to
    /// route come back, in order, and the driver must hand them over (`Shared::dispatch`)
    /// before it writes `out`, so that an acknowledged message has reached its subscribers.
    /// Then [`Machine::pull`] (a client may subscribe to what it publishes).
    #[must_use]
    pub fn release(&mut self, committed: u64, now: Now) -> Vec<Plan> {
        self.now = now;
        let done = committed;
        let mut plans = Vec::new();
        while self.pending.front().is_some_and(|p| p.ticket <= done) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            match p.then {
                Then::Dispatch(plan, Some(a))
                    if plan.targets.locals.is_empty() && self.shared.ticket_failed(p.ticket) =>
                {
                    // The store could not write what a persistent session needed kept:
                    // refused now, before any acknowledgement, as a publish arriving while
                    // the store fails is (`refuse_no_room`). Not routed either, so no
                    // subscriber has a message its publisher was told was refused. Retained
                    // state already changed in memory when the message was planned.
                    drop(plan);
                    self.refuse_unwritten(a, p.qos1);
                    if self.refused_v4 {
                        break;
                    }
                }
                Then::Dispatch(mut plan, ack) => {
                    if let Some(a) = ack {
                        // Held until every confirming local subscriber has kept the message
                        // (and at least until the driver has dispatched the plan).
                        let (hold, weak) = AckHold::new(self.held_wake.clone());
                        plan.hold = Some(hold);
                        self.held.push_back(Held {
                            hold: Some(weak),
                            qos1: p.qos1,
                            ack: a,
                        });
                    } else if p.qos1 {
                        self.pending_qos1 -= 1;
                    }
                    plans.push(plan);
                }
                Then::Send(o) => self.ack_in_order(o, p.qos1),
                Then::SubAck(o, retained) => {
                    self.ack_in_order(o, p.qos1);
                    let mut s = self.slot.lock();
                    for d in retained {
                        // Retained copies queue like any delivery; a full queue drops them
                        // under the same policy and counter.
                        if s.offer(
                            d,
                            self.shared.cfg.max_queued_messages,
                            self.shared.cfg.max_queued_bytes,
                            false,
                        )
                        .is_err()
                        {
                            bump(&self.shared.metrics.messages_dropped);
                            bump(&self.shared.metrics.dropped_queue_full);
                        }
                    }
                }
            }
        }
        plans
    }

    /// Sends what the session's queue holds, as far as the client's receive maximum allows,
    /// reading spilled payloads back from the store as they come to the front.
    pub fn pull(&mut self) {
        while self.send_queued() {
            self.load_spilled();
        }
    }

    /// Reads back the payloads of spilled deliveries among the next few to send. A payload
    /// that cannot be read (a failed disk) loses its message, counted and logged.
    fn load_spilled(&mut self) {
        let n = usize::from(self.shared.cfg.max_inflight).max(64);
        let ids = self.slot.lock().spilled_ahead(n);
        if ids.is_empty() {
            return;
        }
        // The session's lock is not held while the store is read: publishers offering to
        // this session are not held up by its disk reads.
        let found = match self.shared.persist.as_ref().map(|p| p.payloads(&ids)) {
            Some(Ok(found)) => found,
            Some(Err(e)) => {
                tracing::error!(client = %self.client_id, error = %e, "spilled messages cannot be read back from the broker store");
                Default::default()
            }
            None => Default::default(),
        };
        let lost = self.slot.lock().unspill(&ids, found);
        if lost.is_empty() {
            return;
        }
        tracing::error!(client = %self.client_id, lost = lost.len(), "spilled messages missing from the broker store; not delivered");
        let mut ops = Vec::new();
        for d in lost {
            bump(&self.shared.metrics.spill_read_failures);
            bump(&self.shared.metrics.messages_dropped);
            ops.push(Op::DeliveryDone {
                client: self.client_id.clone(),
                msg_id: d.msg.id,
            });
        }
        self.shared.submit(ops);
    }

    /// Sends queued deliveries whose payload is in memory. True when it stopped at one whose
    /// payload is still on disk (with room to send it).
    fn send_queued(&mut self) -> bool {
        let slot = self.slot.clone();
        let mut s = slot.lock();
        // A connection being taken over leaves the queue to its successor.
        if s.link.as_ref().map(|l| l.owner) != Some(self.owner) {
            return false;
        }
        let budget = usize::from(self.client_receive_max.min(self.shared.cfg.max_inflight));
        let mut at_spilled = false;
        let now = self.now.wall_ms;
        let mut ops = Vec::new();
        while let Some(front) = s.queue.front() {
            if front.qos > 0 && s.inflight.len() >= budget {
                break;
            }
            if front.spilled.is_some() {
                at_spilled = true;
                break;
            }
            let Some(d) = s.pop() else { break };
            let expired = d.msg.expires_at_ms.is_some_and(|e| e <= now);
            let pkid = if d.qos > 0 { s.alloc_pkid() } else { 0 };
            let sent = !expired && self.write_publish(&d, pkid, false, now);
            if !sent {
                if expired {
                    bump(&self.shared.metrics.dropped_expired);
                }
                bump(&self.shared.metrics.messages_dropped);
                if d.durable {
                    ops.push(Op::DeliveryDone {
                        client: self.client_id.clone(),
                        msg_id: d.msg.id,
                    });
                }
                continue;
            }
            if d.qos > 0 {
                if d.durable {
                    ops.push(Op::DeliverySent {
                        client: self.client_id.clone(),
                        msg_id: d.msg.id,
                        pkid,
                    });
                }
                s.push_flight(pkid, d);
            }
        }
        drop(s);
        self.shared.submit(ops);
        at_spilled
    }

    /// After a reconnect: unacknowledged PUBLISHes again with DUP, PUBRELs again.
    fn resend_inflight(&mut self) {
        let slot = self.slot.clone();
        let s = slot.lock();
        let now = self.now.wall_ms;
        for f in &s.inflight {
            match f.state {
                Flight::Ack | Flight::Rec => {
                    self.write_publish(&f.d, f.pkid, true, now);
                }
                Flight::Comp => {
                    let _ = codec::encode(self.proto, Outbound::PubRel(f.pkid), &mut self.out);
                }
            }
        }
    }

    /// Encodes one delivery. False if it is larger than the client accepts (MQTT 5
    /// 3.1.2.11.4: such a message is dropped as if delivered).
    fn write_publish(&mut self, d: &Delivery, pkid: u16, dup: bool, now: i64) -> bool {
        let (alias, send_topic) = self.out_alias(&d.msg.topic);
        let p = PublishOut {
            topic: &d.msg.topic,
            payload: &d.msg.payload,
            qos: d.qos,
            retain: d.retain,
            dup,
            pkid,
            alias,
            send_topic,
            props: d.msg.props.as_deref(),
            expiry_remaining: d
                .msg
                .expires_at_ms
                .map(|e| u32::try_from(((e - now).max(1000) + 999) / 1000).unwrap_or(u32::MAX)),
            sub_ids: &d.sub_ids,
        };
        if let Some(max) = self.client_max_packet {
            if codec::publish_len(self.proto, &p) > max as usize {
                bump(&self.shared.metrics.dropped_too_large_for_client);
                return false;
            }
        }
        if self.closed {
            return false;
        }
        codec::encode_publish(self.proto, &p, &mut self.out);
        bump(&self.shared.metrics.messages_out);
        true
    }

    /// Outbound topic aliases: the first `client_alias_max` distinct topics get one; the first
    /// use sends topic and alias, later ones the alias alone.
    fn out_alias(&mut self, topic: &Arc<str>) -> (Option<u16>, bool) {
        if self.proto == Proto::V4 || self.client_alias_max == 0 {
            return (None, true);
        }
        if let Some(a) = self.out_aliases.get(topic) {
            return (Some(*a), false);
        }
        if self.out_aliases.len() < usize::from(self.client_alias_max) {
            let a = self.out_aliases.len() as u16 + 1;
            self.out_aliases.insert(topic.clone(), a);
            return (Some(a), true);
        }
        (None, true)
    }

    fn protocol_close(&mut self, code: u8, what: &str) -> Flow {
        bump(&self.shared.metrics.protocol_errors);
        tracing::warn!(peer = %self.peer, client = %self.client_id, what, "closed: protocol error");
        self.close_with = Some(code);
        Flow::Close(End::Abnormal)
    }

    /// Writes the DISCONNECT decided while reading, after the acknowledgements already due.
    pub fn send_close_reason(&mut self) {
        if let Some(code) = self.close_with.take() {
            self.push(Outbound::Disconnect(code));
            self.closed = true;
        }
    }

    fn push(&mut self, p: Outbound) {
        // After a 3.1.1 refusal nothing more is sent: a later acknowledgement would leave
        // ahead of the refused one's (3.1.1 4.6 keeps them in order).
        if self.closed || self.refused_v4 {
            return;
        }
        if let Err(e) = codec::encode(self.proto, p, &mut self.out) {
            tracing::error!(peer = %self.peer, error = %e, "encode failed; packet not sent");
        }
    }
}

/// Builds a machine on a broker with no sockets and no store, for the fuzzer and the tests.
pub(crate) mod harness {
    use super::*;
    use crate::router::Target;
    use crate::session::Link;
    use crate::BrokerConfig;
    use rumqttc::v5::mqttbytes::v5::Packet;
    use tokio::sync::{mpsc, Notify};

    pub struct Rig {
        pub shared: Arc<Shared>,
        pub m: Machine,
        pub now: Now,
        /// Everything the broker routes, as an in-process subscriber on `#` sees it.
        pub local: mpsc::Receiver<Message>,
    }

    pub fn rig(cfg: BrokerConfig, keep_alive_s: u16) -> Rig {
        let shared = Arc::new(Shared::new(cfg, None, None));
        let client: Arc<str> = Arc::from("c1");
        let slot = Arc::new(SessionSlot::new(client.clone(), 0));
        {
            let mut s = slot.lock();
            s.link = Some(Link {
                owner: 1,
                wake: Arc::new(Notify::new()),
                kill: Arc::new(Notify::new()),
            });
            s.offline_since = None;
            slot.sync_flags(&s);
        }
        shared.sessions().insert(client.clone(), slot.clone());
        let (tx, local) = mpsc::channel(1 << 16);
        if let Ok(mut r) = shared.router.write() {
            r.subscribe(Entry {
                filter: "#".into(),
                share: None,
                opts: crate::router::LOCAL_OPTS,
                target: Target::Local(0, tx, false),
                check: None,
            });
        }
        let now = Now {
            mono: Instant::now(),
            wall_ms: 1_700_000_000_000,
        };
        let m = Machine::new(
            shared.clone(),
            Setup {
                peer: SocketAddr::from(([127, 0, 0, 1], 1)),
                proto: Proto::V5,
                id: Arc::new(Identity {
                    username: Some("c1".into()),
                    client_id: "c1".into(),
                    anonymous: true,
                }),
                client_id: client,
                owner: 1,
                slot,
                client_alias_max: 0,
                client_receive_max: 65_535,
                client_max_packet: None,
                keep_alive_s,
                expiry_was_zero: true,
            },
            now,
        );
        Rig {
            shared,
            m,
            now,
            local,
        }
    }

    /// Polls a future once. Dispatch to the rig's roomy in-process subscriber never waits;
    /// `None` would mean it did.
    pub fn poll_once<F: std::future::Future>(f: F) -> Option<F::Output> {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }

    impl Rig {
        /// The time `secs` after the rig's start.
        pub fn at(&self, secs: f64) -> Now {
            Now {
                mono: self.now.mono + Duration::from_secs_f64(secs),
                wall_ms: self.now.wall_ms + (secs * 1000.0) as i64,
            }
        }

        /// Feeds one client packet at `now`, routes what is released, and returns the flow
        /// and the packets the broker sent.
        pub fn feed(&mut self, p: &Packet, now: Now) -> (Flow, Vec<Packet>) {
            let mut buf = BytesMut::new();
            if p.write(&mut buf, None).is_err() {
                return (Flow::Continue, Vec::new());
            }
            let flow = self.m.receive(&mut buf, now);
            self.route(now);
            self.m.send_close_reason();
            (flow, self.sent())
        }

        pub fn route(&mut self, now: Now) {
            for plan in self.m.release(u64::MAX, now) {
                assert!(
                    poll_once(self.shared.dispatch(plan)).is_some(),
                    "dispatch waited"
                );
            }
            self.m.release_held();
            self.m.pull();
        }

        /// The packets in the machine's output, decoded by rumqttc (a reader nobody here
        /// wrote), which is then cleared.
        pub fn sent(&mut self) -> Vec<Packet> {
            let out = self.m.out();
            let mut got = Vec::new();
            while !out.is_empty() {
                match Packet::read(out, None) {
                    Ok(p) => got.push(p),
                    Err(e) => panic!("the broker wrote an unreadable packet: {e:?}"),
                }
            }
            got
        }

        /// Messages routed to the in-process subscriber since the last call.
        pub fn routed(&mut self) -> Vec<Message> {
            let mut v = Vec::new();
            while let Ok(m) = self.local.try_recv() {
                v.push(m);
            }
            v
        }
    }
}

/// Arbitrary sequences of client packets against one machine, with the invariants checked
/// after each: nothing panics, the broker never reuses a packet id still in flight towards
/// the client, and no QoS 2 message is routed twice for one packet id before its PUBREL.
pub(crate) mod fuzz {
    use super::harness::{rig, Rig};
    use super::Flow;
    use crate::BrokerConfig;
    use rumqttc::v5::mqttbytes::v5::{
        Filter, Packet, PingReq, PubAck, PubComp, PubRec, PubRel, Publish, Subscribe, Unsubscribe,
    };
    use rumqttc::v5::mqttbytes::QoS;
    use std::collections::{HashMap, HashSet};

    const TOPICS: [&str; 4] = ["a/b", "a/c", "x", "a/b/c"];
    const FILTERS: [&str; 4] = ["a/#", "a/+", "x", "#"];

    fn qos(b: u8) -> QoS {
        match b % 3 {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        }
    }

    /// Each step takes up to four bytes: what to send and its fields.
    pub fn run_sequence(data: &[u8]) {
        let mut r: Rig = rig(
            BrokerConfig {
                receive_max: 8,
                max_inflight: 4,
                max_queued_messages: 16,
                ..BrokerConfig::default()
            },
            30,
        );
        let mut t = 0.0;
        // Packet ids the broker has in flight towards the client.
        let mut out_flight: HashSet<u16> = HashSet::new();
        // Inbound QoS 2 ids held (PUBLISH seen, no PUBREL yet), and how many times each was
        // routed meanwhile.
        let mut held: HashMap<u16, usize> = HashMap::new();
        for step in data.chunks(4) {
            let b = |i: usize| step.get(i).copied().unwrap_or(0);
            let pkid = u16::from(b(2) % 6) + 1;
            let packet = match b(0) % 10 {
                0 | 1 => {
                    let mut p = Publish::new(TOPICS[usize::from(b(3) % 4)], qos(b(1)), "p", None);
                    p.pkid = if p.qos == QoS::AtMostOnce { 0 } else { pkid };
                    p.dup = b(1) & 8 != 0;
                    p.retain = b(1) & 16 != 0;
                    Packet::Publish(p)
                }
                2 => Packet::PubRel(PubRel::new(pkid, None)),
                3 => Packet::PubAck(PubAck::new(pkid, None)),
                4 => Packet::PubRec(PubRec::new(pkid, None)),
                5 => Packet::PubComp(PubComp::new(pkid, None)),
                6 => {
                    let mut s = Subscribe::new(
                        Filter::new(FILTERS[usize::from(b(3) % 4)], qos(b(1))),
                        None,
                    );
                    s.pkid = pkid;
                    Packet::Subscribe(s)
                }
                7 => {
                    let mut u = Unsubscribe::new(FILTERS[usize::from(b(3) % 4)], None);
                    u.pkid = pkid;
                    Packet::Unsubscribe(u)
                }
                8 => {
                    t += f64::from(b(1)) / 4.0;
                    if let Some(Flow::Close(_)) = r.m.on_timeout(r.at(t)) {
                        return;
                    }
                    continue;
                }
                _ => Packet::PingReq(PingReq),
            };
            let (flow, sent) = r.feed(&packet, r.at(t));
            // The client's acknowledgements end the broker's flights.
            match &packet {
                Packet::PubAck(a) => {
                    out_flight.remove(&a.pkid);
                }
                Packet::PubComp(c) => {
                    out_flight.remove(&c.pkid);
                }
                Packet::PubRel(rel) => {
                    held.remove(&rel.pkid);
                }
                _ => {}
            }
            for p in &sent {
                if let Packet::Publish(p) = p {
                    if p.qos != QoS::AtMostOnce && !p.dup {
                        assert!(
                            out_flight.insert(p.pkid),
                            "packet id {} reused while in flight",
                            p.pkid
                        );
                    }
                }
            }
            let routed_q2 = r.routed().iter().filter(|m| m.qos == 2).count();
            if let Packet::Publish(p) = &packet {
                if p.qos == QoS::ExactlyOnce {
                    let n = held.entry(p.pkid).or_insert(0);
                    *n += routed_q2;
                    assert!(*n <= 1, "QoS 2 packet id {} routed {n} times", p.pkid);
                    continue;
                }
            }
            assert_eq!(routed_q2, 0, "a QoS 2 message routed by {packet:?}");
            if let Flow::Close(_) = flow {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::harness::rig;
    use super::*;
    use crate::BrokerConfig;
    use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, Packet, PingReq, PubRel, Publish};
    use rumqttc::v5::mqttbytes::QoS;

    fn publish(qos: QoS, pkid: u16) -> Packet {
        let mut p = Publish::new("t/x", qos, "v", None);
        p.pkid = pkid;
        Packet::Publish(p)
    }

    #[test]
    fn keep_alive_runs_out_at_one_and_a_half_times_its_value_in_simulated_time() {
        let mut r = rig(BrokerConfig::default(), 10);
        assert!(r.m.on_timeout(r.at(14.9)).is_none());
        // Any packet restarts the count.
        let (_, sent) = r.feed(&Packet::PingReq(PingReq), r.at(10.0));
        assert!(matches!(sent[..], [Packet::PingResp(_)]));
        assert_eq!(r.m.timeout(), Some(r.at(25.0).mono));
        assert!(r.m.on_timeout(r.at(24.9)).is_none());
        assert!(matches!(
            r.m.on_timeout(r.at(25.0)),
            Some(Flow::Close(End::Abnormal))
        ));
        match &r.sent()[..] {
            [Packet::Disconnect(d)] => {
                assert_eq!(d.reason_code, DisconnectReasonCode::KeepAliveTimeout)
            }
            other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
        }
        assert_eq!(
            r.shared
                .metrics
                .keepalive_timeouts
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn no_keep_alive_means_no_timeout() {
        let r = rig(BrokerConfig::default(), 0);
        assert_eq!(r.m.timeout(), None);
    }

    /// A subscriber that confirms what it keeps (the station's ingest): the PUBACK of a
    /// QoS 1 message, and the PUBREC of a QoS 2 one, leave only once it has dropped the
    /// message's hold, in the order the publishes came; QoS 0 is never held.
    #[test]
    fn acknowledgements_wait_for_a_confirming_subscriber_and_leave_in_order() {
        let mut r = rig(BrokerConfig::default(), 30);
        let (tx, mut kept) = tokio::sync::mpsc::channel(64);
        if let Ok(mut router) = r.shared.router.write() {
            router.subscribe(Entry {
                filter: "#".into(),
                share: None,
                opts: crate::router::LOCAL_OPTS,
                target: Target::Local(7, tx, true),
                check: None,
            });
        }
        let (_, sent) = r.feed(&publish(QoS::AtLeastOnce, 1), r.at(1.0));
        assert!(sent.is_empty(), "{sent:?}");
        let (_, sent) = r.feed(&publish(QoS::ExactlyOnce, 2), r.at(1.1));
        assert!(sent.is_empty(), "{sent:?}");
        let (_, sent) = r.feed(&publish(QoS::AtMostOnce, 0), r.at(1.2));
        assert!(sent.is_empty(), "{sent:?}");
        assert!(r.m.holding());
        let first = kept.try_recv().unwrap();
        let second = kept.try_recv().unwrap();
        let third = kept.try_recv().unwrap();
        assert!(first.hold.is_some() && second.hold.is_some() && third.hold.is_none());
        // The non-confirming subscriber got them at once, with nothing to hold.
        assert!(r.routed().iter().all(|m| m.hold.is_none()));
        // The second is kept first: nothing may overtake the first's PUBACK.
        drop(second);
        r.m.release_held();
        assert!(r.sent().is_empty());
        drop(first);
        r.m.release_held();
        match &r.sent()[..] {
            [Packet::PubAck(a), Packet::PubRec(b)] => {
                assert_eq!((a.pkid, b.pkid), (1, 2));
            }
            other => panic!("expected PUBACK 1 then PUBREC 2, got {other:?}"),
        }
        assert!(!r.m.holding());
        // A PINGRESP is not an acknowledgement of a publish and is never held back.
        let (_, sent) = r.feed(&publish(QoS::AtLeastOnce, 3), r.at(2.0));
        assert!(sent.is_empty());
        let (_, sent) = r.feed(&Packet::PingReq(PingReq), r.at(2.1));
        assert!(matches!(sent[..], [Packet::PingResp(_)]));
        drop(kept.try_recv().unwrap());
        r.m.release_held();
        assert!(matches!(&r.sent()[..], [Packet::PubAck(a)] if a.pkid == 3));
    }

    #[test]
    fn a_qos2_message_is_routed_once_however_often_it_comes_before_its_pubrel() {
        let mut r = rig(BrokerConfig::default(), 30);
        for dup in [false, true, true] {
            let Packet::Publish(mut p) = publish(QoS::ExactlyOnce, 7) else {
                unreachable!()
            };
            p.dup = dup;
            let (_, sent) = r.feed(&Packet::Publish(p), r.at(1.0));
            assert!(matches!(&sent[..], [Packet::PubRec(rec)] if rec.pkid == 7));
        }
        assert_eq!(r.routed().len(), 1);
        let (_, sent) = r.feed(&Packet::PubRel(PubRel::new(7, None)), r.at(2.0));
        assert!(matches!(&sent[..], [Packet::PubComp(c)] if c.pkid == 7));
        // The id is free again: a new message with it is a new message.
        r.feed(&publish(QoS::ExactlyOnce, 7), r.at(3.0));
        assert_eq!(r.routed().len(), 1);
    }

    #[test]
    fn exceeding_the_receive_maximum_acknowledges_what_came_before_then_disconnects_0x93() {
        let mut r = rig(
            BrokerConfig {
                receive_max: 2,
                ..BrokerConfig::default()
            },
            30,
        );
        r.feed(&publish(QoS::ExactlyOnce, 1), r.at(0.0));
        r.feed(&publish(QoS::ExactlyOnce, 2), r.at(0.0));
        let (flow, sent) = r.feed(&publish(QoS::ExactlyOnce, 3), r.at(0.0));
        assert!(matches!(flow, Flow::Close(End::Abnormal)));
        match &sent[..] {
            [Packet::Disconnect(d)] => {
                assert_eq!(d.reason_code, DisconnectReasonCode::ReceiveMaximumExceeded)
            }
            other => panic!("expected DISCONNECT 0x93, got {other:?}"),
        }
        assert!(r.m.closed());
    }

    #[test]
    fn the_message_rate_limit_pauses_reading_until_the_budget_refills() {
        let mut r = rig(
            BrokerConfig {
                max_msg_rate: 10,
                ..BrokerConfig::default()
            },
            30,
        );
        for _ in 0..15 {
            r.feed(&publish(QoS::AtMostOnce, 0), r.at(1.0));
        }
        // 10 in the budget, 5 over it: half a second at 10 per second.
        assert_eq!(r.m.throttle(), Some(r.at(1.5).mono));
        assert_eq!(r.routed().len(), 15, "nothing dropped");
    }

    #[test]
    fn packet_sequences_keep_their_invariants() {
        // The fuzzer's target, on fixed and pseudo-random sequences, so that every
        // `make test` runs it even where cargo-fuzz is not installed.
        super::fuzz::run_sequence(&[0, 2, 1, 0, 0, 2, 1, 0, 2, 0, 1, 0, 6, 2, 1, 3]);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..300 {
            let mut data = Vec::with_capacity(256);
            for _ in 0..256 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                data.push((x >> 24) as u8);
            }
            super::fuzz::run_sequence(&data);
        }
    }
}
