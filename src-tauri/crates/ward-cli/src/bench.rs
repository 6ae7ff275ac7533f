//! `wardwatch bench alarm-latency`: how long from a monitor's PUBLISH that crosses a limit
//! to the station's alarm event, while a full ward streams into the same station.
//!
//! The station runs in this process (so both ends of the measurement read one clock): 63
//! simulated monitors stream ECG 250 Hz, pleth 125 Hz, resp 62.5 Hz (25 packets/s each) and
//! vitals at 1 Hz, and a 64th bed's monitor (a rumqttc client over TCP) alternates NIBP
//! systolic 200 and 120 mmHg. The rule "NIBP sys high" has no condition delay, so each 200 is
//! a new alarm: the time from just before the client hands the PUBLISH to its event loop to
//! the `Raised` entry reaching a subscriber of the station's alarm events is the latency
//! (broker, ingest, alarm driver, fan-out; the driver's 100 ms tick is not in the path).
//!
//! Results are printed and written into docs/BENCHMARKS.md between markers.

use anyhow::{bail, Context};
use std::path::Path;
use std::time::{Duration, Instant};
use ward_alarm::LogKind;
use ward_core::percentile;

pub struct Options {
    pub sim_beds: usize,
    pub samples: usize,
}

pub struct Result {
    pub latencies_us: Vec<u64>,
    pub sim_beds: usize,
    pub messages_in: u64,
    pub messages_dropped: u64,
    pub seconds: f64,
}

pub async fn alarm_latency(o: Options) -> anyhow::Result<Result> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let mut text = format!(
        "[station]\ndata_dir = {:?}\n[broker]\nlisten = \"127.0.0.1:0\"\nallow_anonymous = true\n[sim]\nbeds = {}\n[alarms]\nnotifications = false\n",
        dir.path().display().to_string(),
        o.sim_beds
    );
    for i in 1..=o.sim_beds {
        text += &format!(
            "[[beds]]\nid = \"bed-{i:02}\"\nlabel = \"Bed {i}\"\ndevice = \"sim-{i:02}\"\n"
        );
    }
    text += "[[beds]]\nid = \"bed-bench\"\nlabel = \"Bench bed\"\ndevice = \"bench-mon\"\n";
    let path = dir.path().join("bench.toml");
    std::fs::write(&path, text)?;
    let cfg = ward_core::Config::load(Some(&path), toml::Table::new())?;
    let station = ward_core::Station::start(cfg).await?;
    let addr = station.broker_addr();
    let mut events = station.alarms().subscribe();

    let mut mo = rumqttc::MqttOptions::new("bench-mon", addr.ip().to_string(), addr.port());
    mo.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(mo, 64);
    let pump = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    // Let the simulated ward connect and reach its steady rate.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = station.live().metrics().broker;
    let started = Instant::now();

    let topic = "ward/v1/dev/bench-mon/vitals";
    let body = |sys: u32| format!(r#"{{"obs":[{{"code":150021,"value":{sys},"unit":266016}}]}}"#);
    let mut lat = Vec::with_capacity(o.samples);
    for i in 0..o.samples {
        let t0 = Instant::now();
        client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, body(200))
            .await?;
        let raised = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match events.recv().await {
                    Ok(e)
                        if e.kind == LogKind::Raised
                            && e.bed.as_deref() == Some("bed-bench")
                            && e.condition == "limit:nibp_sys_high" =>
                    {
                        return Ok(Instant::now());
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await;
        match raised {
            Ok(Ok(t1)) => lat.push(t1.duration_since(t0).as_micros() as u64),
            Ok(Err(e)) => bail!("alarm events closed: {e}"),
            Err(_) => bail!("sample {i}: no alarm within 5 s"),
        }
        // End it (MEDIUM does not latch), then a pause that is not a multiple of the
        // driver's tick or the simulator's packet period.
        client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, body(120))
            .await?;
        tokio::time::sleep(Duration::from_millis(37 + (i as u64 * 13) % 50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = station.live().metrics().broker;
    let _ = client.disconnect().await;
    pump.abort();
    station.shutdown().await;
    Ok(Result {
        latencies_us: lat,
        sim_beds: o.sim_beds,
        messages_in: after.messages_in - before.messages_in,
        messages_dropped: after.messages_dropped - before.messages_dropped,
        seconds,
    })
}

pub fn report(r: &Result) -> String {
    let mut s = r.latencies_us.clone();
    s.sort_unstable();
    let ms = |us: u64| us as f64 / 1000.0;
    let p50 = percentile(&s, 0.50);
    let p99 = percentile(&s, 0.99);
    let max = s.last().copied().unwrap_or(0);
    format!(
        "| measure | value | target | ratio to target |\n|---|---|---|---|\n\
         | PUBLISH → alarm event, p50 | {:.2} ms | | |\n\
         | PUBLISH → alarm event, p99 | {:.2} ms | ≤ 20 ms | {:.3} |\n\
         | PUBLISH → alarm event, max | {:.2} ms | | |\n\n\
         {} samples; {} simulated beds streaming plus the bench bed; the ward's load during \
         the run: {:.0} messages/s into the broker, {} dropped.\n",
        ms(p50),
        ms(p99),
        ms(p99) / 20.0,
        ms(max),
        s.len(),
        r.sim_beds,
        r.messages_in as f64 / r.seconds.max(1e-9),
        r.messages_dropped,
    )
}

/// Prints a benchmark's report and, with `out`, writes it into that file's `name` section.
pub fn publish(text: &str, out: Option<&Path>, name: &str) -> anyhow::Result<()> {
    println!("{text}");
    if let Some(out) = out {
        write_section(out, name, text)?;
        println!("written to {}", out.display());
    }
    Ok(())
}

/// Replaces the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in `file`.
pub fn write_section(file: &Path, name: &str, body: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
    let (open, close) = (
        format!("<!-- bench:{name} -->"),
        format!("<!-- /bench:{name} -->"),
    );
    let (Some(a), Some(b)) = (text.find(&open), text.find(&close)) else {
        bail!("{} has no {open} … {close} markers", file.display());
    };
    let out = format!("{}{open}\n{body}{}", &text[..a], &text[b..]);
    std::fs::write(file, out).with_context(|| format!("write {}", file.display()))
}
