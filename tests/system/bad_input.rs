use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const HR: u32 = 147_842;
const BPM: u32 = 264_864;

/// Sends bytes and reads until the server closes the connection; returns what it answered.
fn send_and_wait_for_close(addr: std::net::SocketAddr, chunks: &[&[u8]]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut answered = Vec::new();
    for c in chunks {
        s.write_all(c).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return answered,
            Ok(n) => answered.extend_from_slice(&buf[..n]),
            Err(e) => panic!("server kept the connection open: {e}"),
        }
    }
}

fn counter(line: &str, name: &str) -> u64 {
    let at = line
        .find(name)
        .unwrap_or_else(|| panic!("{name} missing in {line}"));
    line[at + name.len()..]
        .trim_start_matches([' ', '='])
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn bad_input_of_every_kind_is_counted_logged_and_survived() {
    let mut st = Headless::start(&[]);
    let addr = st.addr;
    let good = |v: f64| {
        mosquitto_pub(
            addr,
            &[
                "-q",
                "1",
                "-t",
                "ward/v1/dev/good-1/vitals",
                "-m",
                &vitals_json(HR, v, BPM),
            ],
        )
    };
    assert!(good(71.0).status.success());
    wait_for("first good value", Duration::from_secs(10), || {
        stored_vital(&st.db(), "good-1", HR)
    });

    // 1. Garbage on the broker port.
    send_and_wait_for_close(st.addr, &[b"\x00\xffGET / HTTP/1.1\r\n\r\n garbage"]);

    // 2. A valid 3.1.1 CONNECT, then a PUBLISH whose topic is invalid UTF-8 (0xC3 0x28).
    let connect: &[u8] = b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03bad";
    let publish: &[u8] = b"\x30\x05\x00\x02\xc3\x28x";
    let answer = send_and_wait_for_close(st.addr, &[connect, publish]);
    assert_eq!(
        &answer[..4],
        b"\x20\x02\x00\x00",
        "CONNACK accepted before the bad PUBLISH"
    );

    // 3. JSON with a wrong type, 4. NaN (not JSON at all).
    for payload in [
        r#"{"obs":[{"code":147842,"value":"77","unit":264864}]}"#,
        r#"{"obs":[{"code":147842,"value":NaN,"unit":264864}]}"#,
    ] {
        let out = mosquitto_pub(
            st.addr,
            &["-q", "1", "-t", "ward/v1/dev/good-1/vitals", "-m", payload],
        );
        assert!(
            out.status.success(),
            "the broker accepts the packet; ingest refuses the payload"
        );
    }

    // 5. A 10 MB payload: refused from its header, connection closed.
    let big = st.dir.path().join("big.bin");
    std::fs::write(&big, vec![b'x'; 10 * 1024 * 1024]).unwrap();
    // MQTT 5 clients learn the limit from CONNACK and refuse locally; a 3.1.1 client cannot
    // know it, sends, and is cut off by the broker from the packet's header.
    let big_publish = |version: &str| {
        let args = [
            "-V",
            version,
            "-q",
            "1",
            "-t",
            "ward/v1/dev/good-1/vitals",
            "-f",
        ];
        let mut cmd: Vec<&str> = args.to_vec();
        cmd.push(big.to_str().unwrap());
        mosquitto_pub(st.addr, &cmd)
    };
    let _ = big_publish("mqttv5");
    let out = big_publish("mqttv311");
    assert!(
        !out.status.success(),
        "a 10 MB publish must not be acknowledged"
    );

    // Each is counted...
    let line = wait_for(
        "counters for every bad input",
        Duration::from_secs(15),
        || {
            let l = st.last_counters()?;
            eprintln!("{l}");
            let ok = counter(&l, "malformed") >= 1
                && counter(&l, "too-large") >= 1
                && counter(&l, "bad-topic") >= 1
                && counter(&l, "bad_json") >= 2;
            ok.then_some(l)
        },
    );
    eprintln!("counters after bad input: {line}");
    // ...and logged with its reason.
    let log = st.stderr_text();
    for reason in [
        "first packet must be CONNECT",
        "topic is not valid UTF-8",
        r#"invalid type: string "77""#,
        "expected value",
        "exceeds the maximum packet size",
    ] {
        assert!(log.contains(reason), "no log line with {reason:?}:\n{log}");
    }

    // The station keeps running, takes new data, and what it stored before is intact.
    assert!(st.alive(), "station exited after bad input");
    assert!(good(72.0).status.success());
    let latest = wait_for("second good value", Duration::from_secs(10), || {
        stored_vital(&st.db(), "good-1", HR).filter(|r| r.value == Some(72.0))
    });
    assert_eq!(latest.value, Some(72.0));
    let store = ward_store::Store::open_read_only(&st.db()).unwrap();
    let all: Vec<_> = store
        .vitals("good-1", HR)
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(
        all,
        vec![Some(71.0), Some(72.0)],
        "bad payloads stored nothing"
    );
    assert_eq!(store.integrity_check().unwrap(), "ok");
    assert!(st.stop().success());
}
