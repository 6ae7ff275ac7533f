//! The service manager (systemd's sd_notify protocol, through the `sd-notify` crate): ready,
//! stopping, and the watchdog. Without a service manager (no NOTIFY_SOCKET), and off Linux,
//! every call does nothing.
//!
//! The watchdog is fed from the alarm driver's own loop ([`crate::alarms`]), not from a timer
//! of its own: a stalled alarm loop stops the pings though the process lives, and the
//! service manager restarts the station (`WatchdogSec=` in the unit).

use std::time::Duration;

/// How often to ping the watchdog (half its timeout, as sd_watchdog_enabled(3) advises), if
/// the service manager asked for one.
pub fn watchdog_every() -> Option<Duration> {
    #[cfg(target_os = "linux")]
    return sd_notify::watchdog_enabled().map(|d| d / 2);
    #[cfg(not(target_os = "linux"))]
    return None;
}

fn send(what: &str) {
    #[cfg(target_os = "linux")]
    {
        let state = match what {
            "ready" => sd_notify::NotifyState::Ready,
            "stopping" => sd_notify::NotifyState::Stopping,
            _ => sd_notify::NotifyState::Watchdog,
        };
        if let Err(e) = sd_notify::notify(&[state]) {
            tracing::warn!(error = %e, what, "cannot notify the service manager");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = what;
}

/// The station is up (broker listening, alarms running).
pub fn ready() {
    send("ready");
}

/// The station is stopping in order.
pub fn stopping() {
    send("stopping");
}

/// One watchdog ping.
pub(crate) fn watchdog() {
    send("watchdog");
}
