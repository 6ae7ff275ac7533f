//! The broker over real TCP, with packets written by rumqttc's MQTT 5 codec acting as a
//! client: every behaviour the crate docs promise has a test here.
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, Connect, DisconnectReasonCode, Filter, Packet, PubRel, Publish, Subscribe,
    SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use ward_broker::{BrokerConfig, BrokerHandle};

async fn broker(cfg: BrokerConfig) -> BrokerHandle {
    ward_broker::start(BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..cfg
    })
    .await
    .unwrap()
}

struct Client {
    s: TcpStream,
    buf: BytesMut,
}

impl Client {
    async fn connect(b: &BrokerHandle, id: &str, keep_alive: u16) -> (Self, ConnAck) {
        let mut c = Client {
            s: TcpStream::connect(b.local_addr()).await.unwrap(),
            buf: BytesMut::new(),
        };
        let connect = Connect {
            keep_alive,
            client_id: id.into(),
            clean_start: true,
            properties: None,
        };
        c.send(Packet::Connect(connect, None, None)).await;
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
        loop {
            if !self.buf.is_empty() {
                match Packet::read(&mut self.buf, None) {
                    Ok(p) => return Some(p),
                    Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => panic!("broker sent an unreadable packet: {e}"),
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.s.read_buf(&mut self.buf))
                .await
                .expect("broker answered within 10 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
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

/// Asserts the broker closes `s` without sending anything.
async fn assert_closed_silently(mut s: TcpStream) {
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
        .await
        .expect("closed within 10 s");
    assert_eq!(read.unwrap_or(0), 0, "nothing sent before closing");
}

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
    assert_eq!(
        ack.code,
        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success
    );
    // Silent past 1.5 x the 1 s keep-alive.
    c.expect_disconnect(DisconnectReasonCode::KeepAliveTimeout)
        .await;
    assert_eq!(b.metrics().keepalive_timeouts, 1);
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
async fn inbound_qos2_is_delivered_exactly_once_even_when_retransmitted() {
    let b = broker(BrokerConfig::default()).await;
    let mut rx = b.subscribe_local("ward/#", 16).unwrap();
    let (mut c, _) = Client::connect(&b, "mon-1", 30).await;
    let mut p = Publish::new("ward/x", QoS::ExactlyOnce, "one", None);
    p.pkid = 7;
    c.send(Packet::Publish(p.clone())).await;
    assert!(matches!(c.recv().await, Some(Packet::PubRec(r)) if r.pkid == 7));
    p.dup = true;
    c.send(Packet::Publish(p)).await;
    assert!(matches!(c.recv().await, Some(Packet::PubRec(r)) if r.pkid == 7));
    c.send(Packet::PubRel(PubRel::new(7, None))).await;
    assert!(matches!(c.recv().await, Some(Packet::PubComp(r)) if r.pkid == 7));
    let mut q = Publish::new("ward/x", QoS::ExactlyOnce, "two", None);
    q.pkid = 8;
    c.send(Packet::Publish(q)).await;
    assert!(matches!(c.recv().await, Some(Packet::PubRec(r)) if r.pkid == 8));

    let first = rx.recv().await.unwrap();
    let second = rx.recv().await.unwrap();
    assert_eq!(
        (&first.payload[..], &second.payload[..]),
        (&b"one"[..], &b"two"[..])
    );
    assert!(
        rx.try_recv().is_err(),
        "the retransmission was not delivered again"
    );
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
async fn invalid_and_shared_filters_are_refused_and_qos2_is_granted_as_1() {
    let b = broker(BrokerConfig::default()).await;
    let (mut c, _) = Client::connect(&b, "tool", 30).await;
    let filters = vec![
        Filter::new("a/#/b", QoS::AtMostOnce),
        Filter::new("$share/g/a", QoS::AtMostOnce),
        Filter::new("a/+", QoS::ExactlyOnce),
    ];
    let mut sub = Subscribe::new_many(filters, None);
    sub.pkid = 3;
    c.send(Packet::Subscribe(sub)).await;
    match c.recv().await {
        Some(Packet::SubAck(a)) => assert_eq!(
            a.return_codes,
            vec![
                SubscribeReasonCode::TopicFilterInvalid,
                SubscribeReasonCode::TopicFilterInvalid,
                SubscribeReasonCode::Success(QoS::AtLeastOnce),
            ]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[tokio::test]
async fn a_topic_alias_is_a_protocol_error_because_none_is_advertised() {
    let b = broker(BrokerConfig::default()).await;
    let (mut c, ack) = Client::connect(&b, "mon-1", 30).await;
    assert_eq!(ack.properties.and_then(|p| p.topic_alias_max), Some(0));
    let props = rumqttc::v5::mqttbytes::v5::PublishProperties {
        topic_alias: Some(1),
        ..Default::default()
    };
    c.send(Packet::Publish(Publish::new(
        "ward/x",
        QoS::AtMostOnce,
        "x",
        Some(props),
    )))
    .await;
    c.expect_disconnect(DisconnectReasonCode::TopicAliasInvalid)
        .await;
    assert_eq!(b.metrics().protocol_errors, 1);
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
