//! Overload over real TCP with rumqttc's MQTT 5 client: four unpaced publishers, a
//! subscriber that stops reading, and the station's in-process subscription beside it.
//! Nothing the broker acknowledged may be lost for the stalled subscriber, each publisher's
//! messages arrive in order, and the station's subscription never waits for the stalled one.
#![allow(clippy::unwrap_used)]

use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason, PubRecReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::Outgoing;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use ward_broker::{Acl, AuthHook, BrokerConfig, BrokerHandle, FileAuth, Passwords};

const PUBLISHERS: usize = 4;

async fn broker(cfg: BrokerConfig) -> BrokerHandle {
    ward_broker::start(BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: AuthHook(Arc::new(FileAuth {
            allow_anonymous: true,
            passwords: Passwords::default(),
            acl: Acl::parse("pattern readwrite #", "test").unwrap(),
        })),
        sys_interval: Duration::ZERO,
        ..cfg
    })
    .await
    .unwrap()
}

fn opts(a: SocketAddr, id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, a.ip().to_string(), a.port());
    o.set_keep_alive(Duration::from_secs(60));
    o
}

fn qos(q: u8) -> QoS {
    if q == 1 {
        QoS::AtLeastOnce
    } else {
        QoS::ExactlyOnce
    }
}

/// Polls until the SUBACK, then leaves the event loop unpolled: rumqttc reads nothing more,
/// the socket buffers fill and the broker can no longer write to it.
async fn stalled_subscriber(b: &BrokerHandle, q: u8) -> EventLoop {
    let (c, mut ev) = AsyncClient::new(opts(b.local_addr(), "stalled-dashboard"), 100);
    c.subscribe("ov/#", qos(q)).await.unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = ev.poll().await.unwrap() {
            break;
        }
    }
    // The client handle may go; the event loop keeps the connection.
    std::mem::forget(c);
    ev
}

/// One publisher sending `n` messages as fast as its window allows; returns the indices the
/// broker acknowledged (PUBACK, or PUBREC then PUBCOMP, with success) and how many it refused.
async fn publish_unpaced(a: SocketAddr, p: usize, n: usize, q: u8) -> (Vec<usize>, usize) {
    let (c, mut ev) = AsyncClient::new(opts(a, &format!("monitor-{p}")), 1000);
    let sender = tokio::spawn(async move {
        for i in 0..n {
            c.publish(format!("ov/{p}"), qos(q), false, format!("{p}:{i}"))
                .await
                .unwrap();
        }
        c
    });
    // rumqttc sends in request order and reports each packet id as it goes out.
    let (mut sent, mut by_pkid) = (0, HashMap::new());
    let (mut acked, mut refused) = (Vec::new(), 0);
    while acked.len() + refused < n {
        match ev.poll().await.unwrap() {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                by_pkid.insert(pkid, sent);
                sent += 1;
            }
            Event::Incoming(Packet::PubAck(a)) if a.reason == PubAckReason::Success => {
                acked.push(by_pkid[&a.pkid])
            }
            Event::Incoming(Packet::PubAck(_)) => refused += 1,
            Event::Incoming(Packet::PubRec(r)) if r.reason != PubRecReason::Success => refused += 1,
            Event::Incoming(Packet::PubComp(c)) => acked.push(by_pkid[&c.pkid]),
            _ => {}
        }
    }
    let c = sender.await.unwrap();
    let _ = c.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while ev.poll().await.is_ok() {}
    })
    .await;
    acked.sort_unstable();
    (acked, refused)
}

/// Reads the stalled subscriber until `want` messages arrived; returns them by publisher.
async fn drain(b: &BrokerHandle, mut ev: EventLoop, want: usize) -> HashMap<usize, Vec<usize>> {
    let mut got: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut n = 0;
    while n < want {
        let e = tokio::time::timeout(Duration::from_secs(30), ev.poll())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "stalled subscriber got {n} of {want}, then nothing: {:?}",
                    b.metrics()
                )
            })
            .unwrap();
        if let Event::Incoming(Packet::Publish(m)) = e {
            let text = std::str::from_utf8(&m.payload).unwrap();
            let (p, i) = text.split_once(':').unwrap();
            got.entry(p.parse().unwrap())
                .or_default()
                .push(i.parse().unwrap());
            n += 1;
        }
    }
    // Nothing more (no duplicates) arrives.
    if let Ok(Ok(Event::Incoming(Packet::Publish(m)))) =
        tokio::time::timeout(Duration::from_millis(500), ev.poll()).await
    {
        panic!("a message beyond the {want} acknowledged: {m:?}");
    }
    got
}

async fn overload(q: u8) {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(BrokerConfig {
        store: Some(dir.path().join("broker.sqlite")),
        // A small in-memory queue, so most of the backlog spills to the store.
        max_queued_messages: 200,
        ..Default::default()
    })
    .await;
    let per = 2_500;
    let total = per * PUBLISHERS;
    let mut station = b.subscribe_local("ov/#", 64).unwrap();
    let stalled = stalled_subscriber(&b, q).await;

    // The station reads its subscription as it always does, while the dashboard is stalled.
    let station_reader = tokio::spawn(async move {
        let mut n = 0;
        while n < total {
            station.recv().await.unwrap();
            n += 1;
        }
        n
    });
    let pubs: Vec<_> = (0..PUBLISHERS)
        .map(|p| tokio::spawn(publish_unpaced(b.local_addr(), p, per, q)))
        .collect();
    for p in pubs {
        let (a, r) = p.await.unwrap();
        assert_eq!(
            (a.len(), r),
            (per, 0),
            "all acknowledged below the spill budget"
        );
    }
    // Every message reached the station while the dashboard had read none of them: none of
    // the station's waited behind the stalled subscriber.
    let station_got = tokio::time::timeout(Duration::from_secs(30), station_reader)
        .await
        .expect("the station's subscription kept up while the dashboard was stalled")
        .unwrap();
    assert_eq!(station_got, total);
    let m = b.metrics();
    assert!(m.messages_spilled > 0, "the backlog spilled: {m:?}");
    assert_eq!(m.messages_dropped, 0, "{m:?}");

    let got = drain(&b, stalled, total).await;
    for p in 0..PUBLISHERS {
        assert_eq!(
            got.get(&p).cloned().unwrap_or_default(),
            (0..per).collect::<Vec<_>>(),
            "publisher {p}: every acknowledged message, once, in order"
        );
    }
    let m = b.metrics();
    assert_eq!((m.messages_dropped, m.spill_read_failures), (0, 0), "{m:?}");
    assert_eq!(m.spilled_messages, 0, "the spill is drained");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_overload_with_a_stalled_subscriber_loses_nothing_acknowledged() {
    overload(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_overload_with_a_stalled_subscriber_loses_nothing_acknowledged() {
    overload(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spill_budget_refuses_with_0x97_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(BrokerConfig {
        store: Some(dir.path().join("broker.sqlite")),
        max_queued_messages: 20,
        // About 150 of the 8-byte payloads may wait on disk for the stalled subscriber.
        max_spilled_bytes: 1200,
        ..Default::default()
    })
    .await;
    let stalled = stalled_subscriber(&b, 1).await;
    let per = 500;
    let pubs: Vec<_> = (0..2)
        .map(|p| tokio::spawn(publish_unpaced(b.local_addr(), p, per, 1)))
        .collect();
    let mut acked = HashMap::new();
    let mut refused = 0;
    for (p, h) in pubs.into_iter().enumerate() {
        let (a, r) = h.await.unwrap();
        refused += r;
        acked.insert(p, a);
    }
    let m = b.metrics();
    assert!(refused > 0, "the budget was reached: {m:?}");
    assert_eq!(m.refused_quota as usize, refused);
    let n_acked: usize = acked.values().map(Vec::len).sum();
    let got = drain(&b, stalled, n_acked).await;
    for (p, want) in acked {
        assert_eq!(
            got.get(&p).cloned().unwrap_or_default(),
            want,
            "publisher {p}: exactly the acknowledged messages, in order"
        );
    }
    assert_eq!(b.metrics().messages_dropped, 0);
    b.shutdown().await;
}
