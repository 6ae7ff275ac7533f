use crate::support::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_beds_for_thirty_seconds_store_every_sample_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 16);
    let db = cfg.db_path();
    let st = ward_core::Station::start(cfg).await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let metrics = st.live().metrics();
    let sent = st
        .shutdown()
        .await
        .expect("the simulated ward reports what it sent");

    assert_eq!(metrics.broker.messages_dropped, 0);
    assert_eq!(metrics.store.queue_full, 0);
    let store = ward_store::Store::open_read_only(&db).unwrap();
    let channels = store.wave_channels().unwrap();
    assert_eq!(
        channels.len(),
        16 * 3,
        "16 beds x 3 waveform channels: {channels:?}"
    );
    assert_eq!(sent.samples.len(), 16 * 3);
    for ((device, channel), sent_samples) in &sent.samples {
        let chunks = store.wave_chunks(device, *channel).unwrap();
        let stored: u64 = chunks.iter().map(|c| c.samples.len() as u64).sum();
        assert_eq!(
            stored, *sent_samples,
            "{device} channel {channel}: stored vs sent"
        );
        // About 30 s of signal at 25 packets a second.
        assert!(
            stored > 0 && chunks.len() >= 25,
            "{device} {channel}: {} chunks",
            chunks.len()
        );
        for w in chunks.windows(2) {
            let gap_us = w[1].t0_us - w[0].end_us();
            assert!(
                (-2_000..=40_000).contains(&gap_us),
                "{device} {channel}: gap of {gap_us} us between chunks at {} and {}",
                w[0].t0_us,
                w[1].t0_us
            );
        }
        // One row per channel per second: full chunks hold one second of samples.
        let rate = chunks[0].rate_mhz as f64 / 1000.0;
        let full = chunks
            .iter()
            .filter(|c| c.samples.len() as f64 >= rate)
            .count();
        assert!(
            full + 2 >= chunks.len(),
            "{device} {channel}: {full} of {} chunks full",
            chunks.len()
        );
    }
    for (device, messages) in &sent.vitals_messages {
        let hr = store.vitals(device, 147_842).unwrap();
        assert_eq!(
            hr.len() as u64,
            *messages,
            "{device}: one HR row per vitals message"
        );
        assert_eq!(
            hr[0].bed.as_deref(),
            Some(format!("bed-{}", &device[4..]).as_str())
        );
    }
    eprintln!(
        "simulated ward: {} samples and {} vitals messages sent and stored",
        sent.samples.values().sum::<u64>(),
        sent.vitals_messages.values().sum::<u64>()
    );
}
