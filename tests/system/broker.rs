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
    let bed5 = |st: &ward_core::StationHandle| st.live().snapshot().beds[4].connection;
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

fn python() -> String {
    std::env::var("WARDWATCH_PYTHON").expect(
        "WARDWATCH_PYTHON must name a Python with paho-mqtt (make test sets up .venv and exports it)",
    )
}

fn paho_drill(addr: std::net::SocketAddr, args: &[&str]) -> std::process::Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/paho_drill.py");
    Command::new(python())
        .arg(script)
        .args([addr.ip().to_string(), addr.port().to_string()])
        .args(args)
        .output()
        .expect("run paho_drill.py")
}

/// mosquitto_pub in line mode: one message per line of `lines`, on one connection.
fn mosquitto_pub_lines(addr: std::net::SocketAddr, args: &[&str], lines: &str) {
    use std::io::Write;
    let mut child = Command::new("mosquitto_pub")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .arg("-l")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The issue's crash drill: 1000 QoS 1 and 1000 QoS 2 messages queued for an offline
/// persistent subscriber (paho), the station killed with SIGKILL and started again on the same
/// data directory: all 2000 arrive, and none of the QoS 2 twice.
#[test]
fn crash_drill_2000_queued_messages_survive_kill_9_and_qos2_arrives_once() {
    let st = Headless::start(&["--sim-beds", "0"]);
    let sub = paho_drill(st.addr, &["subscribe", "drill-sub", "drill/#"]);
    assert!(sub.status.success(), "{sub:?}");
    for (qos, topic) in [("1", "drill/q1"), ("2", "drill/q2")] {
        let lines: String = (0..1000).map(|i| format!("{topic}-{i:04}\n")).collect();
        mosquitto_pub_lines(st.addr, &["-V", "5", "-q", qos, "-t", topic], &lines);
    }
    let dir = st.kill9();
    let st = Headless::start_in(dir, &["--sim-beds", "0"], &[]);
    let out = paho_drill(st.addr, &["collect", "drill-sub", "2000", "10"]);
    assert!(out.status.success(), "{out:?}");
    let got: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let of = |topic: &str| -> Vec<String> {
        got.iter()
            .filter(|m| m["topic"] == topic)
            .map(|m| m["payload"].as_str().unwrap().to_string())
            .collect()
    };
    let q1: std::collections::BTreeSet<String> = of("drill/q1").into_iter().collect();
    let q2 = of("drill/q2");
    let q2_unique: std::collections::BTreeSet<&String> = q2.iter().collect();
    assert_eq!(q1.len(), 1000, "every QoS 1 message at least once");
    assert_eq!(q2_unique.len(), 1000, "every QoS 2 message");
    assert_eq!(q2.len(), 1000, "no QoS 2 message twice");
    // In publish order, as queued.
    let expect: Vec<String> = (0..1000).map(|i| format!("drill/q2-{i:04}")).collect();
    assert_eq!(q2, expect);
    assert!(st.stop().success());
}

/// Interop both ways at QoS 2: mosquitto_sub (3.1.1 and 5.0) receives exactly what paho and
/// mosquitto_pub publish, once each.
#[test]
fn mosquitto_sub_gets_qos2_from_paho_and_mosquitto_pub_exactly_once_in_both_versions() {
    let st = Headless::start(&["--sim-beds", "0"]);
    for version in ["mqttv311", "5"] {
        let topic = format!("interop/{version}");
        let sub = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &st.addr.port().to_string()])
            .args([
                "-V", version, "-q", "2", "-t", &topic, "-C", "4", "-W", "20", "-v",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let v = if version == "5" { "5" } else { "3" };
        for n in 0..2 {
            let payload = format!("paho-{n}");
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/paho_publish.py");
            let out = Command::new(python())
                .arg(script)
                .args([
                    "127.0.0.1",
                    &st.addr.port().to_string(),
                    v,
                    "2",
                    &topic,
                    &payload,
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let m = format!("pub-{n}");
            let out = mosquitto_pub(st.addr, &["-V", version, "-q", "2", "-t", &topic, "-m", &m]);
            assert!(out.status.success(), "{out:?}");
        }
        let out = sub.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        assert_eq!(
            lines,
            ["paho-0", "paho-1", "pub-0", "pub-1"]
                .iter()
                .map(|p| format!("{topic} {p}"))
                .collect::<Vec<_>>()
        );
    }
    assert!(st.stop().success());
}

/// A station config with a TLS listener on a free port, on the certificates of `make_certs`;
/// with `client_ca`, client certificates are verified against the test CA.
fn tls_config(dir: &std::path::Path, client_ca: bool) -> std::path::PathBuf {
    let p = |f: &str| dir.join(f).display().to_string();
    let mut text = format!(
        "[broker]\ntls_listen = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\n",
        p("server.pem"),
        p("server.key")
    );
    if client_ca {
        text += &format!("tls_client_ca = {:?}\n", p("ca.pem"));
    }
    let cfg = dir.join("tls.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// The station's TLS listener with Debian's clients: mosquitto_pub over TLS, and with a client
/// certificate whose name ("client") is the device identity: its own prefix is accepted, another
/// device's refused with 0x87, which mosquitto_pub reports.
#[test]
fn tls_and_mutual_tls_with_mosquitto_clients() {
    let work = tempfile::tempdir().unwrap();
    make_certs(work.path());
    let p = |f: &str| work.path().join(f).display().to_string();
    let cfg = tls_config(work.path(), true);
    // Anonymous access stays off here: only the certificate identifies the device.
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(workspace_bin("wardwatch"))
        .args([
            "run",
            "--no-sentinel",
            "--listen",
            "127.0.0.1:0",
            "--sim-beds",
            "0",
            "--config",
        ])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path())
        .env("WARDWATCH_FORBID_DEFAULT_DATA_DIR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runtime = dir.path().join("runtime.json");
    let tls: std::net::SocketAddr = wait_for("runtime.json", Duration::from_secs(20), || {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&runtime).ok()?).ok()?;
        v["broker_tls"].as_str()?.parse().ok()
    });
    let port = tls.port().to_string();
    let publish = |topic: &str, with_cert: bool| {
        let mut c = Command::new("mosquitto_pub");
        c.args(["-h", "127.0.0.1", "-p", &port, "--cafile", &p("ca.pem")])
            .args(["-V", "5", "-q", "1", "-t", topic, "-m", "{}"]);
        if with_cert {
            c.args(["--cert", &p("client.pem"), "--key", &p("client.key")]);
        }
        c.output().unwrap()
    };
    let ok = publish("ward/v1/dev/client/status", true);
    assert!(ok.status.success(), "{ok:?}");
    let denied = publish("ward/v1/dev/other/status", true);
    let text = String::from_utf8_lossy(&denied.stderr).to_string()
        + &String::from_utf8_lossy(&denied.stdout);
    assert!(
        text.contains("not authorized") || text.contains("Not authorized"),
        "{denied:?}"
    );
    let anonymous = publish("ward/v1/dev/client/status", false);
    assert!(
        !anonymous.status.success(),
        "no certificate, no anonymous access"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// MQTT.js (npm), 3.1.1 and 5.0, over TCP, TLS, WebSockets and secure WebSockets: QoS 2
/// subscription granted, one copy of each QoS 0/1/2 message back at the QoS published; and
/// the same ACL on every transport (a denied topic refused for subscribe and publish, and not
/// delivered through an overlapping wildcard).
#[test]
fn mqttjs_roundtrips_qos_0_1_2_in_both_versions_over_tcp_tls_ws_and_wss() {
    let work = tempfile::tempdir().unwrap();
    make_certs(work.path());
    let p = |f: &str| work.path().join(f).display().to_string();
    let cfg = tls_config(work.path(), false);
    let acl = work.path().join("acl");
    std::fs::write(&acl, "topic readwrite #\ntopic deny interop/denied/#\n").unwrap();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text += &format!(
        "ws_listen = \"127.0.0.1:0\"\nwss_listen = \"127.0.0.1:0\"\nacl_file = {:?}\n",
        acl.display().to_string()
    );
    std::fs::write(&cfg, text).unwrap();
    let st = Headless::start(&["--sim-beds", "0", "--config", cfg.to_str().unwrap()]);
    let runtime: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(st.dir.path().join("runtime.json")).unwrap())
            .unwrap();
    let port = |key: &str| -> u16 {
        let a: std::net::SocketAddr = runtime[key].as_str().unwrap().parse().unwrap();
        a.port()
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/mqttjs_roundtrip.mjs");
    for (url, ca) in [
        (format!("mqtt://127.0.0.1:{}", st.addr.port()), None),
        (
            format!("mqtts://127.0.0.1:{}", port("broker_tls")),
            Some(p("ca.pem")),
        ),
        (format!("ws://127.0.0.1:{}/mqtt", port("broker_ws")), None),
        (
            format!("wss://127.0.0.1:{}/mqtt", port("broker_wss")),
            Some(p("ca.pem")),
        ),
    ] {
        for version in ["4", "5"] {
            let mut c = Command::new("node");
            c.arg(script).args([&url, version]);
            if let Some(ca) = &ca {
                c.arg(ca);
            }
            let out = c.output().expect("node (make test installs it)");
            assert!(out.status.success(), "{url} v{version}: {out:?}");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["granted"], serde_json::json!([2]), "{url} v{version}");
            // Refused: 0x80 is all 3.1.1 can say; MQTT 5 says 0x87 not authorized.
            let (sub_refused, pub_refused) = if version == "4" {
                (serde_json::json!([128]), serde_json::Value::Null)
            } else {
                (serde_json::json!([135]), serde_json::json!(135))
            };
            assert_eq!(v["denied"], sub_refused, "{url} v{version}");
            assert_eq!(v["publishDenied"], pub_refused, "{url} v{version}");
            let got: Vec<(String, u64)> = v["got"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["payload"].as_str().unwrap().into(),
                        m["qos"].as_u64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                vec![("q0".into(), 0), ("q1".into(), 1), ("q2".into(), 2)],
                "{url} v{version}: each once, and nothing from the denied topic"
            );
        }
    }
    assert!(st.stop().success());
}
