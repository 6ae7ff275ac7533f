use crate::support::*;
use std::process::Command;
use std::time::Duration;

/// The shell commands in docs/topics.md's ```sh blocks.
fn doc_commands() -> Vec<String> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/topics.md")).unwrap();
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in doc.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh && !l.is_empty() => out.push(l.to_string()),
            _ => {}
        }
    }
    out
}

#[test]
fn every_example_in_the_topic_contract_works_against_a_live_station() {
    let st = Headless::start(&[]);
    let commands = doc_commands();
    assert!(
        commands.len() >= 7,
        "found only {} examples",
        commands.len()
    );
    for cmd in &commands {
        assert!(
            cmd.contains("-p 1883"),
            "example does not target make run's port: {cmd}"
        );
        let cmd = cmd.replace("-p 1883", &format!("-p {}", st.addr.port()));
        let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db = st.db();
    let hr = wait_for("example HR", Duration::from_secs(10), || {
        stored_vital(&db, "mon-07", 147_842)
    });
    assert_eq!(hr.value, Some(77.0));
    let temp = wait_for("example temperature", Duration::from_secs(10), || {
        stored_vital(&db, "mon-07", 150_364)
    });
    assert_eq!((temp.value, temp.ts_ms), (Some(37.2), 1_763_701_200_000));
    // The single waveform packet is written once its chunk has been idle for a moment.
    let chunk = wait_for("example waveform chunk", Duration::from_secs(10), || {
        let s = ward_store::Store::open_read_only(&db).ok()?;
        s.wave_chunks("mon-07", 131_330).ok()?.into_iter().next()
    });
    assert_eq!(chunk.samples, vec![0, 4, 12, 40, 200, 240, 60, -40, -10, 0]);
    assert_eq!(chunk.t0_us, 1_763_701_200_000_000);
    let events = wait_for("status and alarm events", Duration::from_secs(10), || {
        let s = ward_store::Store::open_read_only(&db).ok()?;
        let e = s.events("mon-07").ok()?;
        (e.len() >= 3).then_some(e)
    });
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, vec!["status", "device_alarm", "device_alarm"]);
    let counters = wait_for(
        "a summary after the examples",
        Duration::from_secs(10),
        || st.last_counters().filter(|l| !l.contains("msgs in 0 ")),
    );
    assert!(
        counters.contains("refused payloads: none"),
        "an example was refused: {counters}"
    );
    assert!(
        counters.contains("malformed 0 too-large 0 bad-topic 0"),
        "{counters}"
    );
}
