//! MQTT over WebSockets at the frame level, with tokio-tungstenite as the client: the
//! subprotocol answer, packets split across frames and several in one frame, and a text
//! frame refused. (MQTT.js over ws and wss, with the ACL, is in tests/system/broker.rs.)
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use rumqttc::v5::mqttbytes::v5::{Connect, ConnectReturnCode, Packet, PingReq};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Frame;
use ward_broker::{Acl, AuthHook, BrokerConfig, BrokerHandle, FileAuth, Passwords};

async fn broker() -> BrokerHandle {
    ward_broker::start(BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ws_listen: Some("127.0.0.1:0".parse().unwrap()),
        auth: AuthHook(Arc::new(FileAuth {
            allow_anonymous: true,
            passwords: Passwords::default(),
            acl: Acl::parse("pattern readwrite #", "test").unwrap(),
        })),
        sys_interval: Duration::ZERO,
        ..Default::default()
    })
    .await
    .unwrap()
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn open(b: &BrokerHandle) -> (Ws, Option<String>) {
    let addr = b.ws_addr().unwrap();
    let mut req = format!("ws://{addr}/mqtt").into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    let proto = resp
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_string());
    (ws, proto)
}

fn bytes(packets: &[Packet]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for p in packets {
        p.write(&mut out, None).unwrap();
    }
    out.to_vec()
}

/// Packets from the broker's binary frames, joined.
async fn read_packets(ws: &mut Ws, want: usize) -> Vec<Packet> {
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    while got.len() < want {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the connection open")
            .unwrap();
        if let Frame::Binary(b) = frame {
            buf.extend_from_slice(&b);
            while let Ok(p) = Packet::read(&mut buf, None) {
                got.push(p);
            }
        }
    }
    got
}

#[tokio::test]
async fn mqtt_subprotocol_and_packets_split_across_and_packed_into_frames() {
    let b = broker().await;
    let (mut ws, proto) = open(&b).await;
    assert_eq!(proto.as_deref(), Some("mqtt"));
    let connect = bytes(&[Packet::Connect(
        Connect {
            keep_alive: 30,
            client_id: "ws-1".into(),
            clean_start: true,
            properties: None,
        },
        None,
        None,
    )]);
    // CONNECT split over two frames, then two PINGREQs in one frame.
    let (a, rest) = connect.split_at(5);
    ws.send(Frame::Binary(a.to_vec().into())).await.unwrap();
    ws.send(Frame::Binary(rest.to_vec().into())).await.unwrap();
    let pings = bytes(&[Packet::PingReq(PingReq), Packet::PingReq(PingReq)]);
    ws.send(Frame::Binary(pings.into())).await.unwrap();
    let got = read_packets(&mut ws, 3).await;
    assert!(matches!(&got[0], Packet::ConnAck(c) if c.code == ConnectReturnCode::Success));
    assert!(matches!(
        got[1..],
        [Packet::PingResp(_), Packet::PingResp(_)]
    ));
    b.shutdown().await;
}

#[tokio::test]
async fn a_text_frame_ends_the_connection_and_is_counted() {
    let b = broker().await;
    let (mut ws, _) = open(&b).await;
    ws.send(Frame::Text("CONNECT".into())).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(f)) = ws.next().await {
            if f.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the broker closed the WebSocket");
    assert_eq!(b.metrics().malformed_packets, 1);
    b.shutdown().await;
}
