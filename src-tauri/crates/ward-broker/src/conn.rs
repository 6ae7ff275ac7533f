//! One task per client connection: CONNECT handshake, then a loop over socket reads,
//! outbound deliveries, keep-alive, takeover and shutdown.
//!
//! Every way a connection can go wrong ends here with a log line naming the peer and the
//! reason, a counter, and (for MQTT 5) a DISCONNECT carrying the reason code. Nothing a client
//! sends can panic the broker: decoding is total and every error is a value.

use crate::codec::{
    self, ConnAckCode, ConnectInfo, DecodeError, DisconnectReason, Inbound, Outbound, Proto,
    SubResult, Will,
};
use crate::router::{valid_filter, valid_topic_name, Sink, Subscription, ToConn};
use crate::{bump, Message, Shared};
use bytes::BytesMut;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let active = shared.metrics.connections_active.load(Ordering::Relaxed);
                    if active as usize >= shared.cfg.max_connections {
                        bump(&shared.metrics.connections_refused);
                        tracing::warn!(%peer, active, "connection refused: connection limit reached");
                        continue;
                    }
                    // Small packets (vitals, acks) should leave now, not after Nagle's delay.
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(run(shared.clone(), stream, peer, stop.clone()));
                }
                Err(e) => {
                    // Typically EMFILE; back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn run(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    bump(&shared.metrics.connections_total);
    shared
        .metrics
        .connections_active
        .fetch_add(1, Ordering::Relaxed);
    serve(&shared, stream, peer, stop).await;
    shared
        .metrics
        .connections_active
        .fetch_sub(1, Ordering::Relaxed);
}

/// How a connection ended, which decides whether its will is published.
enum End {
    /// DISCONNECT without "publish my will", or server shutdown.
    Clean,
    /// Anything else: network loss, protocol error, keep-alive timeout, takeover.
    Abnormal,
}

struct Conn<'a> {
    shared: &'a Shared,
    peer: SocketAddr,
    proto: Proto,
    client_id: Arc<str>,
    owner: u64,
    tx: mpsc::Sender<ToConn>,
    wr: OwnedWriteHalf,
    out: BytesMut,
    inbound_qos2: HashSet<u16>,
    next_pkid: u16,
}

async fn serve(
    shared: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let (mut rd, wr) = stream.into_split();
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let max = shared.cfg.max_packet_size;

    let connect = tokio::time::timeout(
        shared.cfg.connect_timeout,
        read_connect(&mut rd, &mut buf, max),
    )
    .await;
    let info = match connect {
        Err(_) => {
            bump(&shared.metrics.connect_timeouts);
            tracing::info!(%peer, timeout = ?shared.cfg.connect_timeout, "closed: no CONNECT in time");
            return;
        }
        Ok(Err(ConnectFail::Closed)) => return,
        Ok(Err(ConnectFail::Decode(e))) => {
            count_decode_error(shared, &e);
            tracing::warn!(%peer, reason = %e, "closed before CONNECT completed");
            if let DecodeError::UnsupportedProtocol(_) = e {
                // MQTT 3.1.1 3.1.2.2: answer an unsupported level with return code 0x01.
                let mut out = BytesMut::new();
                let refuse = Outbound::ConnAck {
                    code: ConnAckCode::BadProtocol,
                    assigned_client_id: None,
                    max_packet_size: 0,
                };
                if codec::encode(Proto::V4, refuse, &mut out).is_ok() {
                    let mut wr = wr;
                    let _ = wr.write_all(&out).await;
                }
            }
            return;
        }
        Ok(Ok(info)) => info,
    };

    let owner = shared.next_owner();
    let (tx, mut rx) = mpsc::channel(shared.cfg.outbound_queue.max(1));
    let mut conn = Conn {
        shared,
        peer,
        proto: info.proto,
        client_id: Arc::from(""),
        owner,
        tx,
        wr,
        out: BytesMut::with_capacity(8 * 1024),
        inbound_qos2: HashSet::new(),
        next_pkid: 0,
    };
    let Some(kill) = conn.accept_connect(&info).await else {
        return;
    };
    let will = info.will;

    // A client may send packets right behind CONNECT without waiting for CONNACK; whatever
    // arrived in the same read is already in `buf` and is handled now, not after a next read
    // that may never come if the client then closes.
    let mut early = match conn.drain_packets(&mut buf).await {
        Flow::Continue => None,
        Flow::Close(end) => Some(end),
    };
    if conn.flush().await.is_err() && early.is_none() {
        early = Some(End::Abnormal);
    }

    let keep_alive =
        (info.keep_alive > 0).then(|| Duration::from_millis(info.keep_alive as u64 * 1500));
    let far = Duration::from_secs(365 * 24 * 3600);
    let mut deadline = Instant::now() + keep_alive.unwrap_or(far);

    let end = if let Some(end) = early {
        end
    } else {
        loop {
            tokio::select! {
                read = rd.read_buf(&mut buf) => {
                    match read {
                        Ok(0) => break End::Abnormal,
                        Err(e) => {
                            tracing::debug!(peer = %conn.peer, error = %e, "read failed");
                            break End::Abnormal;
                        }
                        Ok(_) => {}
                    }
                    deadline = Instant::now() + keep_alive.unwrap_or(far);
                    match conn.drain_packets(&mut buf).await {
                        Flow::Continue => {}
                        Flow::Close(end) => {
                            let _ = conn.flush().await;
                            break end;
                        }
                    }
                    if conn.flush().await.is_err() {
                        break End::Abnormal;
                    }
                }
                Some(first) = rx.recv() => {
                    conn.deliver(first);
                    // Batch whatever else is queued into one write.
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Ok(m) => conn.deliver(m),
                            Err(_) => break,
                        }
                    }
                    if conn.flush().await.is_err() {
                        break End::Abnormal;
                    }
                }
                _ = tokio::time::sleep_until(deadline), if keep_alive.is_some() => {
                    bump(&shared.metrics.keepalive_timeouts);
                    tracing::info!(peer = %conn.peer, client = %conn.client_id, "closed: keep-alive expired");
                    conn.send_disconnect(DisconnectReason::KeepAliveTimeout).await;
                    break End::Abnormal;
                }
                _ = kill.notified() => {
                    tracing::info!(peer = %conn.peer, client = %conn.client_id, "closed: client id taken over by a new connection");
                    conn.send_disconnect(DisconnectReason::SessionTakenOver).await;
                    break End::Abnormal;
                }
                _ = stop.changed() => {
                    conn.send_disconnect(DisconnectReason::ServerShuttingDown).await;
                    break End::Clean;
                }
            }
        }
    };

    conn.cleanup();
    if let (End::Abnormal, Some(w)) = (end, will) {
        tracing::info!(client = %conn.client_id, topic = %w.topic, "publishing last will");
        conn.route_will(w).await;
    }
}

enum ConnectFail {
    Closed,
    Decode(DecodeError),
}

async fn read_connect(
    rd: &mut OwnedReadHalf,
    buf: &mut BytesMut,
    max: usize,
) -> Result<ConnectInfo, ConnectFail> {
    loop {
        match codec::decode(None, buf, max) {
            Ok(Some(Inbound::Connect(info))) => return Ok(info),
            Ok(Some(other)) => {
                return Err(ConnectFail::Decode(DecodeError::Malformed(format!(
                    "expected CONNECT, got {other:?}"
                ))))
            }
            Ok(None) => {}
            Err(e) => return Err(ConnectFail::Decode(e)),
        }
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return Err(ConnectFail::Closed),
            Ok(_) => {}
        }
    }
}

fn count_decode_error(shared: &Shared, e: &DecodeError) {
    let m = &shared.metrics;
    match e {
        DecodeError::TooLarge { .. } => bump(&m.packets_too_large),
        DecodeError::TopicNotUtf8 => bump(&m.invalid_topics),
        DecodeError::Malformed(_) | DecodeError::NotConnect(_) => bump(&m.malformed_packets),
        DecodeError::UnsupportedProtocol(_) => bump(&m.protocol_errors),
    }
}

enum Flow {
    Continue,
    Close(End),
}

impl Conn<'_> {
    /// Validates the CONNECT, takes over a duplicate client id, and sends CONNACK. Returns the
    /// takeover signal for this connection, or `None` if the connection was refused.
    async fn accept_connect(&mut self, info: &ConnectInfo) -> Option<Arc<Notify>> {
        let mut assigned = None;
        let client_id = if info.client_id.is_empty() {
            if info.proto == Proto::V4 && !info.clean {
                // 3.1.1 3.1.3.1: an empty id needs clean session.
                self.refuse(
                    ConnAckCode::BadClientId,
                    "empty client id without clean session",
                )
                .await;
                return None;
            }
            let id = format!("ww-auto-{}", self.owner);
            assigned = Some(id.clone());
            id
        } else if info.client_id.len() > 256 {
            self.refuse(ConnAckCode::BadClientId, "client id longer than 256 bytes")
                .await;
            return None;
        } else {
            info.client_id.clone()
        };
        self.client_id = Arc::from(client_id.as_str());

        let kill = Arc::new(Notify::new());
        let previous = self
            .shared
            .clients
            .lock()
            .map(|mut clients| clients.insert(client_id, (self.owner, kill.clone())))
            .map_err(|_| ());
        let Ok(previous) = previous else {
            self.refuse(ConnAckCode::NotAuthorized, "client table lock poisoned")
                .await;
            return None;
        };
        if let Some((_, old)) = previous {
            old.notify_one();
        }
        let ack = Outbound::ConnAck {
            code: ConnAckCode::Accepted,
            assigned_client_id: if self.proto == Proto::V5 {
                assigned
            } else {
                None
            },
            max_packet_size: u32::try_from(self.shared.cfg.max_packet_size).unwrap_or(u32::MAX),
        };
        self.push(ack);
        if self.flush().await.is_err() {
            self.cleanup();
            return None;
        }
        tracing::info!(peer = %self.peer, client = %self.client_id, proto = self.proto.label(), "client connected");
        Some(kill)
    }

    async fn refuse(&mut self, code: ConnAckCode, why: &str) {
        bump(&self.shared.metrics.protocol_errors);
        tracing::warn!(peer = %self.peer, reason = why, "CONNECT refused");
        self.push(Outbound::ConnAck {
            code,
            assigned_client_id: None,
            max_packet_size: 0,
        });
        let _ = self.flush().await;
    }

    async fn drain_packets(&mut self, buf: &mut BytesMut) -> Flow {
        loop {
            match codec::decode(Some(self.proto), buf, self.shared.cfg.max_packet_size) {
                Ok(None) => return Flow::Continue,
                Ok(Some(packet)) => {
                    if let Flow::Close(end) = self.handle(packet).await {
                        return Flow::Close(end);
                    }
                }
                Err(e) => {
                    count_decode_error(self.shared, &e);
                    tracing::warn!(peer = %self.peer, client = %self.client_id, reason = %e, "closed: bad packet");
                    let reason = match e {
                        DecodeError::TooLarge { .. } => DisconnectReason::PacketTooLarge,
                        DecodeError::TopicNotUtf8 => DisconnectReason::TopicNameInvalid,
                        _ => DisconnectReason::MalformedPacket,
                    };
                    self.push(Outbound::Disconnect(reason));
                    return Flow::Close(End::Abnormal);
                }
            }
        }
    }

    async fn handle(&mut self, packet: Inbound) -> Flow {
        match packet {
            Inbound::Publish {
                topic,
                payload,
                qos,
                pkid,
                topic_alias,
            } => {
                if topic_alias {
                    return self.protocol_close(
                        DisconnectReason::TopicAliasInvalid,
                        "topic alias used; maximum is 0",
                    );
                }
                if !valid_topic_name(&topic) {
                    bump(&self.shared.metrics.invalid_topics);
                    tracing::warn!(peer = %self.peer, client = %self.client_id, topic = %topic.escape_debug(), "closed: invalid topic name");
                    self.push(Outbound::Disconnect(DisconnectReason::TopicNameInvalid));
                    return Flow::Close(End::Abnormal);
                }
                bump(&self.shared.metrics.messages_in);
                let msg = Message {
                    topic: Arc::from(topic),
                    payload,
                    qos,

                    client_id: self.client_id.clone(),
                };
                match qos {
                    0 => self.shared.route(msg).await,
                    1 => {
                        self.shared.route(msg).await;
                        self.push(Outbound::PubAck(pkid));
                    }
                    _ => {
                        // Exactly once: a retransmission (same packet id before PUBREL) is
                        // acknowledged again but not delivered again.
                        if self.inbound_qos2.insert(pkid) {
                            self.shared.route(msg).await;
                        }
                        self.push(Outbound::PubRec(pkid));
                    }
                }
                Flow::Continue
            }
            Inbound::PubRel(pkid) => {
                self.inbound_qos2.remove(&pkid);
                self.push(Outbound::PubComp(pkid));
                Flow::Continue
            }
            // Outbound QoS 1 is fire-and-acknowledge until sessions land (issue 3).
            Inbound::Ack => Flow::Continue,
            Inbound::Subscribe { pkid, filters } => {
                let mut results = Vec::with_capacity(filters.len());
                for (filter, qos) in filters {
                    if !valid_filter(&filter) || filter.starts_with("$share/") {
                        tracing::info!(client = %self.client_id, filter = %filter, "subscription refused");
                        results.push(SubResult::Refused);
                        continue;
                    }
                    // Outbound QoS 2 needs the persistent session state of issue 3.
                    let granted = qos.min(1);
                    match self.shared.router.write() {
                        Ok(mut r) => r.subscribe(Subscription {
                            owner: self.owner,
                            filter,
                            qos: granted,
                            sink: Sink::Conn(self.tx.clone()),
                        }),
                        Err(_) => {
                            results.push(SubResult::Refused);
                            continue;
                        }
                    }
                    results.push(SubResult::Granted(granted));
                }
                self.push(Outbound::SubAck { pkid, results });
                Flow::Continue
            }
            Inbound::Unsubscribe { pkid, filters } => {
                let count = filters.len();
                if let Ok(mut r) = self.shared.router.write() {
                    for f in &filters {
                        r.unsubscribe(self.owner, f);
                    }
                }
                self.push(Outbound::UnsubAck { pkid, count });
                Flow::Continue
            }
            Inbound::PingReq => {
                self.push(Outbound::PingResp);
                Flow::Continue
            }
            Inbound::Disconnect { with_will } => {
                tracing::info!(peer = %self.peer, client = %self.client_id, "client disconnected");
                Flow::Close(if with_will { End::Abnormal } else { End::Clean })
            }
            Inbound::Connect(_) => {
                self.protocol_close(DisconnectReason::ProtocolError, "second CONNECT")
            }
            Inbound::Unexpected(name) => self.protocol_close(DisconnectReason::ProtocolError, name),
        }
    }

    fn protocol_close(&mut self, reason: DisconnectReason, what: &str) -> Flow {
        bump(&self.shared.metrics.protocol_errors);
        tracing::warn!(peer = %self.peer, client = %self.client_id, what, "closed: protocol error");
        self.push(Outbound::Disconnect(reason));
        Flow::Close(End::Abnormal)
    }

    fn deliver(&mut self, m: ToConn) {
        let ToConn::Deliver(msg, qos) = m;
        let pkid = if qos > 0 {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            self.next_pkid
        } else {
            0
        };
        self.push(Outbound::Publish {
            topic: msg.topic.to_string(),
            payload: msg.payload,
            qos,
            pkid,
        });
    }

    fn push(&mut self, p: Outbound) {
        if let Err(e) = codec::encode(self.proto, p, &mut self.out) {
            tracing::error!(peer = %self.peer, error = %e, "encode failed; packet not sent");
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.wr.write_all(&self.out).await;
        self.out.clear();
        r
    }

    async fn send_disconnect(&mut self, reason: DisconnectReason) {
        self.push(Outbound::Disconnect(reason));
        let _ = self.flush().await;
    }

    fn cleanup(&mut self) {
        if let Ok(mut r) = self.shared.router.write() {
            r.remove_owner(self.owner);
        }
        if let Ok(mut clients) = self.shared.clients.lock() {
            if clients
                .get(&*self.client_id)
                .is_some_and(|(o, _)| *o == self.owner)
            {
                clients.remove(&*self.client_id);
            }
        }
    }

    async fn route_will(&self, w: Will) {
        if !valid_topic_name(&w.topic) {
            bump(&self.shared.metrics.invalid_topics);
            return;
        }
        self.shared
            .route(Message {
                topic: Arc::from(w.topic),
                payload: w.payload,
                qos: w.qos,
                client_id: self.client_id.clone(),
            })
            .await;
    }
}
