//! The annunciator: plays the alarm tones on the default audio output, from its own thread,
//! whatever the window is doing.
//!
//! The driver sets what should sound ([`Annunciator::set`]); the output callback reads it at
//! each buffer, so a HIGH alarm interrupts a MEDIUM burst within one buffer (a few ms), and
//! silence after an acknowledgement is just as quick. The tone buffers are synthesized once,
//! at the device's own rate, by `ward_alarm::tone`.
//!
//! No device, a device that fails, or a callback that stops running is reported through
//! [`Annunciator::status`]; the driver turns it into the technical alarm "Alarm audio
//! unavailable" (shown on screen and sent to the OS). The thread retries the device every
//! [`RETRY`].

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use ward_alarm::{tone, Priority};

const RETRY: Duration = Duration::from_secs(10);

fn code(p: Option<Priority>) -> u8 {
    match p {
        None => 0,
        Some(Priority::Low) => 1,
        Some(Priority::Medium) => 2,
        Some(Priority::High) => 3,
    }
}
fn from_code(c: u8) -> Option<Priority> {
    match c {
        1 => Some(Priority::Low),
        2 => Some(Priority::Medium),
        3 => Some(Priority::High),
        _ => None,
    }
}

#[derive(Default)]
struct Shared {
    desired: AtomicU8,
    reminder: AtomicU8,
    playing: AtomicU8,
    stop: AtomicBool,
    /// Output callbacks run so far: the self-check sees the stream is really alive.
    callbacks: AtomicU64,
    /// Bursts started per priority (low, medium, high), for metrics and tests.
    bursts: [AtomicU64; 3],
    failed: AtomicBool,
    status: Mutex<(bool, String)>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AudioStatus {
    pub ok: bool,
    /// The device in use, or why there is none.
    pub detail: String,
    pub playing: Option<Priority>,
    pub callbacks: u64,
    pub bursts_low: u64,
    pub bursts_medium: u64,
    pub bursts_high: u64,
}

pub struct Annunciator {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Annunciator {
    /// The patient alarm signals of `ward_alarm::tone`, one per priority.
    pub fn start() -> Self {
        Self::start_with([Priority::Low, Priority::Medium, Priority::High].map(tone::spec))
    }

    /// Plays `signals` (LOW, MEDIUM, HIGH) instead: the sentinel puts its alarm-system-failure
    /// signal in the HIGH slot.
    pub fn start_with(signals: [tone::BurstSpec; 3]) -> Self {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ward-annunciator".into())
            .spawn(move || run(s, signals))
            .map_err(|e| tracing::error!(error = %e, "cannot start the annunciator thread"))
            .ok();
        if thread.is_none() {
            if let Ok(mut st) = shared.status.lock() {
                *st = (false, "annunciator thread could not start".into());
            }
        }
        Self { shared, thread }
    }

    /// What should sound now (the highest priority among sounding alarms).
    pub fn set(&self, p: Option<Priority>) {
        self.shared.desired.store(code(p), Ordering::Relaxed);
    }

    /// One burst of `p` (the AUDIO OFF reminder), played when nothing else sounds.
    pub fn reminder(&self, p: Priority) {
        self.shared.reminder.store(code(Some(p)), Ordering::Relaxed);
    }

    pub fn status(&self) -> AudioStatus {
        let (ok, detail) = self
            .shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or((false, "status lock poisoned".into()));
        let thread_alive = self.thread.as_ref().is_some_and(|t| !t.is_finished());
        let b = |i: usize| self.shared.bursts[i].load(Ordering::Relaxed);
        AudioStatus {
            ok: ok && thread_alive,
            detail: if thread_alive {
                detail
            } else {
                "annunciator thread is not running".into()
            },
            playing: from_code(self.shared.playing.load(Ordering::Relaxed)),
            callbacks: self.shared.callbacks.load(Ordering::Relaxed),
            bursts_low: b(0),
            bursts_medium: b(1),
            bursts_high: b(2),
        }
    }
}

impl Drop for Annunciator {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn set_status(s: &Shared, ok: bool, detail: String) {
    if let Ok(mut st) = s.status.lock() {
        if st.0 != ok || st.1 != detail {
            if ok {
                tracing::info!(%detail, "alarm audio output ready");
            } else {
                tracing::error!(%detail, "alarm audio output unavailable");
            }
        }
        *st = (ok, detail);
    }
}

fn run(s: Arc<Shared>, signals: [tone::BurstSpec; 3]) {
    while !s.stop.load(Ordering::Relaxed) {
        s.failed.store(false, Ordering::Relaxed);
        match open(&s, &signals) {
            Ok((stream, detail)) => {
                set_status(&s, true, detail);
                // The stream lives on this thread (it is not Send on every platform) until
                // it fails or the station stops.
                while !s.stop.load(Ordering::Relaxed) && !s.failed.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                drop(stream);
                if s.failed.load(Ordering::Relaxed) {
                    set_status(&s, false, "the output stream failed (see the log)".into());
                }
            }
            Err(reason) => set_status(&s, false, reason),
        }
        let until = Instant::now() + RETRY;
        while !s.stop.load(Ordering::Relaxed) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn open(s: &Arc<Shared>, signals: &[tone::BurstSpec; 3]) -> Result<(cpal::Stream, String), String> {
    let host = cpal::default_host();
    let device = host
        .default_output_device()
        .ok_or_else(|| "no default audio output device".to_string())?;
    let name = device.name().unwrap_or_else(|_| "unnamed device".into());
    let supported = device
        .default_output_config()
        .map_err(|e| format!("{name}: no usable output configuration: {e}"))?;
    let format = supported.sample_format();
    let config: cpal::StreamConfig = supported.into();
    let stream = match format {
        SampleFormat::F32 => build::<f32>(&device, &config, signals, s.clone()),
        SampleFormat::I16 => build::<i16>(&device, &config, signals, s.clone()),
        SampleFormat::U16 => build::<u16>(&device, &config, signals, s.clone()),
        SampleFormat::I32 => build::<i32>(&device, &config, signals, s.clone()),
        other => return Err(format!("{name}: unsupported sample format {other}")),
    }
    .map_err(|e| format!("{name}: cannot open output stream: {e}"))?;
    stream
        .play()
        .map_err(|e| format!("{name}: cannot start output stream: {e}"))?;
    Ok((
        stream,
        format!(
            "{name} ({} Hz, {} ch, {format})",
            config.sample_rate.0, config.channels
        ),
    ))
}

/// The callback's own state: the three looping tone buffers and where it is in them.
struct Player {
    periods: [Vec<f32>; 3],
    bursts: [Vec<f32>; 3],
    current: u8,
    pos: usize,
    reminder: Option<(usize, usize)>,
    channels: usize,
    rate: f64,
    started: Option<Instant>,
    frames: u64,
}

impl Player {
    fn next(&mut self, s: &Shared) -> f32 {
        if let Some((i, pos)) = self.reminder {
            let b = &self.bursts[i];
            if pos < b.len() {
                self.reminder = Some((i, pos + 1));
                return b[pos];
            }
            self.reminder = None;
        }
        if self.current == 0 {
            return 0.0;
        }
        let p = &self.periods[self.current as usize - 1];
        if self.pos == 0 {
            s.bursts[self.current as usize - 1].fetch_add(1, Ordering::Relaxed);
        }
        let v = p[self.pos];
        self.pos = (self.pos + 1) % p.len();
        v
    }

    fn fill<T: SizedSample + FromSample<f32>>(&mut self, out: &mut [T], s: &Shared) {
        s.callbacks.fetch_add(1, Ordering::Relaxed);
        let desired = s.desired.load(Ordering::Relaxed);
        if desired != self.current {
            // A change of priority starts the new signal from its first pulse at once.
            self.current = desired;
            self.pos = 0;
            s.playing.store(desired, Ordering::Relaxed);
        }
        let r = s.reminder.swap(0, Ordering::Relaxed);
        if r != 0 && self.current == 0 && self.reminder.is_none() {
            self.reminder = Some((r as usize - 1, 0));
        }
        for frame in out.chunks_mut(self.channels.max(1)) {
            let v = T::from_sample(self.next(s));
            for x in frame {
                *x = v;
            }
        }
        self.pace(out.len() / self.channels.max(1));
    }

    /// Real devices pull samples at their own clock and are never far ahead of it. An
    /// unclocked sink (ALSA's `null`, or a `file` capture in front of it, as the tests use)
    /// would pull as fast as the CPU allows and write gigabytes; keep it within a second of
    /// real time. On a real device the condition never holds, so this never sleeps there.
    fn pace(&mut self, frames: usize) {
        let started = *self.started.get_or_insert_with(Instant::now);
        self.frames += frames as u64;
        let ahead = self.frames as f64 / self.rate - started.elapsed().as_secs_f64();
        if ahead > 1.0 {
            std::thread::sleep(Duration::from_secs_f64(ahead - 0.5));
        }
    }
}

fn build<T: SizedSample + FromSample<f32>>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    signals: &[tone::BurstSpec; 3],
    s: Arc<Shared>,
) -> Result<cpal::Stream, cpal::BuildStreamError> {
    let rate = config.sample_rate.0;
    let mut player = Player {
        periods: signals.map(|p| tone::period_of(&p, rate)),
        bursts: signals.map(|p| tone::burst_of(&p, rate)),
        current: 0,
        pos: 0,
        reminder: None,
        channels: config.channels as usize,
        rate: rate as f64,
        started: None,
        frames: 0,
    };
    let s_err = s.clone();
    device.build_output_stream(
        config,
        move |out: &mut [T], _| player.fill(out, &s),
        move |e| {
            tracing::error!(error = %e, "alarm audio stream error");
            s_err.failed.store(true, Ordering::Relaxed);
        },
        None,
    )
}
