//! One task per client connection: (TLS handshake,) CONNECT and authentication, session
//! attach, then a loop over socket reads, session queue wake-ups, store commits, keep-alive,
//! takeover and shutdown.
//!
//! Every way a connection can go wrong ends here with a log line naming the peer and the
//! reason, a counter, and (for MQTT 5) a DISCONNECT carrying the reason code. Nothing a client
//! sends can panic the broker: decoding is total and every error is a value.

use crate::auth::Identity;
use crate::codec::{
    self, reason, ConnAckInfo, ConnectInfo, DecodeError, Inbound, Outbound, Proto, Will,
};
use crate::machine::{count_decode_error, End, Flow, Machine, Now, Setup};
use crate::persist::Op;
use crate::router::valid_topic_name;
use crate::session::{Link, SessionSlot};
use crate::{bump, now_ms, Message, Shared};
use bytes::BytesMut;
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

/// Releases the machine's work whose store writes are committed, hands the released messages
/// to their subscribers (before anything is written: an acknowledgement leaves only once its
/// message is routed), then lets the machine send what its session's queue holds.
async fn step(shared: &Shared, m: &mut Machine, committed: &Option<watch::Receiver<u64>>) {
    let done = committed.as_ref().map_or(u64::MAX, |c| *c.borrow());
    for plan in m.release(done, Now::read()) {
        shared.dispatch(plan).await;
    }
    // Dispatched plans dropped their holds: acknowledgements no local subscriber keeps
    // back leave in this same write.
    m.release_held();
    m.pull();
}

/// Writes what the machine has to send.
async fn write_out<W: AsyncWrite + Unpin>(wr: &mut W, m: &mut Machine) -> std::io::Result<()> {
    let out = m.out();
    if out.is_empty() {
        return Ok(());
    }
    let r = wr.write_all(out).await;
    out.clear();
    r?;
    wr.flush().await
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

    if present {
        shared.recheck_subscriptions(&slot, &id);
    }
    let server_keep_alive = match (proto, shared.cfg.max_keep_alive) {
        (Proto::V5, max) if max > 0 && (info.keep_alive == 0 || info.keep_alive > max) => Some(max),
        _ => None,
    };
    let keep_alive_s = server_keep_alive.unwrap_or(info.keep_alive);
    let mut m = Machine::new(
        shared.clone(),
        Setup {
            peer,
            proto,
            id,
            client_id: client_id.clone(),
            owner,
            slot,
            client_alias_max: info.topic_alias_max,
            client_receive_max: info.receive_max,
            client_max_packet: info.max_packet_size,
            keep_alive_s,
            expiry_was_zero: expiry == 0,
        },
        Now::read(),
    );
    m.start(ConnAckInfo {
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
    });
    tracing::info!(%peer, client = %client_id, proto = proto.label(), user = info.username.as_deref().unwrap_or(""), session_present = present, "client connected");
    let will = info.will;
    let mut committed = shared.persist.as_ref().map(|p| p.committed());

    // A client may send packets right behind CONNECT without waiting for CONNACK; whatever
    // arrived in the same read is already in `buf` and is handled now, not after a next read
    // that may never come if the client then closes.
    let mut early = match m.receive(&mut buf, Now::read()) {
        Flow::Continue => None,
        Flow::Close(end) => Some(end),
    };
    step(shared, &mut m, &committed).await;
    m.send_close_reason();
    if (write_out(&mut wr, &mut m).await.is_err() || m.must_drop()) && early.is_none() {
        early = Some(End::Abnormal);
    }

    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let end = if let Some(end) = early {
        end
    } else {
        // The wake-up, takeover and stop futures live across iterations: made anew each time
        // round the loop they register and deregister with their Notify on every packet,
        // which the profile at ward load showed as a few per cent of the broker's CPU.
        let mut woken = std::pin::pin!(wake.notified());
        let mut killed = std::pin::pin!(kill.notified());
        let mut stopped = std::pin::pin!(stop.changed());
        let held_wake = m.held_wake();
        let mut kept = std::pin::pin!(held_wake.notified());
        loop {
            let waiting = m.waiting() && committed.is_some();
            let deadline = m.timeout();
            tokio::select! {
                read = rd.read_buf(&mut buf) => {
                    match read {
                        Ok(0) => break End::Abnormal,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "read failed");
                            break End::Abnormal;
                        }
                        Ok(_) => {}
                    }
                    let flow = m.receive(&mut buf, Now::read());
                    step(shared, &mut m, &committed).await;
                    m.send_close_reason();
                    if let Flow::Close(end) = flow {
                        let _ = write_out(&mut wr, &mut m).await;
                        break end;
                    }
                    if write_out(&mut wr, &mut m).await.is_err() || m.must_drop() {
                        break End::Abnormal;
                    }
                    if let Some(resume) = m.throttle() {
                        tokio::time::sleep_until(resume).await;
                    }
                }
                _ = &mut woken => {
                    woken.set(wake.notified());
                    // One turn of the scheduler first: the publishers whose messages are
                    // already on their way into this session's queue get there, and one
                    // write then carries them all (fewer syscalls and wake-ups per message
                    // for a subscriber of many publishers).
                    tokio::task::yield_now().await;
                    m.wake(Now::read());
                    if write_out(&mut wr, &mut m).await.is_err() {
                        break End::Abnormal;
                    }
                }
                _ = &mut kept, if m.holding() => {
                    kept.set(held_wake.notified());
                    m.release_held();
                    if write_out(&mut wr, &mut m).await.is_err() {
                        break End::Abnormal;
                    }
                }
                _ = commit_changed(&mut committed), if waiting => {
                    step(shared, &mut m, &committed).await;
                    if write_out(&mut wr, &mut m).await.is_err() || m.must_drop() {
                        break End::Abnormal;
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    if let Some(Flow::Close(end)) = m.on_timeout(Now::read()) {
                        let _ = write_out(&mut wr, &mut m).await;
                        break end;
                    }
                }
                _ = &mut killed => {
                    tracing::info!(%peer, client = %client_id, "closed: client id taken over by a new connection");
                    m.disconnect(reason::SESSION_TAKEN_OVER);
                    let _ = write_out(&mut wr, &mut m).await;
                    break End::Abnormal;
                }
                _ = &mut stopped => {
                    m.disconnect(reason::SERVER_SHUTTING_DOWN);
                    let _ = write_out(&mut wr, &mut m).await;
                    break End::Clean;
                }
            }
        }
    };

    // Work already committed is finished (its acknowledgement may not reach the client, which
    // then resends with DUP: QoS 1 may repeat, QoS 2 is caught by the inbound state).
    step(shared, &mut m, &committed).await;
    let _ = write_out(&mut wr, &mut m).await;
    let spoke = m.closed() && !*stop.borrow();
    let slot = m.slot().clone();
    let detached = detach(shared, &slot, owner);
    if let (End::Abnormal, Some(w)) = (end, will) {
        if let Some((expiry, generation)) = detached {
            schedule_will(shared, slot.clone(), w, expiry, generation).await;
        } else {
            // Taken over: the old connection's will goes now (MQTT 5 3.1.4: a new connection
            // for the same client id ends this one's network connection).
            publish_will(shared, &slot.client_id, w).await;
        }
    }
    if spoke {
        linger(&mut wr, &mut rd).await;
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
            hold: None,
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
