//! One task per client connection: (TLS handshake,) CONNECT and authentication, session
//! attach, then a loop over socket reads, session queue wake-ups, store commits, keep-alive,
//! takeover and shutdown.
//!
//! Every way a connection can go wrong ends here with a log line naming the peer and the
//! reason, a counter, and (for MQTT 5) a DISCONNECT carrying the reason code. Nothing a client
//! sends can panic the broker: decoding is total and every error is a value.
//!
//! Acknowledgements that promise durability wait for the store: a QoS 1/2 PUBLISH that some
//! persistent session will receive is acknowledged (and delivered) only once its rows are
//! committed. Such work waits in `pending`, in arrival order, while the connection keeps
//! reading; one commit then releases many messages.

use crate::auth::{Identity, SubAccess};
use crate::codec::{
    self, reason, ConnAckInfo, ConnectInfo, DecodeError, Inbound, Outbound, Proto, PublishIn,
    PublishOut, SubResult, Will,
};
use crate::persist::Op;
use crate::router::{split_share, valid_filter, valid_topic_name, Entry, Target};
use crate::session::{Delivery, Flight, Link, SessionSlot};
use crate::{bump, now_ms, Message, NoRoom, Plan, Shared};
use bytes::BytesMut;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// What a listener speaks: MQTT straight on TCP, or within TLS, WebSockets or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    fn tls(self) -> bool {
        matches!(self, Self::Tls | Self::Wss)
    }

    fn websocket(self) -> bool {
        matches!(self, Self::Ws | Self::Wss)
    }
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    transport: Transport,
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
                    tokio::spawn(run(shared.clone(), stream, peer, stop.clone(), transport));
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
    transport: Transport,
) {
    bump(&shared.metrics.connections_total);
    shared
        .metrics
        .connections_active
        .fetch_add(1, Ordering::Relaxed);
    shared.connections_changed();
    let started = Instant::now();
    if transport.tls() {
        match shared.tls.as_ref().map(|t| t.acceptor()) {
            Some(acceptor) => {
                // The handshake shares the CONNECT time limit: a client that opens a socket
                // and says nothing is dropped either way.
                match tokio::time::timeout(shared.cfg.connect_timeout, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(s)) => {
                        let name = crate::tls::peer_name(s.get_ref().1.peer_certificates());
                        if transport.websocket() {
                            crate::ws::serve(&shared, s, peer, stop, name, started).await;
                        } else {
                            serve(&shared, s, peer, stop, name, started).await;
                        }
                    }
                    Ok(Err(e)) => {
                        bump(&shared.metrics.tls_handshake_failures);
                        tracing::warn!(%peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        bump(&shared.metrics.tls_handshake_timeouts);
                        tracing::info!(%peer, "closed: TLS handshake not completed in time");
                    }
                }
            }
            None => tracing::error!(%peer, "TLS listener without TLS state"),
        }
    } else if transport.websocket() {
        crate::ws::serve(&shared, stream, peer, stop, None, started).await;
    } else {
        serve(&shared, stream, peer, stop, None, started).await;
    }
    shared
        .metrics
        .connections_active
        .fetch_sub(1, Ordering::Relaxed);
    shared.connections_changed();
}

/// How a connection ended, which decides whether its will is published.
enum End {
    /// DISCONNECT without "publish my will", or server shutdown.
    Clean,
    /// Anything else: network loss, protocol error, keep-alive timeout, takeover.
    Abnormal,
}

enum Then {
    Dispatch(Plan, Option<Outbound>),
    Send(Outbound),
    SubAck(Outbound, Vec<Delivery>),
}

struct Pending {
    ticket: u64,
    qos1: bool,
    then: Then,
}

struct Conn<'a, W> {
    shared: &'a Shared,
    peer: SocketAddr,
    proto: Proto,
    id: Arc<Identity>,
    client_id: Arc<str>,
    owner: u64,
    slot: Arc<SessionSlot>,
    wr: W,
    out: BytesMut,
    pending: VecDeque<Pending>,
    pending_qos1: usize,
    committed: Option<watch::Receiver<u64>>,
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
}

/// Resolves when the store's committed watermark moves; never, without a store.
async fn commit_changed(c: &mut Option<watch::Receiver<u64>>) {
    if let Some(c) = c {
        if c.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

enum ConnectFail {
    Closed,
    Decode(DecodeError),
}

async fn read_connect<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Box<ConnectInfo>, ConnectFail> {
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

async fn refuse<W: AsyncWrite + Unpin>(
    wr: &mut W,
    proto: Proto,
    peer: SocketAddr,
    code: u8,
    why: String,
) {
    tracing::warn!(%peer, reason = %why, code, "CONNECT refused");
    send_raw(
        wr,
        proto,
        Outbound::ConnAck(ConnAckInfo {
            code,
            reason_string: (proto == Proto::V5).then_some(why),
            ..ConnAckInfo::default()
        }),
    )
    .await;
}

async fn send_raw<W: AsyncWrite + Unpin>(wr: &mut W, proto: Proto, p: Outbound) {
    let mut out = BytesMut::new();
    if codec::encode(proto, p, &mut out).is_ok() {
        let _ = wr.write_all(&out).await;
        let _ = wr.flush().await;
    }
}

pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
    shared: &Arc<Shared>,
    stream: S,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
    cert_name: Option<String>,
    started: Instant,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let max = shared.cfg.max_packet_size;
    let left = shared.cfg.connect_timeout.saturating_sub(started.elapsed());
    let info = match tokio::time::timeout(left, read_connect(&mut rd, &mut buf, max)).await {
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
                let refuse = ConnAckInfo {
                    code: reason::UNSUPPORTED_PROTOCOL_VERSION,
                    ..ConnAckInfo::default()
                };
                send_raw(&mut wr, Proto::V4, Outbound::ConnAck(refuse)).await;
            }
            return;
        }
        Ok(Ok(info)) => info,
    };
    let proto = info.proto;

    // Client id: empty gets one assigned (3.1.1 only with clean session).
    let mut assigned = None;
    let client_id = if info.client_id.is_empty() {
        if proto == Proto::V4 && !info.clean {
            bump(&shared.metrics.protocol_errors);
            refuse(
                &mut wr,
                proto,
                peer,
                reason::CLIENT_ID_NOT_VALID,
                "empty client id without clean session".into(),
            )
            .await;
            return;
        }
        let id = format!("ww-auto-{}", shared.next_owner());
        assigned = Some(id.clone());
        id
    } else if info.client_id.len() > 256 {
        bump(&shared.metrics.protocol_errors);
        refuse(
            &mut wr,
            proto,
            peer,
            reason::CLIENT_ID_NOT_VALID,
            "client id longer than 256 bytes".into(),
        )
        .await;
        return;
    } else {
        info.client_id.clone()
    };
    if info.auth_method.is_some() {
        bump(&shared.metrics.auth_failures);
        refuse(
            &mut wr,
            proto,
            peer,
            reason::BAD_AUTH_METHOD,
            "enhanced authentication (AUTH) is not offered".into(),
        )
        .await;
        return;
    }

    // Authentication is slow on purpose (argon2): off the async threads.
    let hook = shared.cfg.auth.0.clone();
    let (cid, user, pass, cn) = (
        client_id.clone(),
        info.username.clone(),
        info.password.clone(),
        cert_name.clone(),
    );
    let decided = tokio::task::spawn_blocking(move || {
        hook.connect(&cid, user.as_deref(), pass.as_deref(), cn.as_deref())
    })
    .await
    .unwrap_or(Err(reason::SERVER_UNAVAILABLE));
    let id = match decided {
        Ok(id) => id,
        Err(code) => {
            bump(&shared.metrics.auth_failures);
            refuse(
                &mut wr,
                proto,
                peer,
                code,
                format!(
                    "authentication failed for client {client_id:?} user {:?}",
                    info.username.as_deref().unwrap_or("")
                ),
            )
            .await;
            return;
        }
    };
    if let Some(w) = &info.will {
        if !valid_topic_name(&w.topic) || !shared.cfg.auth.0.publish(&id, &w.topic) {
            bump(&shared.metrics.acl_denied_publish);
            refuse(
                &mut wr,
                proto,
                peer,
                reason::NOT_AUTHORIZED,
                format!("will topic {:?} not allowed", w.topic),
            )
            .await;
            return;
        }
    }

    // Session expiry: 3.1.1 persistent sessions get the configured maximum.
    let cap = shared.cfg.max_session_expiry;
    let asked = match (proto, info.session_expiry) {
        (Proto::V5, Some(e)) => e,
        _ if info.clean => 0,
        _ => cap,
    };
    let expiry = if asked == u32::MAX && cap == u32::MAX {
        u32::MAX
    } else {
        asked.min(cap)
    };

    let owner = shared.next_owner();
    let wake = Arc::new(Notify::new());
    let kill = Arc::new(Notify::new());
    let client_id: Arc<str> = Arc::from(client_id.as_str());
    let id = Arc::new(id);
    let (slot, present) = attach(
        shared,
        &client_id,
        &id,
        info.clean,
        expiry,
        Link {
            owner,
            wake: wake.clone(),
            kill: kill.clone(),
        },
    )
    .await;

    let server_keep_alive = match (proto, shared.cfg.max_keep_alive) {
        (Proto::V5, max) if max > 0 && (info.keep_alive == 0 || info.keep_alive > max) => Some(max),
        _ => None,
    };
    let keep_alive_s = server_keep_alive.unwrap_or(info.keep_alive);
    let mut conn = Conn {
        shared,
        peer,
        proto,
        id,
        client_id: client_id.clone(),
        owner,
        slot,
        wr,
        out: BytesMut::with_capacity(8 * 1024),
        pending: VecDeque::new(),
        pending_qos1: 0,
        committed: shared.persist.as_ref().map(|p| p.committed()),
        in_aliases: HashMap::new(),
        out_aliases: HashMap::new(),
        client_alias_max: info.topic_alias_max,
        client_receive_max: info.receive_max,
        client_max_packet: info.max_packet_size,
        tokens: f64::from(shared.cfg.max_msg_rate),
        refilled: Instant::now(),
        denials: 0,
        expiry_was_zero: expiry == 0,
        close_with: None,
        closed: false,
    };
    conn.push(Outbound::ConnAck(ConnAckInfo {
        session_present: present,
        code: 0,
        assigned_client_id: if proto == Proto::V5 { assigned } else { None },
        max_packet_size: u32::try_from(shared.cfg.max_packet_size).unwrap_or(u32::MAX),
        receive_max: shared.cfg.receive_max,
        topic_alias_max: shared.cfg.topic_alias_max,
        server_keep_alive,
        session_expiry: (proto == Proto::V5 && info.session_expiry != Some(expiry))
            .then_some(expiry),
        reason_string: None,
    }));
    tracing::info!(%peer, client = %client_id, proto = proto.label(), user = conn.id.username.as_deref().unwrap_or(""), session_present = present, "client connected");
    conn.resend_inflight();
    conn.pull();
    let will = info.will;

    // A client may send packets right behind CONNECT without waiting for CONNACK; whatever
    // arrived in the same read is already in `buf` and is handled now, not after a next read
    // that may never come if the client then closes.
    let mut early = match conn.drain_packets(&mut buf).await {
        Flow::Continue => None,
        Flow::Close(end) => Some(end),
    };
    conn.release().await;
    conn.send_close_reason();
    if conn.flush().await.is_err() && early.is_none() {
        early = Some(End::Abnormal);
    }

    let keep_alive =
        (keep_alive_s > 0).then(|| Duration::from_millis(u64::from(keep_alive_s) * 1500));
    let far = Duration::from_secs(365 * 24 * 3600);
    let mut deadline = Instant::now() + keep_alive.unwrap_or(far);
    let mut committed = conn.committed.clone();

    let end = if let Some(end) = early {
        end
    } else {
        loop {
            let waiting = !conn.pending.is_empty() && committed.is_some();
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
                    let flow = conn.drain_packets(&mut buf).await;
                    conn.release().await;
                    conn.send_close_reason();
                    if let Flow::Close(end) = flow {
                        let _ = conn.flush().await;
                        break end;
                    }
                    if conn.flush().await.is_err() {
                        break End::Abnormal;
                    }
                    conn.throttle().await;
                }
                _ = wake.notified() => {
                    conn.pull();
                    if conn.flush().await.is_err() {
                        break End::Abnormal;
                    }
                }
                _ = commit_changed(&mut committed), if waiting => {
                    conn.release().await;
                    if conn.flush().await.is_err() {
                        break End::Abnormal;
                    }
                }
                _ = tokio::time::sleep_until(deadline), if keep_alive.is_some() => {
                    bump(&shared.metrics.keepalive_timeouts);
                    tracing::info!(peer = %conn.peer, client = %conn.client_id, "closed: keep-alive expired");
                    conn.send_disconnect(reason::KEEP_ALIVE_TIMEOUT).await;
                    break End::Abnormal;
                }
                _ = kill.notified() => {
                    tracing::info!(peer = %conn.peer, client = %conn.client_id, "closed: client id taken over by a new connection");
                    conn.send_disconnect(reason::SESSION_TAKEN_OVER).await;
                    break End::Abnormal;
                }
                _ = stop.changed() => {
                    conn.send_disconnect(reason::SERVER_SHUTTING_DOWN).await;
                    break End::Clean;
                }
            }
        }
    };

    // Work already committed is finished (its acknowledgement may not reach the client, which
    // then resends with DUP: QoS 1 may repeat, QoS 2 is caught by the inbound state).
    conn.release().await;
    let _ = conn.flush().await;
    let spoke = conn.closed && !*stop.borrow();
    let detached = detach(shared, &conn.slot, owner);
    if let (End::Abnormal, Some(w)) = (end, will) {
        if let Some((expiry, generation)) = detached {
            schedule_will(shared, conn.slot.clone(), w, expiry, generation).await;
        } else {
            // Taken over: the old connection's will goes now (MQTT 5 3.1.4: a new connection
            // for the same client id ends this one's network connection).
            publish_will(shared, &conn.slot.client_id, w).await;
        }
    }
    if spoke {
        linger(&mut conn.wr, &mut rd).await;
    }
}

/// Closes after a DISCONNECT so that the client reads it. Closing a socket whose receive
/// buffer still holds unread bytes (a client that kept sending: the usual case for Receive
/// Maximum exceeded or an oversized packet) makes the kernel send RST, and the client's
/// kernel then discards the DISCONNECT it had not yet read. So: send FIN, read and discard
/// until the client closes too, for at most a second.
async fn linger<W: AsyncWrite + Unpin, R: AsyncRead + Unpin>(wr: &mut W, rd: &mut R) {
    let _ = wr.shutdown().await;
    let mut sink = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Ok(n) = rd.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Finds or creates the client's session and attaches this connection to it, taking over any
/// connection that holds it. Returns the session and whether it was present.
async fn attach(
    shared: &Shared,
    client_id: &Arc<str>,
    id: &Identity,
    clean: bool,
    expiry: u32,
    link: Link,
) -> (Arc<SessionSlot>, bool) {
    let mut ops = Vec::new();
    let (slot, present, was_persistent) = {
        let mut map = shared.sessions();
        let existing = map.get(client_id).cloned();
        match existing {
            Some(slot) if !clean && !slot.lock().removed => {
                let p = slot.is_persistent();
                (slot, true, p)
            }
            other => {
                if let Some(old) = other {
                    shared.end_session(&old, &mut map);
                }
                let slot = Arc::new(SessionSlot::new(client_id.clone(), expiry));
                map.insert(client_id.clone(), slot.clone());
                (slot, false, false)
            }
        }
    };
    {
        let mut s = slot.lock();
        if let Some(old) = s.link.take() {
            old.kill.notify_one();
        }
        s.link = Some(link);
        s.generation += 1;
        s.offline_since = None;
        s.expiry = expiry;
        slot.sync_flags(&s);
    }
    if expiry > 0 {
        ops.push(Op::SessionUpsert {
            client: client_id.clone(),
            expiry,
            username: id.username.clone(),
            anonymous: id.anonymous,
        });
    } else if was_persistent {
        // Resumed with expiry 0: the session now ends with this connection, so a crash must
        // not bring it back.
        ops.push(Op::SessionDelete(client_id.clone()));
    }
    // CONNACK says "session present"; the session must be on disk before we say so.
    let ticket = shared.submit(ops);
    shared.wait(ticket).await;
    (slot, present)
}

/// Detaches a connection from its session. `None` if another connection took it over.
fn detach(shared: &Shared, slot: &Arc<SessionSlot>, owner: u64) -> Option<(u32, u64)> {
    let (expiry, generation) = {
        let mut s = slot.lock();
        if s.link.as_ref().map(|l| l.owner) != Some(owner) {
            return None;
        }
        s.link = None;
        s.offline_since = Some(Instant::now());
        slot.sync_flags(&s);
        (s.expiry, s.generation)
    };
    if expiry == 0 {
        let mut map = shared.sessions();
        shared.end_session(slot, &mut map);
    } else {
        shared.submit(vec![Op::SessionOffline {
            client: slot.client_id.clone(),
            at_ms: now_ms(),
        }]);
    }
    Some((expiry, generation))
}

async fn publish_will(shared: &Shared, client_id: &Arc<str>, w: Will) {
    tracing::info!(client = %client_id, topic = %w.topic, "publishing last will");
    bump(&shared.metrics.wills_published);
    shared
        .publish_internal(Message {
            topic: Arc::from(w.topic),
            payload: w.payload,
            qos: w.qos,
            retain: w.retain,
            client_id: client_id.clone(),
            props: w.props,
            expires_at_ms: w.expiry_interval.map(|e| now_ms() + i64::from(e) * 1000),
            id: 0,
        })
        .await;
}

/// MQTT 5 will delay: the will goes after min(will delay, session expiry) unless the client
/// reconnects to the session first.
async fn schedule_will(
    shared: &Arc<Shared>,
    slot: Arc<SessionSlot>,
    w: Will,
    expiry: u32,
    generation: u64,
) {
    let delay = w.delay.min(expiry);
    if delay == 0 {
        publish_will(shared, &slot.client_id, w).await;
        return;
    }
    // The will task needs the broker after this connection's task has ended.
    let shared = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(u64::from(delay))).await;
        let back = {
            let s = slot.lock();
            s.generation != generation || s.link.is_some()
        };
        if back {
            tracing::info!(client = %slot.client_id, "client reconnected within its will delay; will not published");
        } else {
            publish_will(&shared, &slot.client_id, w).await;
        }
    });
}

enum Flow {
    Continue,
    Close(End),
}

impl<W: AsyncWrite + Unpin> Conn<'_, W> {
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
                    self.close_with = Some(e.reason());
                    return Flow::Close(End::Abnormal);
                }
            }
        }
    }

    /// Per-client message rate: when over budget, stop reading until back under it.
    async fn throttle(&mut self) {
        let rate = f64::from(self.shared.cfg.max_msg_rate);
        if rate <= 0.0 || self.tokens >= 0.0 {
            return;
        }
        bump(&self.shared.metrics.rate_limited);
        let wait = Duration::from_secs_f64((-self.tokens / rate).min(10.0));
        tracing::debug!(client = %self.client_id, ?wait, "message rate over the limit; reading paused");
        tokio::time::sleep(wait).await;
    }

    fn take_token(&mut self) {
        let rate = f64::from(self.shared.cfg.max_msg_rate);
        if rate <= 0.0 {
            return;
        }
        let now = Instant::now();
        let add = now.duration_since(self.refilled).as_secs_f64() * rate;
        self.refilled = now;
        self.tokens = (self.tokens + add).min(rate) - 1.0;
    }

    async fn handle(&mut self, packet: Inbound) -> Flow {
        match packet {
            Inbound::Publish(p) => self.on_publish(p).await,
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

    async fn on_publish(&mut self, p: PublishIn) -> Flow {
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
            expires_at_ms: p.expiry_interval.map(|e| now_ms() + i64::from(e) * 1000),
            id: 0,
        };
        let mut ops = Vec::new();
        let plan = match self.shared.plan(msg, &mut ops, true) {
            Ok(plan) => plan,
            Err(NoRoom(full)) => return self.refuse_no_room(qos, pkid, &full),
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
    fn refuse_no_room(&mut self, qos: u8, pkid: u16, full: &str) -> Flow {
        bump(&self.shared.metrics.refused_quota);
        if qos == 2 {
            // The flow ends here: the client will not send PUBREL for a refused PUBREC.
            self.slot.lock().inbound_qos2.remove(&pkid);
        }
        tracing::warn!(peer = %self.peer, client = %self.client_id, subscriber = %full, "publish refused: a subscriber's queue is full in memory and on disk");
        if self.proto == Proto::V4 {
            // MQTT 3.1.1 has no negative acknowledgement; closing unacknowledged is the only
            // refusal it understands (the client sends the message again when it reconnects).
            bump(&self.shared.metrics.protocol_errors);
            return Flow::Close(End::Abnormal);
        }
        let code = reason::QUOTA_EXCEEDED;
        let ack = if qos == 1 {
            Outbound::PubAck { pkid, reason: code }
        } else {
            Outbound::PubRec { pkid, reason: code }
        };
        self.enqueue(Vec::new(), false, Then::Send(ack));
        Flow::Continue
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
                let now = now_ms();
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

    /// Carries out queued work whose writes are committed.
    async fn release(&mut self) {
        let done = self
            .committed
            .as_ref()
            .map(|c| *c.borrow())
            .unwrap_or(u64::MAX);
        while self.pending.front().is_some_and(|p| p.ticket <= done) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            if p.qos1 {
                self.pending_qos1 -= 1;
            }
            match p.then {
                Then::Dispatch(plan, ack) => {
                    self.shared.dispatch(plan).await;
                    if let Some(a) = ack {
                        self.push(a);
                    }
                }
                Then::Send(o) => self.push(o),
                Then::SubAck(o, retained) => {
                    self.push(o);
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
        // Our own deliveries (no-local aside, a client may subscribe to what it publishes).
        self.pull();
    }

    /// Sends what the session's queue holds, as far as the client's receive maximum allows,
    /// reading spilled payloads back from the store as they come to the front.
    fn pull(&mut self) {
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
        let lost = self.slot.lock().unspill(n, found);
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
        let now = now_ms();
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
        let now = now_ms();
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
    fn send_close_reason(&mut self) {
        if let Some(code) = self.close_with.take() {
            self.push(Outbound::Disconnect(code));
            self.closed = true;
        }
    }

    fn push(&mut self, p: Outbound) {
        if self.closed {
            return;
        }
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
        r?;
        self.wr.flush().await
    }

    async fn send_disconnect(&mut self, code: u8) {
        self.push(Outbound::Disconnect(code));
        self.closed = true;
        let _ = self.flush().await;
    }
}
