//! OS notifications for HIGH and MEDIUM alarms, sent from their own thread so a slow or
//! missing notification daemon never delays the alarm driver.
//!
//! Overflow policy: the queue holds [`QUEUE`] notices; beyond that new ones are dropped and
//! counted (the alarm itself still sounds, shows and is logged; the notification is an extra
//! channel). Failures (no session bus, no daemon) are counted and logged, at most one line per
//! [`LOG_EVERY`] failures, since a headless server fails every time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use ward_alarm::Priority;

const QUEUE: usize = 256;
const LOG_EVERY: u64 = 100;

pub struct Notice {
    pub priority: Priority,
    pub summary: String,
    pub body: String,
}

#[derive(Default)]
pub struct NotifyCounters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

pub struct Notifier {
    tx: Option<SyncSender<Notice>>,
    thread: Option<JoinHandle<()>>,
    pub counters: Arc<NotifyCounters>,
}

impl Notifier {
    pub fn start(enabled: bool) -> Self {
        let counters = Arc::new(NotifyCounters::default());
        if !enabled {
            return Self {
                tx: None,
                thread: None,
                counters,
            };
        }
        let (tx, rx) = sync_channel::<Notice>(QUEUE);
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("ward-notify".into())
            .spawn(move || {
                for n in rx {
                    match show(&n) {
                        Ok(()) => {
                            c.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let failed = c.failed.fetch_add(1, Ordering::Relaxed);
                            if failed % LOG_EVERY == 0 {
                                tracing::warn!(error = %e, failures = failed + 1, "OS notification failed");
                            }
                        }
                    }
                }
            })
            .map_err(|e| tracing::error!(error = %e, "cannot start the notification thread"))
            .ok();
        Self {
            tx: thread.as_ref().map(|_| tx),
            thread,
            counters,
        }
    }

    pub fn send(&self, n: Notice) {
        let Some(tx) = &self.tx else { return };
        if let Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) = tx.try_send(n) {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn show(n: &Notice) -> Result<(), notify_rust::error::Error> {
    let mut note = notify_rust::Notification::new();
    note.appname("Wardwatch")
        .summary(&n.summary)
        .body(&n.body)
        .timeout(notify_rust::Timeout::Never);
    #[cfg(all(unix, not(target_os = "macos")))]
    note.urgency(match n.priority {
        Priority::High => notify_rust::Urgency::Critical,
        _ => notify_rust::Urgency::Normal,
    });
    note.show().map(|_| ())
}
