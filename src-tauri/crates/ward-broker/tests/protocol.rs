//! The broker over real TCP, with packets written by rumqttc's MQTT 5 codec acting as a
//! client (so each byte on the wire is under the test's control), and rumqttc's 3.1.1 client
//! for the 3.1.1 paths: every behaviour the crate docs promise has a test here.
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Connect, ConnectProperties, ConnectReturnCode, Disconnect, DisconnectProperties,
    DisconnectReasonCode, Filter, LastWill, LastWillProperties, Login, Packet, PubAck, PubComp,
    PubRec, PubRel, Publish, PublishProperties, RetainForwardRule, Subscribe, SubscribeProperties,
    SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use ward_broker::{Acl, AuthHook, BrokerConfig, BrokerHandle, FileAuth, Passwords};

fn open_auth() -> AuthHook {
    AuthHook(Arc::new(FileAuth {
        allow_anonymous: true,
        passwords: Passwords::default(),
        acl: Acl::parse("pattern readwrite #\npattern read $SYS/#", "test").unwrap(),
    }))
}

/// A broker on a free loopback port that lets anonymous clients use any topic.
async fn broker(cfg: BrokerConfig) -> BrokerHandle {
    ward_broker::start(BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: open_auth(),
        ..cfg
    })
    .await
    .unwrap()
}

#[derive(Clone, Default)]
struct Opts {
    clean: bool,
    keep_alive: u16,
    expiry: Option<u32>,
    login: Option<(&'static str, &'static str)>,
    will: Option<LastWill>,
    receive_max: Option<u16>,
    max_packet: Option<u32>,
    alias_max: Option<u16>,
}

fn clean() -> Opts {
    Opts {
        clean: true,
        keep_alive: 30,
        ..Opts::default()
    }
}

fn persistent(expiry: u32) -> Opts {
    Opts {
        clean: false,
        keep_alive: 30,
        expiry: Some(expiry),
        ..Opts::default()
    }
}

struct Client {
    s: TcpStream,
    buf: BytesMut,
    /// PUBLISHes that arrived while an acknowledgement was awaited.
    stash: std::collections::VecDeque<Publish>,
}

impl Client {
    async fn connect(b: &BrokerHandle, id: &str, keep_alive: u16) -> (Self, ConnAck) {
        Self::connect_opts(
            b.local_addr(),
            id,
            Opts {
                keep_alive,
                ..clean()
            },
        )
        .await
    }

    async fn open(b: &BrokerHandle, id: &str) -> Self {
        let (c, ack) = Self::connect_opts(b.local_addr(), id, clean()).await;
        assert_eq!(ack.code, ConnectReturnCode::Success);
        c
    }

    async fn connect_opts(addr: std::net::SocketAddr, id: &str, o: Opts) -> (Self, ConnAck) {
        let mut c = Client {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
            stash: Default::default(),
        };
        let props = ConnectProperties {
            session_expiry_interval: o.expiry,
            receive_maximum: o.receive_max,
            max_packet_size: o.max_packet,
            topic_alias_max: o.alias_max,
            request_response_info: None,
            request_problem_info: None,
            user_properties: Vec::new(),
            authentication_method: None,
            authentication_data: None,
        };
        let connect = Connect {
            keep_alive: o.keep_alive,
            client_id: id.into(),
            clean_start: o.clean,
            properties: Some(props),
        };
        let login = o.login.map(|(u, p)| Login::new(u, p));
        c.send(Packet::Connect(connect, o.will, login)).await;
        match c.recv().await {
            Some(Packet::ConnAck(a)) => (c, a),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        p.write(&mut out, None).unwrap();
        self.s.write_all(&out).await.unwrap();
    }

    /// The next packet, or None once the broker has closed the connection.
    async fn recv(&mut self) -> Option<Packet> {
        self.recv_within(Duration::from_secs(10))
            .await
            .expect("broker answered within 10 s")
    }

    /// `Err` if nothing arrives within `t`.
    async fn recv_within(&mut self, t: Duration) -> Result<Option<Packet>, ()> {
        loop {
            if !self.buf.is_empty() {
                match Packet::read(&mut self.buf, None) {
                    Ok(p) => return Ok(Some(p)),
                    Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("broker sent an unreadable packet: {e}"),
                }
            }
            let n = tokio::time::timeout(t, self.s.read_buf(&mut self.buf))
                .await
                .map_err(|_| ())?
                .unwrap_or(0);
            if n == 0 {
                return Ok(None);
            }
        }
    }

    async fn nothing_within(&mut self, ms: u64) {
        assert!(
            self.stash.is_empty(),
            "expected nothing, have {:?}",
            self.stash
        );
        if let Ok(p) = self.recv_within(Duration::from_millis(ms)).await {
            panic!("expected nothing, got {p:?}");
        }
    }

    async fn subscribe_with(
        &mut self,
        pkid: u16,
        filters: Vec<Filter>,
        id: Option<usize>,
    ) -> Vec<SubscribeReasonCode> {
        let mut sub = Subscribe::new_many(
            filters,
            id.map(|id| SubscribeProperties {
                id: Some(id),
                user_properties: Vec::new(),
            }),
        );
        sub.pkid = pkid;
        self.send(Packet::Subscribe(sub)).await;
        match self.recv().await {
            Some(Packet::SubAck(a)) => {
                assert_eq!(a.pkid, pkid);
                a.return_codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubscribeReasonCode {
        self.subscribe_with(1, vec![Filter::new(filter, qos)], None)
            .await[0]
    }

    /// Publishes and completes the acknowledgement flow for QoS 1/2.
    async fn publish(&mut self, topic: &str, qos: QoS, payload: &str, pkid: u16) {
        self.publish_props(topic, qos, payload, pkid, false, None)
            .await;
    }

    async fn publish_props(
        &mut self,
        topic: &str,
        qos: QoS,
        payload: &str,
        pkid: u16,
        retain: bool,
        props: Option<PublishProperties>,
    ) {
        let mut p = Publish::new(topic, qos, payload.to_string(), props);
        p.pkid = if qos == QoS::AtMostOnce { 0 } else { pkid };
        p.retain = retain;
        self.send(Packet::Publish(p)).await;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                assert!(matches!(self.recv().await, Some(Packet::PubAck(a)) if a.pkid == pkid))
            }
            QoS::ExactlyOnce => {
                assert!(matches!(self.recv().await, Some(Packet::PubRec(a)) if a.pkid == pkid));
                self.send(Packet::PubRel(PubRel::new(pkid, None))).await;
                assert!(matches!(self.recv().await, Some(Packet::PubComp(a)) if a.pkid == pkid));
            }
        }
    }

    /// The next PUBLISH, acknowledged (QoS 1: PUBACK; QoS 2: PUBREC, PUBREL, PUBCOMP).
    async fn take(&mut self) -> Publish {
        let p = self.next_publish().await;
        self.ack(&p).await;
        p
    }

    async fn next_publish(&mut self) -> Publish {
        if let Some(p) = self.stash.pop_front() {
            return p;
        }
        match self.recv().await {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    async fn ack(&mut self, p: &Publish) {
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(Packet::PubAck(PubAck::new(p.pkid, None))).await,
            QoS::ExactlyOnce => {
                self.send(Packet::PubRec(PubRec::new(p.pkid, None))).await;
                loop {
                    match self.recv().await {
                        Some(Packet::PubRel(r)) if r.pkid == p.pkid => break,
                        Some(Packet::Publish(next)) => self.stash.push_back(next),
                        other => panic!("expected PUBREL {}, got {other:?}", p.pkid),
                    }
                }
                self.send(Packet::PubComp(PubComp::new(p.pkid, None))).await;
            }
        }
    }

    async fn disconnect(mut self) {
        self.send(Packet::Disconnect(Disconnect::new(
            DisconnectReasonCode::NormalDisconnection,
        )))
        .await;
        let _ = self.recv_within(Duration::from_secs(5)).await;
    }

    async fn expect_disconnect(&mut self, code: DisconnectReasonCode) {
        match self.recv().await {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason_code, code),
            other => panic!("expected DISCONNECT {code:?}, got {other:?}"),
        }
        assert!(
            self.recv().await.is_none(),
            "connection closed after DISCONNECT"
        );
    }
}

fn payload(p: &Publish) -> &str {
    std::str::from_utf8(&p.payload).unwrap()
}

/// Asserts the broker closes `s` without sending anything.
async fn assert_closed_silently(mut s: TcpStream) {
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
        .await
        .expect("closed within 10 s");
    assert_eq!(read.unwrap_or(0), 0, "nothing sent before closing");
}

/// Waits (polling the broker's metrics) until `f` holds.
async fn until(b: &BrokerHandle, what: &str, f: impl Fn(&ward_broker::MetricsSnapshot) -> bool) {
    for _ in 0..500 {
        if f(&b.metrics()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}: {:?}", b.metrics());
}

// ---------------------------------------------------------------------------------------
// Connections: time limits, keep-alive, takeover, shutdown, limits.

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_connect_time_limit() {
    let b = broker(BrokerConfig {
        connect_timeout: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    assert_closed_silently(TcpStream::connect(b.local_addr()).await.unwrap()).await;
    assert_eq!(b.metrics().connect_timeouts, 1);
}

#[tokio::test]
async fn keep_alive_expiry_disconnects_with_reason_0x8d() {
    let b = broker(BrokerConfig::default()).await;
    let (mut c, ack) = Client::connect(&b, "sleepy", 1).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    // Silent past 1.5 x the 1 s keep-alive.
    c.expect_disconnect(DisconnectReasonCode::KeepAliveTimeout)
        .await;
    assert_eq!(b.metrics().keepalive_timeouts, 1);
}

#[tokio::test]
async fn server_keep_alive_caps_a_missing_or_long_keep_alive_and_ids_are_assigned() {
    let b = broker(BrokerConfig {
        max_keep_alive: 60,
        ..Default::default()
    })
    .await;
    let (_c, ack) = Client::connect(&b, "", 0).await;
    let p = ack.properties.unwrap();
    assert_eq!(p.server_keep_alive, Some(60));
    assert!(p
        .assigned_client_identifier
        .unwrap()
        .starts_with("ww-auto-"));
    assert_eq!(p.receive_max, Some(1024));
    assert_eq!(p.topic_alias_max, Some(64));
    let (_d, ack) = Client::connect(&b, "short", 20).await;
    assert_eq!(ack.properties.unwrap().server_keep_alive, None);
}

#[tokio::test]
async fn a_second_connection_with_the_same_client_id_takes_over() {
    let b = broker(BrokerConfig::default()).await;
    let (mut first, _) = Client::connect(&b, "mon-1", 30).await;
    let (mut second, _) = Client::connect(&b, "mon-1", 30).await;
    first
        .expect_disconnect(DisconnectReasonCode::SessionTakenOver)
        .await;
    second
        .send(Packet::PingReq(rumqttc::v5::mqttbytes::v5::PingReq))
        .await;
    assert!(matches!(second.recv().await, Some(Packet::PingResp(_))));
}

#[tokio::test]
async fn shutdown_tells_v5_clients_the_server_is_shutting_down() {
    let b = broker(BrokerConfig::default()).await;
    let (mut c, _) = Client::connect(&b, "mon-1", 30).await;
    let stop = tokio::spawn(b.shutdown());
    c.expect_disconnect(DisconnectReasonCode::ServerShuttingDown)
        .await;
    stop.await.unwrap();
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_and_counted() {
    let b = broker(BrokerConfig {
        max_connections: 1,
        ..Default::default()
    })
    .await;
    let (_first, _) = Client::connect(&b, "mon-1", 30).await;
    assert_closed_silently(TcpStream::connect(b.local_addr()).await.unwrap()).await;
    assert_eq!(b.metrics().connections_refused, 1);
}

#[tokio::test]
async fn packets_pipelined_behind_connect_are_handled_before_the_client_closes() {
    let b = broker(BrokerConfig::default()).await;
    let mut rx = b.subscribe_local("ward/#", 16).unwrap();
    // CONNECT, PUBLISH and DISCONNECT in one write, without waiting for CONNACK.
    let mut out = BytesMut::new();
    let connect = Connect {
        keep_alive: 30,
        client_id: "eager".into(),
        clean_start: true,
        properties: None,
    };
    Packet::Connect(connect, None, None)
        .write(&mut out, None)
        .unwrap();
    Packet::Publish(Publish::new("ward/eager", QoS::AtMostOnce, "hi", None))
        .write(&mut out, None)
        .unwrap();
    out.extend_from_slice(&[0xE0, 0x00]);
    let mut s = TcpStream::connect(b.local_addr()).await.unwrap();
    s.write_all(&out).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.payload[..], b"hi");
}

#[tokio::test]
async fn malformed_packets_get_disconnect_0x81_and_garbage_is_closed() {
    let b = broker(BrokerConfig::default()).await;
    let (mut c, _) = Client::connect(&b, "bad", 30).await;
    // SUBSCRIBE with no filters: malformed.
    c.s.write_all(&[0x82, 0x03, 0x00, 0x01, 0x00])
        .await
        .unwrap();
    c.expect_disconnect(DisconnectReasonCode::MalformedPacket)
        .await;
    let mut s = TcpStream::connect(b.local_addr()).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert_closed_silently(s).await;
    until(&b, "two malformed", |m| m.malformed_packets == 2).await;
}

// ---------------------------------------------------------------------------------------
// QoS.

/// The issue's probe: a QoS 2 PUBLISH, its retransmission with DUP, then a second message:
/// the subscriber gets each exactly once; a PUBREL after reconnect completes the first flow.
#[tokio::test]
async fn qos2_dup_probe_each_message_exactly_once_and_pubrel_after_reconnect() {
    let b = broker(BrokerConfig::default()).await;
    let mut sub = Client::open(&b, "sub").await;
    assert_eq!(
        sub.subscribe("ward/x", QoS::ExactlyOnce).await,
        SubscribeReasonCode::Success(QoS::ExactlyOnce)
    );
    let (mut c, _) = Client::connect_opts(b.local_addr(), "mon-1", persistent(300)).await;
    let mut p = Publish::new("ward/x", QoS::ExactlyOnce, "one", None);
    p.pkid = 7;
    c.send(Packet::Publish(p.clone())).await;
    assert!(matches!(c.recv().await, Some(Packet::PubRec(r)) if r.pkid == 7));
    p.dup = true;
    c.send(Packet::Publish(p.clone())).await;
    assert!(matches!(c.recv().await, Some(Packet::PubRec(r)) if r.pkid == 7));
    // The connection drops before PUBREL; the client comes back to its session.
    drop(c);
    let (mut c, ack) = Client::connect_opts(b.local_addr(), "mon-1", persistent(300)).await;
    assert!(ack.session_present);
    // Retransmitted once more after the reconnect: still not delivered again.
    c.send(Packet::Publish(p)).await;
    assert!(matches!(c.recv().await, Some(Packet::PubRec(r)) if r.pkid == 7));
    c.send(Packet::PubRel(PubRel::new(7, None))).await;
    assert!(matches!(c.recv().await, Some(Packet::PubComp(r)) if r.pkid == 7));
    // The id is free again: a new message with it is a new message.
    c.publish("ward/x", QoS::ExactlyOnce, "two", 7).await;

    let first = sub.take().await;
    let second = sub.take().await;
    assert_eq!((payload(&first), payload(&second)), ("one", "two"));
    assert_eq!(first.qos, QoS::ExactlyOnce);
    sub.nothing_within(300).await;
}

#[tokio::test]
async fn delivered_qos_is_the_lower_of_publish_and_subscription_and_overlaps_deliver_once() {
    let b = broker(BrokerConfig::default()).await;
    let mut s = Client::open(&b, "s").await;
    let codes = s
        .subscribe_with(
            2,
            vec![
                Filter::new("q/#", QoS::AtMostOnce),
                Filter::new("q/one", QoS::AtLeastOnce),
                Filter::new("q/+", QoS::AtLeastOnce),
            ],
            None,
        )
        .await;
    assert_eq!(codes.len(), 3);
    let mut p = Client::open(&b, "p").await;
    p.publish("q/one", QoS::ExactlyOnce, "a", 1).await;
    p.publish("q/two/deep", QoS::ExactlyOnce, "b", 2).await;
    p.publish("q/one", QoS::AtMostOnce, "c", 0).await;
    let got: Vec<(String, QoS)> = [s.take().await, s.take().await, s.take().await]
        .iter()
        .map(|m| (payload(m).to_string(), m.qos))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a".into(), QoS::AtLeastOnce),
            ("b".into(), QoS::AtMostOnce),
            ("c".into(), QoS::AtMostOnce)
        ]
    );
    s.nothing_within(300).await;
}

// ---------------------------------------------------------------------------------------
// Retained messages.

#[tokio::test]
async fn retained_messages_are_set_replaced_and_cleared_only_by_an_empty_payload() {
    let b = broker(BrokerConfig::default()).await;
    let mut p = Client::open(&b, "p").await;
    p.publish_props("st/a", QoS::AtLeastOnce, "v1", 1, true, None)
        .await;
    p.publish_props("st/a", QoS::AtLeastOnce, "v2", 2, true, None)
        .await;
    p.publish_props("st/b", QoS::AtMostOnce, "b1", 0, true, None)
        .await;
    // A non-retained message does not touch the retained one.
    p.publish("st/b", QoS::AtLeastOnce, "live", 9).await;
    let mut s = Client::open(&b, "s").await;
    s.subscribe("st/#", QoS::AtLeastOnce).await;
    let mut got = [s.take().await, s.take().await];
    got.sort_by(|x, y| x.topic.cmp(&y.topic));
    assert_eq!(
        got.iter()
            .map(|m| (payload(m), m.retain))
            .collect::<Vec<_>>(),
        vec![("v2", true), ("b1", true)]
    );
    // Live messages reach the subscriber without the retain flag (no retain-as-published).
    p.publish_props("st/a", QoS::AtLeastOnce, "v3", 3, true, None)
        .await;
    let live = s.take().await;
    assert_eq!((payload(&live), live.retain), ("v3", false));
    // Empty payload clears.
    p.publish_props("st/a", QoS::AtLeastOnce, "", 4, true, None)
        .await;
    let _ = s.take().await;
    let mut s2 = Client::open(&b, "s2").await;
    s2.subscribe("st/#", QoS::AtLeastOnce).await;
    let only = s2.take().await;
    assert_eq!(payload(&only), "b1");
    s2.nothing_within(300).await;
    assert_eq!(b.metrics().retained_messages, 1);
}

#[tokio::test]
async fn retain_handling_and_retain_as_published_follow_the_subscription_options() {
    let b = broker(BrokerConfig::default()).await;
    let mut p = Client::open(&b, "p").await;
    p.publish_props("rh/x", QoS::AtLeastOnce, "kept", 1, true, None)
        .await;
    let mut s = Client::open(&b, "s").await;
    let f = |rule, rap| {
        let mut f = Filter::new("rh/x", QoS::AtLeastOnce);
        f.retain_forward_rule = rule;
        f.preserve_retain = rap;
        f
    };
    // 2: never.
    s.subscribe_with(1, vec![f(RetainForwardRule::Never, false)], None)
        .await;
    s.nothing_within(300).await;
    // 1: only for a new subscription; this one exists, so nothing.
    s.subscribe_with(2, vec![f(RetainForwardRule::OnNewSubscribe, false)], None)
        .await;
    s.nothing_within(300).await;
    // 0: on every subscribe; and retain-as-published keeps the flag on live messages.
    s.subscribe_with(3, vec![f(RetainForwardRule::OnEverySubscribe, true)], None)
        .await;
    let r = s.take().await;
    assert_eq!((payload(&r), r.retain), ("kept", true));
    p.publish_props("rh/x", QoS::AtLeastOnce, "again", 2, true, None)
        .await;
    let live = s.take().await;
    assert_eq!((payload(&live), live.retain), ("again", true));
}

// ---------------------------------------------------------------------------------------
// Wills.

fn will(topic: &str, delay: Option<u32>) -> LastWill {
    LastWill::new(
        topic,
        "gone",
        QoS::AtLeastOnce,
        false,
        delay.map(|d| LastWillProperties {
            delay_interval: Some(d),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        }),
    )
}

#[tokio::test]
async fn a_will_is_published_on_a_lost_connection_but_not_after_disconnect() {
    let b = broker(BrokerConfig::default()).await;
    let mut s = Client::open(&b, "s").await;
    s.subscribe("will/#", QoS::AtLeastOnce).await;
    let (c, _) = Client::connect_opts(
        b.local_addr(),
        "polite",
        Opts {
            will: Some(will("will/polite", None)),
            ..clean()
        },
    )
    .await;
    c.disconnect().await;
    let (c, _) = Client::connect_opts(
        b.local_addr(),
        "lost",
        Opts {
            will: Some(will("will/lost", None)),
            ..clean()
        },
    )
    .await;
    drop(c);
    let w = s.take().await;
    assert_eq!((&w.topic[..], payload(&w)), (&b"will/lost"[..], "gone"));
    s.nothing_within(300).await;
    assert_eq!(b.metrics().wills_published, 1);
}

#[tokio::test]
async fn will_delay_is_cancelled_by_a_reconnect_and_honoured_otherwise() {
    let b = broker(BrokerConfig::default()).await;
    let mut s = Client::open(&b, "s").await;
    s.subscribe("will/#", QoS::AtLeastOnce).await;
    let opts = Opts {
        will: Some(will("will/delayed", Some(1))),
        ..persistent(60)
    };
    let (c, _) = Client::connect_opts(b.local_addr(), "flaky", opts.clone()).await;
    drop(c);
    // Back within the 1 s delay: no will.
    let (c, _) = Client::connect_opts(b.local_addr(), "flaky", opts).await;
    s.nothing_within(1500).await;
    drop(c);
    let w = s.take().await;
    assert_eq!(&w.topic[..], b"will/delayed");
}

// ---------------------------------------------------------------------------------------
// Sessions.

#[tokio::test]
async fn a_persistent_session_queues_qos1_and_2_while_away_and_redelivers_unacked_with_dup() {
    let b = broker(BrokerConfig::default()).await;
    let (mut s, ack) = Client::connect_opts(b.local_addr(), "nurse-tool", persistent(60)).await;
    assert!(!ack.session_present);
    s.subscribe("ps/#", QoS::ExactlyOnce).await;
    // Received but never acknowledged, then the connection drops.
    let mut p = Client::open(&b, "p").await;
    p.publish("ps/a", QoS::AtLeastOnce, "unacked", 1).await;
    let first = s.next_publish().await;
    assert!(!first.dup);
    drop(s);
    until(&b, "the subscriber to go", |m| m.connections_active == 1).await;
    // Away: QoS 1 and 2 are queued, QoS 0 is not.
    p.publish("ps/b", QoS::AtMostOnce, "q0", 0).await;
    p.publish("ps/c", QoS::AtLeastOnce, "q1", 2).await;
    p.publish("ps/d", QoS::ExactlyOnce, "q2", 3).await;
    until(&b, "two queued", |m| m.queued_messages == 2).await;
    let (mut s, ack) = Client::connect_opts(b.local_addr(), "nurse-tool", persistent(60)).await;
    assert!(ack.session_present);
    let again = s.take().await;
    assert_eq!(
        (payload(&again), again.dup, again.pkid),
        ("unacked", true, first.pkid)
    );
    let q1 = s.take().await;
    let q2 = s.take().await;
    assert_eq!((payload(&q1), payload(&q2)), ("q1", "q2"));
    assert_eq!(q2.qos, QoS::ExactlyOnce);
    s.nothing_within(300).await;
}

#[tokio::test]
async fn clean_start_discards_the_session_and_expiry_ends_it() {
    let b = broker(BrokerConfig::default()).await;
    let (mut s, _) = Client::connect_opts(b.local_addr(), "t", persistent(1)).await;
    s.subscribe("ex/#", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let (s, ack) = Client::connect_opts(b.local_addr(), "t", persistent(1)).await;
    assert!(ack.session_present);
    s.disconnect().await;
    until(&b, "the session to expire", |m| m.sessions_expired == 1).await;
    let (s, ack) = Client::connect_opts(b.local_addr(), "t", persistent(60)).await;
    assert!(!ack.session_present, "expired after 1 s");
    s.disconnect().await;
    let (_s, ack) = Client::connect_opts(
        b.local_addr(),
        "t",
        Opts {
            clean: true,
            ..persistent(60)
        },
    )
    .await;
    assert!(!ack.session_present, "clean start discards");
}

#[tokio::test]
async fn disconnect_may_not_raise_a_session_expiry_of_zero() {
    let b = broker(BrokerConfig::default()).await;
    let (mut c, _) = Client::connect(&b, "z", 30).await;
    c.send(Packet::Disconnect(Disconnect {
        reason_code: DisconnectReasonCode::NormalDisconnection,
        properties: Some(DisconnectProperties {
            session_expiry_interval: Some(60),
            reason_string: None,
            user_properties: Vec::new(),
            server_reference: None,
        }),
    }))
    .await;
    c.expect_disconnect(DisconnectReasonCode::ProtocolError)
        .await;
}

// ---------------------------------------------------------------------------------------
// MQTT 5 features.

#[tokio::test]
async fn topic_aliases_work_both_ways() {
    let b = broker(BrokerConfig::default()).await;
    let (mut s, _) = Client::connect_opts(
        b.local_addr(),
        "s",
        Opts {
            alias_max: Some(4),
            ..clean()
        },
    )
    .await;
    s.subscribe("al/#", QoS::AtMostOnce).await;
    let mut p = Client::open(&b, "p").await;
    let alias = |a| {
        Some(PublishProperties {
            topic_alias: Some(a),
            ..Default::default()
        })
    };
    p.publish_props("al/long/topic", QoS::AtMostOnce, "1", 0, false, alias(3))
        .await;
    // Alias alone (empty topic) means the same topic.
    p.publish_props("", QoS::AtMostOnce, "2", 0, false, alias(3))
        .await;
    let m1 = s.take().await;
    let m2 = s.take().await;
    // Outbound: the first carries topic and alias, the second the alias alone.
    assert_eq!(&m1.topic[..], b"al/long/topic");
    let a1 = m1.properties.unwrap().topic_alias.unwrap();
    assert_eq!(&m2.topic[..], b"");
    assert_eq!(payload(&m2), "2");
    assert_eq!(m2.properties.unwrap().topic_alias, Some(a1));
    // Above the broker's maximum: 0x94. Unknown alias: protocol error.
    p.publish_props("al/x", QoS::AtMostOnce, "x", 0, false, alias(65))
        .await;
    p.expect_disconnect(DisconnectReasonCode::TopicAliasInvalid)
        .await;
    let mut q = Client::open(&b, "q").await;
    q.publish_props("", QoS::AtMostOnce, "x", 0, false, alias(2))
        .await;
    q.expect_disconnect(DisconnectReasonCode::ProtocolError)
        .await;
}

#[tokio::test]
async fn subscription_ids_no_local_and_properties_travel_with_the_message() {
    let b = broker(BrokerConfig::default()).await;
    let mut c = Client::open(&b, "c").await;
    c.subscribe_with(1, vec![Filter::new("p/#", QoS::AtLeastOnce)], Some(11))
        .await;
    let mut nl = Filter::new("p/+", QoS::AtLeastOnce);
    nl.nolocal = true;
    c.subscribe_with(2, vec![nl], Some(22)).await;
    let props = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        topic_alias: None,
        response_topic: Some("p/reply".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"corr-1")),
        user_properties: vec![("bed".into(), "7".into())],
        subscription_identifiers: Vec::new(),
        content_type: Some("application/json".into()),
    };
    // Its own message: the no-local subscription (22) is skipped, the other (11) matches.
    c.publish_props("p/q", QoS::AtLeastOnce, "{}", 5, false, Some(props.clone()))
        .await;
    let own = c.take().await;
    let op = own.properties.unwrap();
    assert_eq!(op.subscription_identifiers, vec![11]);
    assert_eq!(op.response_topic.as_deref(), Some("p/reply"));
    assert_eq!(op.correlation_data.as_deref(), Some(&b"corr-1"[..]));
    assert_eq!(op.user_properties, vec![("bed".into(), "7".into())]);
    assert_eq!(op.content_type.as_deref(), Some("application/json"));
    assert_eq!(op.payload_format_indicator, Some(1));
    assert!(op.message_expiry_interval.unwrap() <= 3600);
    // Another client's message matches both: one delivery with both ids.
    let mut o = Client::open(&b, "o").await;
    o.publish("p/q", QoS::AtLeastOnce, "x", 1).await;
    let mut ids = c.take().await.properties.unwrap().subscription_identifiers;
    ids.sort();
    assert_eq!(ids, vec![11, 22]);
}

#[tokio::test]
async fn expired_messages_are_not_delivered_and_the_rest_carry_the_remaining_interval() {
    let b = broker(BrokerConfig::default()).await;
    let (mut s, _) = Client::connect_opts(b.local_addr(), "s", persistent(60)).await;
    s.subscribe("e/#", QoS::AtLeastOnce).await;
    s.disconnect().await;
    let mut p = Client::open(&b, "p").await;
    let exp = |secs| {
        Some(PublishProperties {
            message_expiry_interval: Some(secs),
            ..Default::default()
        })
    };
    p.publish_props("e/short", QoS::AtLeastOnce, "short", 1, false, exp(1))
        .await;
    p.publish_props("e/long", QoS::AtLeastOnce, "long", 2, false, exp(100))
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (mut s, _) = Client::connect_opts(b.local_addr(), "s", persistent(60)).await;
    let m = s.take().await;
    assert_eq!(payload(&m), "long");
    let left = m.properties.unwrap().message_expiry_interval.unwrap();
    assert!((97..=99).contains(&left), "{left}");
    s.nothing_within(300).await;
    assert_eq!(b.metrics().dropped_expired, 1);
}

#[tokio::test]
async fn the_clients_receive_maximum_and_maximum_packet_size_are_respected() {
    let b = broker(BrokerConfig::default()).await;
    let (mut s, _) = Client::connect_opts(
        b.local_addr(),
        "small",
        Opts {
            receive_max: Some(2),
            max_packet: Some(200),
            ..clean()
        },
    )
    .await;
    s.subscribe("rm/#", QoS::AtLeastOnce).await;
    let mut p = Client::open(&b, "p").await;
    p.publish("rm/big", QoS::AtLeastOnce, &"x".repeat(500), 1)
        .await;
    for i in 0..4u16 {
        p.publish("rm/m", QoS::AtLeastOnce, &i.to_string(), 10 + i)
            .await;
    }
    // Two in flight, no more, until acknowledged; the 500-byte one was skipped.
    let a = s.next_publish().await;
    let b2 = s.next_publish().await;
    s.nothing_within(300).await;
    assert_eq!((payload(&a), payload(&b2)), ("0", "1"));
    s.ack(&a).await;
    s.ack(&b2).await;
    assert_eq!(payload(&s.take().await), "2");
    assert_eq!(payload(&s.take().await), "3");
    assert_eq!(b.metrics().dropped_too_large_for_client, 1);
}

#[tokio::test]
async fn exceeding_the_servers_receive_maximum_is_disconnect_0x93() {
    let b = broker(BrokerConfig {
        receive_max: 2,
        ..Default::default()
    })
    .await;
    let mut c = Client::open(&b, "greedy").await;
    // QoS 2 flows held open (no PUBREL): the third is one too many. The client keeps
    // sending (as a flooding device does), so the broker closes with unread bytes in its
    // buffer: the DISCONNECT must still reach the client, not be lost to a reset.
    let mut burst = BytesMut::new();
    for id in 1..=2000u16 {
        let mut p = Publish::new("x", QoS::ExactlyOnce, vec![b'x'; 200], None);
        p.pkid = id;
        Packet::Publish(p).write(&mut burst, None).unwrap();
    }
    let _ = c.s.write_all(&burst).await;
    assert!(matches!(c.recv().await, Some(Packet::PubRec(_))));
    assert!(matches!(c.recv().await, Some(Packet::PubRec(_))));
    c.expect_disconnect(DisconnectReasonCode::ReceiveMaximumExceeded)
        .await;
    assert_eq!(b.metrics().receive_max_exceeded, 1);
}

#[tokio::test]
async fn an_oversized_packet_is_disconnect_0x95_even_with_more_bytes_behind_it() {
    let b = broker(BrokerConfig {
        max_packet_size: 1024,
        ..Default::default()
    })
    .await;
    let mut c = Client::open(&b, "big").await;
    let mut out = BytesMut::new();
    for _ in 0..50 {
        Packet::Publish(Publish::new(
            "x",
            QoS::AtMostOnce,
            vec![0u8; 8 * 1024],
            None,
        ))
        .write(&mut out, None)
        .unwrap();
    }
    let _ = c.s.write_all(&out).await;
    c.expect_disconnect(DisconnectReasonCode::PacketTooLarge)
        .await;
    assert_eq!(b.metrics().packets_too_large, 1);
}

#[tokio::test]
async fn shared_subscriptions_give_each_message_to_one_member() {
    let b = broker(BrokerConfig::default()).await;
    let mut m1 = Client::open(&b, "m1").await;
    let mut m2 = Client::open(&b, "m2").await;
    for m in [&mut m1, &mut m2] {
        assert_eq!(
            m.subscribe("$share/g/sh/#", QoS::AtLeastOnce).await,
            SubscribeReasonCode::Success(QoS::AtLeastOnce)
        );
    }
    let mut p = Client::open(&b, "p").await;
    for i in 0..10u16 {
        p.publish("sh/x", QoS::AtLeastOnce, &i.to_string(), i + 1)
            .await;
    }
    let mut got = Vec::new();
    for c in [&mut m1, &mut m2] {
        while let Ok(Some(Packet::Publish(m))) = c.recv_within(Duration::from_millis(300)).await {
            c.ack(&m).await;
            got.push(payload(&m).parse::<u16>().unwrap());
        }
    }
    got.sort();
    assert_eq!(got, (0..10).collect::<Vec<_>>(), "each once, none twice");
}

#[tokio::test]
async fn invalid_filters_are_refused_and_dollar_topics_need_their_own_filter() {
    let b = broker(BrokerConfig {
        sys_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let mut c = Client::open(&b, "tool").await;
    let codes = c
        .subscribe_with(
            3,
            vec![
                Filter::new("a/#/b", QoS::AtMostOnce),
                Filter::new("$share/g", QoS::AtMostOnce),
                Filter::new("#", QoS::AtMostOnce),
            ],
            None,
        )
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::TopicFilterInvalid,
            SubscribeReasonCode::TopicFilterInvalid,
            SubscribeReasonCode::Success(QoS::AtMostOnce),
        ]
    );
    // `#` never sees $SYS; `$SYS/#` does.
    c.nothing_within(1500).await;
    c.subscribe("$SYS/broker/clients/connected", QoS::AtMostOnce)
        .await;
    let m = c.take().await;
    assert_eq!(payload(&m), "1");
    assert!(m.retain);
}

// ---------------------------------------------------------------------------------------
// Authentication and ACL.

fn secured(anonymous: bool) -> BrokerConfig {
    let hash = ward_broker::auth::hash_password("m1-secret").unwrap();
    let mut passwords = Passwords::default();
    passwords.insert("m1", hash.clone());
    passwords.insert("m2", hash);
    BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: AuthHook(Arc::new(FileAuth {
            allow_anonymous: anonymous,
            passwords,
            acl: Acl::default(),
        })),
        ..Default::default()
    }
}

#[tokio::test]
async fn anonymous_and_wrong_passwords_are_refused_with_reason_codes() {
    let b = ward_broker::start(secured(false)).await.unwrap();
    let (_c, ack) = Client::connect_opts(b.local_addr(), "anon", clean()).await;
    assert_eq!(ack.code, ConnectReturnCode::NotAuthorized);
    let (_c, ack) = Client::connect_opts(
        b.local_addr(),
        "m1",
        Opts {
            login: Some(("m1", "wrong")),
            ..clean()
        },
    )
    .await;
    assert_eq!(ack.code, ConnectReturnCode::BadUserNamePassword);
    let (_c, ack) = Client::connect_opts(
        b.local_addr(),
        "m1",
        Opts {
            login: Some(("m1", "m1-secret")),
            ..clean()
        },
    )
    .await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert_eq!(b.metrics().auth_failures, 2);
}

#[tokio::test]
async fn a_device_cannot_publish_or_subscribe_outside_its_own_prefix() {
    let b = ward_broker::start(secured(false)).await.unwrap();
    let mut rx = b.subscribe_local("ward/#", 16).unwrap();
    let (mut m1, _) = Client::connect_opts(
        b.local_addr(),
        "any-client-id",
        Opts {
            login: Some(("m1", "m1-secret")),
            ..clean()
        },
    )
    .await;
    // Own prefix: delivered.
    m1.publish("ward/v1/dev/m1/vitals", QoS::AtLeastOnce, "ok", 1)
        .await;
    // Another device's prefix: QoS 1 PUBACK 0x87, QoS 2 PUBREC 0x87, QoS 0 dropped.
    let mut p = Publish::new("ward/v1/dev/m2/vitals", QoS::AtLeastOnce, "forged", None);
    p.pkid = 2;
    m1.send(Packet::Publish(p)).await;
    match m1.recv().await {
        Some(Packet::PubAck(a)) => {
            assert_eq!(
                a.reason,
                rumqttc::v5::mqttbytes::v5::PubAckReason::NotAuthorized
            )
        }
        other => panic!("expected PUBACK 0x87, got {other:?}"),
    }
    let mut p = Publish::new("ward/v1/dev/m2/alarm", QoS::ExactlyOnce, "forged", None);
    p.pkid = 3;
    m1.send(Packet::Publish(p)).await;
    match m1.recv().await {
        Some(Packet::PubRec(a)) => {
            assert_eq!(
                a.reason,
                rumqttc::v5::mqttbytes::v5::PubRecReason::NotAuthorized
            )
        }
        other => panic!("expected PUBREC 0x87, got {other:?}"),
    }
    m1.publish("ward/v1/dev/m2/wave/ecg", QoS::AtMostOnce, "forged", 0)
        .await;
    let codes = m1
        .subscribe_with(
            4,
            vec![
                Filter::new("ward/v1/dev/m1/cmd", QoS::AtLeastOnce),
                Filter::new("ward/v1/dev/+/vitals", QoS::AtLeastOnce),
                Filter::new("#", QoS::AtLeastOnce),
            ],
            None,
        )
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::NotAuthorized,
            SubscribeReasonCode::NotAuthorized,
        ]
    );
    let got = rx.recv().await.unwrap();
    assert_eq!(&*got.topic, "ward/v1/dev/m1/vitals");
    assert!(rx.try_recv().is_err(), "nothing forged reached the station");
    let m = b.metrics();
    assert_eq!((m.acl_denied_publish, m.acl_denied_subscribe), (3, 2));
}

/// MQTT 3.1.1 has no refusal code: a denied publish is acknowledged (PUBACK; PUBREC, then
/// PUBCOMP after the client's PUBREL) and dropped, as Mosquitto does. Checked with rumqttc's
/// own 3.1.1 client.
#[tokio::test]
async fn a_3_1_1_device_outside_its_prefix_is_acknowledged_but_nothing_is_delivered() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet as P4, QoS as Q4};
    let b = ward_broker::start(secured(false)).await.unwrap();
    let mut rx = b.subscribe_local("ward/#", 16).unwrap();
    let addr = b.local_addr();
    let mut o = MqttOptions::new("m1-v4", addr.ip().to_string(), addr.port());
    o.set_credentials("m1", "m1-secret");
    let (c, mut ev) = AsyncClient::new(o, 8);
    c.publish("ward/v1/dev/m2/vitals", Q4::AtLeastOnce, false, "forged")
        .await
        .unwrap();
    c.publish("ward/v1/dev/m2/alarm", Q4::ExactlyOnce, false, "forged")
        .await
        .unwrap();
    c.publish("ward/v1/dev/m1/vitals", Q4::AtLeastOnce, false, "ok")
        .await
        .unwrap();
    let (mut acks, mut comps) = (0, 0);
    while acks < 2 || comps < 1 {
        match tokio::time::timeout(Duration::from_secs(10), ev.poll())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Incoming(P4::PubAck(_)) => acks += 1,
            Event::Incoming(P4::PubComp(_)) => comps += 1,
            _ => {}
        }
    }
    let got = rx.recv().await.unwrap();
    assert_eq!(&*got.topic, "ward/v1/dev/m1/vitals");
    assert!(rx.try_recv().is_err(), "nothing forged reached the station");
    assert_eq!(b.metrics().acl_denied_publish, 2);
}

#[tokio::test]
async fn a_will_outside_the_devices_prefix_refuses_the_connection() {
    let b = ward_broker::start(secured(false)).await.unwrap();
    let (_c, ack) = Client::connect_opts(
        b.local_addr(),
        "m1",
        Opts {
            login: Some(("m1", "m1-secret")),
            will: Some(will("ward/v1/dev/m2/status", None)),
            ..clean()
        },
    )
    .await;
    assert_eq!(ack.code, ConnectReturnCode::NotAuthorized);
}

// ---------------------------------------------------------------------------------------
// 3.1.1 with rumqttc's own client.

#[tokio::test]
async fn mqtt_3_1_1_persistent_session_and_qos2_with_rumqttc() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet as P4, QoS as Q4};
    let b = broker(BrokerConfig::default()).await;
    let addr = b.local_addr();
    let opts = |id: &str, clean: bool| {
        let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        o.set_clean_session(clean);
        o.set_keep_alive(Duration::from_secs(30));
        o
    };
    // Subscribe with a persistent session, then go away.
    let (sub, mut ev) = AsyncClient::new(opts("v4-sub", false), 16);
    sub.subscribe("v4/#", Q4::ExactlyOnce).await.unwrap();
    loop {
        if let Event::Incoming(P4::SubAck(_)) = ev.poll().await.unwrap() {
            break;
        }
    }
    sub.disconnect().await.unwrap();
    while ev.poll().await.is_ok() {}
    let (publ, mut pev) = AsyncClient::new(opts("v4-pub", true), 16);
    for i in 0..5 {
        publ.publish("v4/x", Q4::ExactlyOnce, false, format!("m{i}"))
            .await
            .unwrap();
    }
    let mut comps = 0;
    while comps < 5 {
        if let Event::Incoming(P4::PubComp(_)) = pev.poll().await.unwrap() {
            comps += 1;
        }
    }
    let (_sub, mut ev) = AsyncClient::new(opts("v4-sub", false), 16);
    let mut got = Vec::new();
    while got.len() < 5 {
        match tokio::time::timeout(Duration::from_secs(10), ev.poll())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Incoming(P4::ConnAck(a)) => assert!(a.session_present),
            Event::Incoming(P4::Publish(p)) => {
                assert_eq!(p.qos, Q4::ExactlyOnce);
                got.push(String::from_utf8(p.payload.to_vec()).unwrap());
            }
            _ => {}
        }
    }
    assert_eq!(got, vec!["m0", "m1", "m2", "m3", "m4"]);
}

// ---------------------------------------------------------------------------------------
// Durability across a restart from the same store (the kill -9 drill runs the real station
// process: tests/system/broker.rs).

#[tokio::test]
async fn sessions_queued_messages_inbound_qos2_and_retained_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BrokerConfig {
        store: Some(dir.path().join("broker.sqlite")),
        ..Default::default()
    };
    let b = broker(cfg.clone()).await;
    let (mut s, _) = Client::connect_opts(b.local_addr(), "keeper", persistent(3600)).await;
    s.subscribe("d/#", QoS::ExactlyOnce).await;
    s.disconnect().await;
    let (mut p, _) = Client::connect_opts(b.local_addr(), "pub", persistent(3600)).await;
    p.publish("d/1", QoS::AtLeastOnce, "one", 1).await;
    p.publish("d/2", QoS::ExactlyOnce, "two", 2).await;
    p.publish_props("d/r", QoS::AtLeastOnce, "kept", 3, true, None)
        .await;
    // A QoS 2 flow left open at PUBREC.
    let mut open = Publish::new("d/3", QoS::ExactlyOnce, "three", None);
    open.pkid = 9;
    p.send(Packet::Publish(open.clone())).await;
    assert!(matches!(p.recv().await, Some(Packet::PubRec(_))));
    drop(p);
    b.shutdown().await;

    let b = broker(cfg).await;
    let m = b.metrics();
    assert_eq!(
        (
            m.sessions_persistent,
            m.queued_messages,
            m.retained_messages
        ),
        (2, 4, 1)
    );
    // The publisher resends its open flow with DUP: acknowledged, not delivered again.
    let (mut p, ack) = Client::connect_opts(b.local_addr(), "pub", persistent(3600)).await;
    assert!(ack.session_present);
    open.dup = true;
    p.send(Packet::Publish(open)).await;
    assert!(matches!(p.recv().await, Some(Packet::PubRec(_))));
    p.send(Packet::PubRel(PubRel::new(9, None))).await;
    assert!(matches!(p.recv().await, Some(Packet::PubComp(_))));
    let (mut s, ack) = Client::connect_opts(b.local_addr(), "keeper", persistent(3600)).await;
    assert!(ack.session_present);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(payload(&s.take().await).to_string());
    }
    assert_eq!(got, vec!["one", "two", "kept", "three"]);
    s.nothing_within(300).await;
    let mut fresh = Client::open(&b, "fresh").await;
    fresh.subscribe("d/r", QoS::AtLeastOnce).await;
    assert_eq!(payload(&fresh.take().await), "kept");
}

#[tokio::test]
async fn without_a_store_a_full_session_queue_refuses_qos1_before_acknowledging() {
    let b = broker(BrokerConfig {
        max_queued_messages: 3,
        ..Default::default()
    })
    .await;
    let (mut away, _) = Client::connect_opts(b.local_addr(), "away", persistent(60)).await;
    away.subscribe("f/#", QoS::AtLeastOnce).await;
    away.disconnect().await;
    let mut here = Client::open(&b, "here").await;
    here.subscribe("f/#", QoS::AtLeastOnce).await;
    let mut p = Client::open(&b, "p").await;
    let mut codes = Vec::new();
    for i in 0..5u16 {
        let mut m = Publish::new("f/x", QoS::AtLeastOnce, i.to_string(), None);
        m.pkid = i + 1;
        p.send(Packet::Publish(m)).await;
        match p.recv().await {
            Some(Packet::PubAck(a)) if a.pkid == i + 1 => codes.push(a.reason),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    use rumqttc::v5::mqttbytes::v5::PubAckReason::{QuotaExceeded, Success};
    assert_eq!(
        codes,
        vec![Success, Success, Success, QuotaExceeded, QuotaExceeded],
        "the away session's queue holds 3; the rest are refused before PUBACK, not dropped after"
    );
    // A refused message goes nowhere, so the publisher's resend cannot make a duplicate.
    for i in 0..3 {
        assert_eq!(payload(&here.take().await), i.to_string());
    }
    here.nothing_within(300).await;
    // QoS 0 is never refused: it is dropped for a full session (counted) and still delivered
    // to the others.
    p.publish("f/x", QoS::AtMostOnce, "q0", 0).await;
    assert_eq!(payload(&here.take().await), "q0");
    let m = b.metrics();
    assert_eq!(
        (m.refused_quota, m.dropped_queue_full, m.queued_messages),
        (2, 0, 3)
    );
}

#[tokio::test]
async fn the_message_rate_limit_slows_a_flooding_client_without_dropping() {
    let b = broker(BrokerConfig {
        max_msg_rate: 20,
        ..Default::default()
    })
    .await;
    let mut rx = b.subscribe_local("r/#", 1000).unwrap();
    let mut c = Client::open(&b, "flood").await;
    for i in 1..=60u16 {
        c.publish("r/x", QoS::AtLeastOnce, "x", i).await;
    }
    for _ in 0..60 {
        rx.recv().await.unwrap();
    }
    assert!(b.metrics().rate_limited >= 1);
    assert_eq!(b.metrics().messages_dropped, 0);
}

/// A dashboard on `ward/v1/#` beside `deny ward/v1/dev/mon-07/alarm` is granted (as by
/// Mosquitto) and gets the rest of the ward; the denied topic is checked out per message,
/// live and retained, and after a restart from the store.
#[tokio::test]
async fn a_wildcard_overlapping_a_denied_topic_is_granted_and_the_denied_topic_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let hash = ward_broker::auth::hash_password("secret-pw").unwrap();
    let mut passwords = Passwords::default();
    passwords.insert("mon-07", hash.clone());
    passwords.insert("dash", hash);
    let acl = Acl::parse(
        "user mon-07\ntopic write ward/v1/dev/mon-07/#\nuser dash\ntopic readwrite #\ntopic deny ward/v1/dev/mon-07/alarm\n",
        "acl",
    )
    .unwrap();
    let cfg = || BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        store: Some(dir.path().join("b.sqlite")),
        auth: AuthHook(Arc::new(FileAuth {
            allow_anonymous: false,
            passwords: passwords.clone(),
            acl: acl.clone(),
        })),
        ..Default::default()
    };
    let login = |u: &'static str| Opts {
        login: Some((u, "secret-pw")),
        ..persistent(600)
    };
    let b = ward_broker::start(cfg()).await.unwrap();
    let (mut mon, _) = Client::connect_opts(b.local_addr(), "mon-07", login("mon-07")).await;
    // Retained on the denied topic before the dashboard subscribes: not sent to it either.
    mon.publish_props(
        "ward/v1/dev/mon-07/alarm",
        QoS::AtLeastOnce,
        "kept-alarm",
        1,
        true,
        None,
    )
    .await;
    let (mut dash, ack) = Client::connect_opts(b.local_addr(), "dash", login("dash")).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    let codes = dash
        .subscribe_with(
            2,
            vec![
                Filter::new("ward/v1/#", QoS::AtLeastOnce),
                Filter::new("ward/v1/dev/mon-07/alarm", QoS::AtLeastOnce),
            ],
            None,
        )
        .await;
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(QoS::AtLeastOnce),
            SubscribeReasonCode::NotAuthorized,
        ],
        "the overlapping wildcard is granted; the denied topic itself is refused"
    );
    mon.publish("ward/v1/dev/mon-07/alarm", QoS::AtLeastOnce, "alarm", 2)
        .await;
    mon.publish("ward/v1/dev/mon-07/vitals", QoS::AtLeastOnce, "vitals", 3)
        .await;
    assert_eq!(payload(&dash.take().await), "vitals");
    dash.nothing_within(300).await;
    dash.disconnect().await;
    mon.disconnect().await;
    b.shutdown().await;

    // After a restart the session's subscription is restored with the dashboard's identity
    // and the same check, before the dashboard is back.
    let b = ward_broker::start(cfg()).await.unwrap();
    let (mut mon, _) = Client::connect_opts(b.local_addr(), "mon-07", login("mon-07")).await;
    mon.publish("ward/v1/dev/mon-07/alarm", QoS::AtLeastOnce, "alarm-2", 4)
        .await;
    mon.publish("ward/v1/dev/mon-07/vitals", QoS::AtLeastOnce, "vitals-2", 5)
        .await;
    let (mut dash, ack) = Client::connect_opts(b.local_addr(), "dash", login("dash")).await;
    assert!(ack.session_present);
    assert_eq!(payload(&dash.take().await), "vitals-2");
    dash.nothing_within(300).await;
    b.shutdown().await;
}

/// The ACL changes while the station is down: a restored session's subscription is checked
/// against the new rules before its client is back (the newly denied topic is not queued for
/// it), and a filter no longer allowed at all is dropped.
#[tokio::test]
async fn restored_subscriptions_follow_an_acl_changed_while_the_station_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |acl: &str| BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        store: Some(dir.path().join("b.sqlite")),
        auth: AuthHook(Arc::new(FileAuth {
            allow_anonymous: true,
            passwords: Passwords::default(),
            acl: Acl::parse(acl, "acl").unwrap(),
        })),
        ..Default::default()
    };
    let b = ward_broker::start(cfg("topic readwrite #\n"))
        .await
        .unwrap();
    let (mut dash, _) = Client::connect_opts(b.local_addr(), "dash", persistent(600)).await;
    dash.subscribe("ward/#", QoS::AtLeastOnce).await;
    dash.subscribe_with(2, vec![Filter::new("lab/#", QoS::AtLeastOnce)], None)
        .await;
    dash.disconnect().await;
    b.shutdown().await;

    let b = ward_broker::start(cfg(
        "topic readwrite ward/#\ntopic deny ward/secret\ntopic write lab/#\n",
    ))
    .await
    .unwrap();
    let mut p = Client::open(&b, "p").await;
    p.publish("ward/secret", QoS::AtLeastOnce, "secret", 1)
        .await;
    p.publish("lab/x", QoS::AtLeastOnce, "lab", 2).await;
    p.publish("ward/ok", QoS::AtLeastOnce, "ok", 3).await;
    let (mut dash, ack) = Client::connect_opts(b.local_addr(), "dash", persistent(600)).await;
    assert!(ack.session_present);
    assert_eq!(payload(&dash.take().await), "ok");
    dash.nothing_within(300).await;
    b.shutdown().await;
}
