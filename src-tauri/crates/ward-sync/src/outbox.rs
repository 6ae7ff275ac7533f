//! Store-and-forward to the hospital core: the audit trail (alarm events, acknowledgements,
//! device and station events) published in order, at QoS 1, over MQTT 5 or 3.1.1, to any
//! broker or the nodes of a clustered one.
//!
//! The outbox is "audit events after the watermark" (`ward_store::audit`): nothing to copy,
//! nothing to lose. The worker publishes events in `seq` order with a small window in flight;
//! each PUBACK moves the watermark, which is written through the store writer, so after a
//! crash or an outage the worker starts again from the first event the core has not
//! confirmed. An event may then reach the core twice (its PUBACK was lost); it carries a
//! stable `event_id` (in the payload, and with MQTT 5 also a user property) for the core to
//! drop the copy. The same holds when the node in use fails and the worker moves to the next
//! endpoint: it starts from the watermark there.
//!
//! Each connection starts clean (MQTT clean start): rumqttc then forgets what it had in
//! flight, and the worker itself resends from the watermark, so the order on the wire is
//! always the order of the trail.
//!
//! Topic: `{upstream.topic_prefix}/station/{station.id}/events`.

use crate::client::prepared_when_ready;
use crate::link::{Incoming, Link, Setup};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use ward_alarm::AlarmCommand;
use ward_config::UpstreamConfig;
use ward_store::{wall_clock_ms as now_ms, RecordSink};
use ward_store::{Record, Store};

/// Events in flight at once: enough to keep a WAN link busy, small enough that a reconnect
/// resends little.
const WINDOW: usize = 32;
/// Events in flight and no confirmation for this long: the node is taken to be hung and left
/// for the next. Sooner than the keep-alive's own detection (a ping unanswered at the next
/// one: 15-30 s after a node froze, with the 15 s keep-alive), and long enough that a core
/// that is only slow (a backlog drains with confirmations milliseconds apart; a quorum queue
/// electing a leader takes seconds) is not left: a core needing more than 10 s per
/// confirmation would be left again after each reconnection, its events resent (the core
/// de-duplicates by event id).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, Default)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SyncStatus {
    pub enabled: bool,
    /// `host:port` of the hospital core: the node connected to, or tried next.
    pub upstream: String,
    pub connected: bool,
    pub acked_seq: i64,
    pub last_seq: i64,
    /// Events the core has not confirmed yet.
    pub backlog: i64,
    /// Time of the oldest event not yet confirmed, if any.
    pub oldest_unsynced_ms: Option<i64>,
    pub published: u64,
    pub connects: u64,
    /// Connections left because the node confirmed nothing for 10 s while events waited (a
    /// hung node, or a network that drops packets without closing anything).
    pub hung_left: u64,
    /// Acknowledgements from peer stations received (each applies to a matching alarm here,
    /// if there is one).
    pub remote_acks: u64,
    /// Messages from the core that could not be read (counted, logged, ignored).
    pub remote_refused: u64,
    pub last_error: Option<String>,
}

pub type SharedStatus = Arc<Mutex<SyncStatus>>;

pub struct Worker {
    pub cfg: UpstreamConfig,
    pub origin: String,
    pub db: PathBuf,
    /// The store writer: the watermark is written through it.
    pub writer: Arc<dyn RecordSink>,
    pub status: SharedStatus,
}

/// Peer stations' events, on a client of its own with a persistent session (clean start off,
/// kept by the core for a day): while this station is cut off, the core queues its peers'
/// acknowledgements and delivers them when it is back. The outbox client cannot do this: it
/// starts clean so that it alone decides the order of what it sends.
pub struct PeerListener {
    pub cfg: UpstreamConfig,
    pub status: SharedStatus,
    /// Where peers' acknowledgements go (the station's alarm driver).
    pub acks: Box<dyn Fn(PeerAck) + Send + Sync>,
    /// Where a peer's "not monitoring" and "back" go (the station's alarm driver); decided
    /// by [`crate::liveness::PeerWatch`] from the peers' liveness messages.
    pub liveness: Box<dyn Fn(crate::liveness::PeerChange) + Send + Sync>,
    /// This station's id: acknowledgements made at a peer for this station's alarms name it.
    pub origin: String,
    /// Stations whose alarm lists this one follows (a care group), and where their lists go.
    pub follow: Vec<String>,
    pub followed: Box<dyn Fn(ward_alarm::care::SharedAlarms) + Send + Sync>,
}

/// How long the core keeps the peer session of a station that is away.
const PEER_SESSION_EXPIRY_S: u32 = 24 * 3600;

impl PeerListener {
    fn set(&self, f: impl FnOnce(&mut SyncStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    pub async fn run(self, stop: CancellationToken) {
        if self.cfg.peers.is_empty() {
            return;
        }
        let cfg = UpstreamConfig {
            client_id: format!("{}-peers", self.cfg.client_id),
            ..self.cfg.clone()
        };
        // The outbox worker shows why options cannot be made yet; this one only waits.
        let Some(prepared) = prepared_when_ready(&cfg, &stop, |_| {}).await else {
            return;
        };
        let setup = Setup {
            client_id: cfg.client_id.clone(),
            persistent: Some(PEER_SESSION_EXPIRY_S),
            will: None,
            cap: 64,
        };
        let mut link = Link::new(&cfg, prepared, setup);
        let mut backoff = Duration::from_millis(500);
        let epoch = tokio::time::Instant::now();
        let mono = || i64::try_from(epoch.elapsed().as_millis()).unwrap_or(i64::MAX);
        let timeout_ms = i64::try_from(cfg.peer_timeout.as_millis()).unwrap_or(i64::MAX);
        let mut watch = crate::liveness::PeerWatch::new(&cfg.peers, timeout_ms, mono());
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    for change in watch.poll(mono()) {
                        match &change {
                            crate::liveness::PeerChange::Down { label, reason, .. } => {
                                tracing::error!(%label, %reason, "peer station not monitoring")
                            }
                            crate::liveness::PeerChange::Up { peer, .. } => {
                                tracing::info!(%peer, "peer station monitoring again")
                            }
                        }
                        (self.liveness)(change);
                    }
                }
                ev = link.poll() => match ev {
                    Ok(Incoming::Connected) => {
                        backoff = Duration::from_millis(500);
                        watch.connected(mono(), true);
                        // Subscribing again is harmless and covers a session the core lost.
                        for peer in &cfg.peers {
                            let t = events_topic(&cfg.topic_prefix, peer);
                            let alive = crate::liveness::alive_topic(&cfg.topic_prefix, peer);
                            let mut topics = vec![t, alive];
                            if self.follow.contains(peer) {
                                topics.push(crate::liveness::alarms_topic(&cfg.topic_prefix, peer));
                            }
                            for t in topics {
                                if let Err(e) = link.try_subscribe(&t) {
                                    tracing::error!(error = %e, %peer, "cannot subscribe to a peer station");
                                }
                            }
                        }
                    }
                    Ok(Incoming::Message { topic, payload }) => {
                        if topic.ends_with("/alive") {
                            match crate::liveness::Alive::parse(&topic, &payload) {
                                Ok(a) => watch.message(mono(), &a),
                                Err(e) => {
                                    tracing::warn!(error = %e, "unreadable liveness message from the hospital core");
                                    self.set(|s| s.remote_refused += 1);
                                }
                            }
                            continue;
                        }
                        if topic.ends_with("/alarms") {
                            match crate::liveness::parse_alarms(&self.follow, &topic, &payload) {
                                Ok(l) => (self.followed)(l),
                                Err(e) => {
                                    tracing::warn!(error = %e, "unreadable alarm list from the hospital core");
                                    self.set(|s| s.remote_refused += 1);
                                }
                            }
                            continue;
                        }
                        match remote_ack(&self.origin, &cfg.peers, &topic, &payload) {
                            Ok(Some(input)) => {
                                self.set(|s| s.remote_acks += 1);
                                (self.acks)(input);
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "unreadable message from the hospital core");
                                self.set(|s| s.remote_refused += 1);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        watch.connected(mono(), false);
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                },
            }
        }
        link.disconnect().await;
    }
}

fn events_topic(prefix: &str, station: &str) -> String {
    format!("{}/station/{station}/events", prefix.trim_end_matches('/'))
}

/// An acknowledgement made at a peer station: the command for the alarm driver, and who
/// made it where ("nurse.ana at station st-b").
#[derive(Debug, Clone, PartialEq)]
pub struct PeerAck {
    pub command: AlarmCommand,
    pub user: String,
}

/// The audit kind of an acknowledgement a person makes at this station for an alarm of a
/// followed station (its detail: [`FollowedAck`]).
pub const FOLLOWED_ACK_KIND: &str = "alarm.acknowledge_followed";

/// What an acknowledgement of a followed station's alarm names.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FollowedAck {
    pub station: String,
    pub bed: String,
    pub condition: String,
    pub label: String,
    pub t_ms: i64,
}

/// A peer station's acknowledgement, from one event the core delivered: one of this
/// station's alarms acknowledged there (as a follower, naming this station `me`), or the same
/// bed's alarm acknowledged at a peer that watches the same beds. `None` for every other
/// event; an error names what was unreadable.
pub fn remote_ack(
    me: &str,
    peers: &[String],
    topic: &str,
    payload: &[u8],
) -> Result<Option<PeerAck>, String> {
    #[derive(serde::Deserialize)]
    struct Event {
        origin: String,
        kind: String,
        actor: String,
        detail: String,
    }
    #[derive(serde::Deserialize)]
    struct Row {
        t_ms: i64,
        bed: Option<String>,
        condition: String,
    }
    let ev: Event =
        serde_json::from_slice(payload).map_err(|e| format!("event on {topic}: {e}"))?;
    if !peers.contains(&ev.origin) || !topic.ends_with(&format!("/station/{}/events", ev.origin)) {
        return Err(format!(
            "event from {:?} on {topic}: not a peer's topic",
            ev.origin
        ));
    }
    if ev.kind == FOLLOWED_ACK_KIND {
        let f: FollowedAck = serde_json::from_str(&ev.detail)
            .map_err(|e| format!("acknowledgement from {}: detail: {e}", ev.origin))?;
        if f.station != me {
            return Ok(None);
        }
        return Ok(Some(PeerAck {
            command: AlarmCommand::PeerAcknowledge {
                bed: f.bed,
                key: f.condition,
                acked_at_ms: f.t_ms,
            },
            user: format!("{} at station {}", ev.actor, ev.origin),
        }));
    }
    // Only acknowledgements made by a person there: one relayed from a third station (its
    // user reads "... at station ...") is applied from that station's own event, if at all.
    if ev.kind != "alarm.acknowledged" || ev.actor.contains(" at station ") {
        return Ok(None);
    }
    let row: Row = serde_json::from_str(&ev.detail)
        .map_err(|e| format!("acknowledgement from {}: detail: {e}", ev.origin))?;
    let Some(bed) = row.bed else {
        // Station-level technical alarms belong to that station alone.
        return Ok(None);
    };
    Ok(Some(PeerAck {
        command: AlarmCommand::PeerAcknowledge {
            bed,
            key: row.condition,
            acked_at_ms: row.t_ms,
        },
        user: format!("{} at station {}", ev.actor, ev.origin),
    }))
}

impl Worker {
    fn set(&self, f: impl FnOnce(&mut SyncStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// Backlog and the oldest unconfirmed event, for metrics and the window.
    fn refresh_backlog(&self, store: &Store, acked: i64) {
        let last = store.audit_last_seq().unwrap_or(acked);
        let oldest = if last > acked {
            store
                .audit_after(acked, 1)
                .ok()
                .and_then(|v| v.first().map(|r| r.t_ms))
        } else {
            None
        };
        self.set(|s| {
            s.acked_seq = acked;
            s.last_seq = last;
            s.backlog = (last - acked).max(0);
            s.oldest_unsynced_ms = oldest;
        });
    }

    pub async fn run(self, stop: CancellationToken) {
        let store = match Store::open_read_only(&self.db) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "upstream sync cannot read the store");
                return;
            }
        };
        // While waiting, the backlog keeps growing and the reason shows in metrics.
        let prepared = prepared_when_ready(&self.cfg, &stop, |e| {
            tracing::error!(error = %e, "upstream sync waiting for its configuration");
            self.set(|s| s.last_error = Some(e.to_string()));
            // A connection of its own each time (every 10 s): the worker's is not shared
            // across the wait.
            if let Ok(store) = Store::open_read_only(&self.db) {
                let acked = store.sync_acked(&self.cfg.name).unwrap_or(0);
                self.refresh_backlog(&store, acked);
            }
        })
        .await;
        let Some(prepared) = prepared else { return };
        let topic = events_topic(&self.cfg.topic_prefix, &self.origin);
        let setup = Setup {
            client_id: self.cfg.client_id.clone(),
            persistent: None,
            will: None,
            cap: WINDOW * 2,
        };
        let mut link = Link::new(&self.cfg, prepared, setup);
        let mut acked = store.sync_acked(&self.cfg.name).unwrap_or(0);
        let mut connected = false;
        let mut next = acked + 1;
        // Published on this connection, waiting for their packet id; then by packet id.
        let mut sent: VecDeque<i64> = VecDeque::new();
        let mut by_pkid: HashMap<u16, i64> = HashMap::new();
        let mut done: BTreeSet<i64> = BTreeSet::new();
        let mut backoff = Duration::from_millis(500);
        // When the last confirmation came, or the first event went out with nothing in flight.
        let mut progress = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                ev = link.poll() => match ev {
                    Ok(Incoming::Connected) => {
                        connected = true;
                        backoff = Duration::from_millis(500);
                        // A clean start: whatever was in flight is resent, in order.
                        next = acked + 1;
                        sent.clear();
                        by_pkid.clear();
                        done.clear();
                        let at = link.endpoint();
                        tracing::info!(upstream = %self.cfg.name, endpoint = %at, from = next, "connected to the hospital core");
                        self.set(|s| { s.connected = true; s.connects += 1; s.last_error = None; s.upstream = at; });
                    }
                    Ok(Incoming::Sent(pkid)) => {
                        if let Some(seq) = sent.pop_front() {
                            by_pkid.insert(pkid, seq);
                        }
                    }
                    Ok(Incoming::Confirmed(pkid)) => {
                        progress = tokio::time::Instant::now();
                        if let Some(seq) = by_pkid.remove(&pkid) {
                            done.insert(seq);
                            // The watermark moves only over an unbroken run of confirmations.
                            while done.remove(&(acked + 1)) {
                                acked += 1;
                            }
                            let r = Record::SyncAck { upstream: self.cfg.name.clone(), seq: acked, t_ms: now_ms() };
                            // A full queue only delays the watermark; the next ack carries it.
                            let _ = self.writer.append(vec![r]);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if connected {
                            tracing::warn!(upstream = %self.cfg.name, error = %e, "lost the hospital core; events wait in the outbox");
                        }
                        connected = false;
                        // Where the next attempt goes (the next node, for a clustered core).
                        let at = link.endpoint();
                        self.set(|s| { s.connected = false; s.last_error = Some(e); s.upstream = at; });
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                },
                _ = tick.tick() => {
                    let in_flight = sent.len() + by_pkid.len();
                    if connected && in_flight > 0 && progress.elapsed() >= CONFIRM_TIMEOUT {
                        let e = format!(
                            "{in_flight} event(s) unconfirmed for {} s: the node is taken to be hung",
                            CONFIRM_TIMEOUT.as_secs()
                        );
                        tracing::warn!(upstream = %self.cfg.name, endpoint = %link.endpoint(), error = %e, "leaving the hospital core's node; events wait in the outbox");
                        link.abandon();
                        connected = false;
                        let at = link.endpoint();
                        self.set(|s| { s.connected = false; s.hung_left += 1; s.last_error = Some(e); s.upstream = at; });
                        continue;
                    }
                    if connected {
                        if in_flight == 0 {
                            progress = tokio::time::Instant::now();
                        }
                        let room = WINDOW.saturating_sub(in_flight);
                        if room > 0 {
                            match store.audit_after(next - 1, room) {
                                Ok(rows) => {
                                    for r in rows {
                                        let payload = match serde_json::to_vec(&Upstream { origin: &self.origin, event: &r }) {
                                            Ok(p) => p,
                                            Err(_) => continue,
                                        };
                                        if link.try_publish_event(&topic, payload, &r.event_id).is_err() {
                                            break;
                                        }
                                        sent.push_back(r.seq);
                                        next = r.seq + 1;
                                        self.set(|s| s.published += 1);
                                    }
                                }
                                Err(e) => tracing::error!(error = %e, "reading the outbox failed"),
                            }
                        }
                    }
                    self.refresh_backlog(&store, acked);
                }
            }
        }
        link.disconnect().await;
    }
}

/// What the core receives per event.
#[derive(Serialize)]
struct Upstream<'a> {
    origin: &'a str,
    #[serde(flatten)]
    event: &'a ward_store::AuditRow,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A follower's acknowledgement of one of this station's alarms applies here; one made
    /// for a third station does not.
    #[test]
    fn a_followers_acknowledgement_names_this_station() {
        let peers = vec!["st-b".to_string()];
        let detail = |station: &str| {
            serde_json::to_string(&FollowedAck {
                station: station.into(),
                bed: "bed-02".into(),
                condition: "limit:spo2_desat".into(),
                label: "Desaturation".into(),
                t_ms: 5_000,
            })
            .unwrap()
        };
        let got = remote_ack(
            "st-a",
            &peers,
            TOPIC,
            &event("st-b", FOLLOWED_ACK_KIND, "nurse.ana", &detail("st-a")),
        );
        assert_eq!(
            got,
            Ok(Some(PeerAck {
                command: AlarmCommand::PeerAcknowledge {
                    bed: "bed-02".into(),
                    key: "limit:spo2_desat".into(),
                    acked_at_ms: 5_000
                },
                user: "nurse.ana at station st-b".into()
            }))
        );
        let other = remote_ack(
            "st-a",
            &peers,
            TOPIC,
            &event("st-b", FOLLOWED_ACK_KIND, "nurse.ana", &detail("st-c")),
        );
        assert_eq!(other, Ok(None));
        let bad = remote_ack(
            "st-a",
            &peers,
            TOPIC,
            &event("st-b", FOLLOWED_ACK_KIND, "n", "{}"),
        );
        assert!(bad.unwrap_err().contains("detail"));
    }

    fn event(origin: &str, kind: &str, actor: &str, detail: &str) -> Vec<u8> {
        serde_json::json!({
            "origin": origin, "seq": 7, "event_id": format!("{origin}:7"), "t_ms": 1,
            "actor": actor, "kind": kind, "bed": "bed-02", "detail": detail,
            "prev_hash": "", "hash": ""
        })
        .to_string()
        .into_bytes()
    }

    const ROW: &str = r#"{"t_ms":1000,"kind":"acknowledged","alarm_id":4,"bed":"bed-02","condition":"limit:spo2_desat","label":"Desaturation","priority":"high","value":76.0,"limit":80.0,"user":"nurse.ana","detail":null}"#;
    const TOPIC: &str = "wardwatch/v1/station/st-b/events";

    #[test]
    fn a_peers_acknowledgement_becomes_a_remote_ack() {
        let peers = vec!["st-b".to_string()];
        let got = remote_ack(
            "st-a",
            &peers,
            TOPIC,
            &event("st-b", "alarm.acknowledged", "nurse.ana", ROW),
        );
        match got {
            Ok(Some(PeerAck {
                command:
                    AlarmCommand::PeerAcknowledge {
                        bed,
                        key,
                        acked_at_ms,
                    },
                user,
            })) => {
                assert_eq!(
                    (bed.as_str(), key.as_str(), acked_at_ms, user.as_str()),
                    (
                        "bed-02",
                        "limit:spo2_desat",
                        1000,
                        "nurse.ana at station st-b"
                    )
                );
            }
            _ => panic!("not a remote ack"),
        }
    }

    #[test]
    fn other_events_relays_and_strangers_are_not_applied() {
        let peers = vec!["st-b".to_string()];
        let none = |p: Vec<u8>| matches!(remote_ack("st-a", &peers, TOPIC, &p), Ok(None));
        assert!(none(event("st-b", "alarm.raised", "system", ROW)));
        assert!(none(event(
            "st-b",
            "alarm.acknowledged",
            "nurse.ana at station st-c",
            ROW
        )));
        // Not a peer, or a peer's event on another station's topic: refused, with the reason.
        let err = |r: Result<Option<PeerAck>, String>| match r {
            Err(e) => e,
            Ok(_) => panic!("accepted"),
        };
        let e = err(remote_ack(
            "st-a",
            &peers,
            TOPIC,
            &event("st-x", "alarm.acknowledged", "x", ROW),
        ));
        assert!(e.contains("not a peer's topic"), "{e}");
        let e = err(remote_ack(
            "st-a",
            &peers,
            "wardwatch/v1/station/st-c/events",
            &event("st-b", "alarm.acknowledged", "x", ROW),
        ));
        assert!(e.contains("not a peer's topic"), "{e}");
        // Garbage of every kind is an error naming what was wrong, never a panic.
        for bad in [&b"\xff\xfe"[..], b"{}", b"[1,2]", b"null"] {
            assert!(remote_ack("st-a", &peers, TOPIC, bad).is_err());
        }
        let e = err(remote_ack(
            "st-a",
            &peers,
            TOPIC,
            &event("st-b", "alarm.acknowledged", "n", "{oops"),
        ));
        assert!(e.contains("detail"), "{e}");
    }
}
