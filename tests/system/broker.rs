use crate::support::*;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_subscriber_gets_what_mosquitto_pub_v5_publishes_through_a_wildcard() {
    let dir = tempfile::tempdir().unwrap();
    let st = ward_core::Station::start(config(dir.path(), 0))
        .await
        .unwrap();
    let addr = st.broker_addr();

    let mut opts = MqttOptions::new("watcher", addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(opts, 16);
    client
        .subscribe("ward/v1/dev/+/vitals", QoS::AtLeastOnce)
        .await
        .unwrap();
    // Wait for the SUBACK so the publish below cannot race the subscription.
    loop {
        if let Event::Incoming(Packet::SubAck(ack)) = events.poll().await.unwrap() {
            assert_eq!(
                ack.return_codes,
                vec![rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce)]
            );
            break;
        }
    }
    let payload = vitals_json(147_842, 90.0, 264_864);
    let out = tokio::task::spawn_blocking({
        let payload = payload.clone();
        move || {
            mosquitto_pub(
                addr,
                &[
                    "-V",
                    "mqttv5",
                    "-q",
                    "1",
                    "-t",
                    "ward/v1/dev/mon-9/vitals",
                    "-m",
                    &payload,
                ],
            )
        }
    })
    .await
    .unwrap();
    assert!(out.status.success());
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::Publish(p)) = events.poll().await.unwrap() {
                return p;
            }
        }
    })
    .await
    .expect("delivery through the broker");
    assert_eq!(got.topic, "ward/v1/dev/mon-9/vitals");
    assert_eq!(got.payload, payload.as_bytes());
    assert_eq!(got.qos, QoS::AtLeastOnce);
    st.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_sub_v5_receives_from_a_rumqttc_publisher_and_non_matching_topics_stay_out() {
    let dir = tempfile::tempdir().unwrap();
    let st = ward_core::Station::start(config(dir.path(), 0))
        .await
        .unwrap();
    let addr = st.broker_addr();
    let sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &addr.port().to_string(),
            "-V",
            "mqttv5",
            "-v",
            "-C",
            "1",
            "-W",
            "20",
        ])
        .args(["-t", "ward/v1/dev/mon-1/#"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (client, mut events) = AsyncClient::new(
        MqttOptions::new("pub-1", addr.ip().to_string(), addr.port()),
        16,
    );
    let io = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    // mosquitto_sub's subscription time is not observable from here, so publish the pair
    // (non-matching first) until it has taken its one message and exited.
    let waiter = tokio::task::spawn_blocking(move || sub.wait_with_output());
    while !waiter.is_finished() {
        client
            .publish(
                "ward/v1/dev/mon-2/hb",
                QoS::AtLeastOnce,
                false,
                r#"{"seq":1}"#,
            )
            .await
            .unwrap();
        client
            .publish(
                "ward/v1/dev/mon-1/hb",
                QoS::AtLeastOnce,
                false,
                r#"{"seq":2}"#,
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = waiter.await.unwrap().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"ward/v1/dev/mon-1/hb {"seq":2}"#
    );
    io.abort();
    st.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_that_drops_off_is_marked_offline_by_its_last_will() {
    let dir = tempfile::tempdir().unwrap();
    let st = ward_core::Station::start(config(dir.path(), 0))
        .await
        .unwrap();
    let addr = st.broker_addr();
    let mut opts = MqttOptions::new("sim-05", addr.ip().to_string(), addr.port());
    opts.set_last_will(LastWill::new(
        "ward/v1/dev/sim-05/status",
        r#"{"state":"offline"}"#,
        QoS::AtLeastOnce,
        true,
    ));
    let (client, mut events) = AsyncClient::new(opts, 16);
    let io = tokio::spawn(async move { while events.poll().await.is_ok() {} });
    client
        .publish(
            "ward/v1/dev/sim-05/status",
            QoS::AtLeastOnce,
            true,
            r#"{"state":"online"}"#,
        )
        .await
        .unwrap();
    let bed5 = |st: &ward_core::StationHandle| st.snapshot().beds[4].connection;
    for _ in 0..200 {
        if bed5(&st) == ward_core::Connection::Online {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(bed5(&st), ward_core::Connection::Online);
    // Dropping the event loop closes the socket without DISCONNECT, as a crashed monitor would.
    io.abort();
    drop(client);
    for _ in 0..500 {
        if bed5(&st) == ward_core::Connection::Offline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(bed5(&st), ward_core::Connection::Offline);
    st.shutdown().await;
}
