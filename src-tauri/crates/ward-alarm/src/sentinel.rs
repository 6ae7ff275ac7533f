//! The sentinel's watch over its station: a pure machine, time passed in (monotonic
//! milliseconds), like the engine. The `wardwatch sentinel` process drives it: it feeds what
//! arrives on its local channel (hello, heartbeats, goodbye, the channel closing, a person's
//! confirmation) and plays the alarm-system-failure signal while [`Watch::sounding`].
//!
//! ```text
//!  WAITING --hello--> WATCHING --heartbeats stop for timeout--> FAILED (sounds)
//!     |                  |      --channel closes, no goodbye--> FAILED
//!     |                  |      --goodbye--> STOPPED (an orderly stop: logged, silent)
//!     '--no hello within grace--> FAILED
//!  FAILED --(min signal time passed) and (station back, or a person confirmed)--> WATCHING / WAITING
//! ```
//!
//! A confirmed failure does not sound again for the same outage; the next failure after the
//! station is back sounds anew.

use crate::Ms;

#[derive(Debug, Clone, PartialEq)]
pub struct WatchPolicy {
    /// No heartbeat for this long from a connected station is a failure (a hung process, or
    /// its alarm loop stalled: the station only beats while its alarm loop runs).
    pub heartbeat_timeout_ms: Ms,
    /// The failure signal sounds at least this long (IEC 60601-1-8 asks 120 s for the
    /// alarm system's own failure), and after it until the station is back or a person
    /// confirms.
    pub min_signal_ms: Ms,
    /// A sentinel started before its station (a service manager starts both) waits this long
    /// for the first hello.
    pub startup_grace_ms: Ms,
}

impl Default for WatchPolicy {
    fn default() -> Self {
        Self {
            heartbeat_timeout_ms: 3_000,
            min_signal_ms: 120_000,
            startup_grace_ms: 30_000,
        }
    }
}

/// What happened, for the sentinel's log, its notification and the station's trail.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Connected {
        station: String,
        pid: u32,
    },
    /// The station said goodbye: an orderly stop, by `reason`.
    Stopped {
        reason: String,
    },
    /// The alarm system failed: the signal starts.
    Failed {
        reason: String,
    },
    /// A person confirmed the failure (they know the station is down).
    Confirmed {
        user: String,
    },
    /// The station is beating again during a failure.
    Back,
    /// The signal stopped, and why.
    SignalEnded {
        why: String,
    },
}

#[derive(Debug, Clone)]
struct Failure {
    since: Ms,
    confirmed_by: Option<String>,
    /// "Back" has been said for this failure.
    back_said: bool,
}

pub struct Watch {
    policy: WatchPolicy,
    started: Ms,
    station: Option<String>,
    connected: bool,
    ever_connected: bool,
    last_beat: Ms,
    failure: Option<Failure>,
    /// A confirmed failure whose outage is not over: it does not sound again.
    outage_confirmed: bool,
    stopped: bool,
    events: Vec<(Ms, WatchEvent)>,
}

impl Watch {
    pub fn new(policy: WatchPolicy, now: Ms) -> Self {
        Self {
            policy,
            started: now,
            station: None,
            connected: false,
            ever_connected: false,
            last_beat: now,
            failure: None,
            outage_confirmed: false,
            stopped: false,
            events: Vec::new(),
        }
    }

    fn beating(&self, now: Ms) -> bool {
        self.connected && now - self.last_beat <= self.policy.heartbeat_timeout_ms
    }

    fn fail(&mut self, now: Ms, reason: String) {
        if self.failure.is_some() || self.outage_confirmed {
            return;
        }
        self.failure = Some(Failure {
            since: now,
            confirmed_by: None,
            back_said: false,
        });
        self.events.push((now, WatchEvent::Failed { reason }));
    }

    /// The station introduced itself on a new connection.
    pub fn hello(&mut self, now: Ms, station: &str, pid: u32) {
        self.station = Some(station.to_string());
        self.connected = true;
        self.ever_connected = true;
        self.stopped = false;
        self.last_beat = now;
        self.events.push((
            now,
            WatchEvent::Connected {
                station: station.to_string(),
                pid,
            },
        ));
        self.poll(now);
    }

    pub fn beat(&mut self, now: Ms) {
        if self.connected {
            self.last_beat = now;
        }
        self.poll(now);
    }

    /// The station's connection closed without a goodbye: its process has ended.
    pub fn closed(&mut self, now: Ms) {
        if !self.connected {
            return;
        }
        self.connected = false;
        let name = self.station.clone().unwrap_or_default();
        self.fail(
            now,
            format!("station {name} stopped without saying goodbye (process ended or killed): its alarms are not being watched"),
        );
    }

    /// The station stopped in order (a person closed it, the service was stopped).
    pub fn goodbye(&mut self, now: Ms, reason: &str) {
        self.connected = false;
        self.stopped = true;
        self.events.push((
            now,
            WatchEvent::Stopped {
                reason: reason.to_string(),
            },
        ));
    }

    /// A person confirms the failure. Refused when nothing has failed.
    pub fn confirm(&mut self, now: Ms, user: &str) -> Result<(), String> {
        if user.trim().is_empty() {
            return Err("a confirmation needs the name of the person giving it".into());
        }
        let Some(f) = self.failure.as_mut() else {
            return Err(
                "nothing to confirm: the station is being watched and no failure sounds".into(),
            );
        };
        if f.confirmed_by.is_none() {
            f.confirmed_by = Some(user.to_string());
            self.events.push((
                now,
                WatchEvent::Confirmed {
                    user: user.to_string(),
                },
            ));
        }
        self.poll(now);
        Ok(())
    }

    /// Runs the timers: heartbeat timeout, start-up grace, the end of the signal.
    pub fn poll(&mut self, now: Ms) {
        if self.connected && now - self.last_beat > self.policy.heartbeat_timeout_ms {
            let name = self.station.clone().unwrap_or_default();
            let silent = (now - self.last_beat) as f64 / 1000.0;
            self.fail(
                now,
                format!("station {name} not responding: no heartbeat from its alarm loop for {silent:.1} s (hung or stalled)"),
            );
        }
        if !self.ever_connected && now - self.started > self.policy.startup_grace_ms {
            let grace = self.policy.startup_grace_ms / 1000;
            self.fail(
                now,
                format!("the station has not started: no hello within {grace} s"),
            );
        }
        let beating = self.beating(now);
        if let Some(f) = &self.failure {
            let long_enough = now - f.since >= self.policy.min_signal_ms;
            if long_enough && (beating || f.confirmed_by.is_some()) {
                let why = if beating {
                    "the station is back".to_string()
                } else {
                    let u = f.confirmed_by.as_deref().unwrap_or_default();
                    format!("confirmed by {u}; the station is still down")
                };
                self.outage_confirmed = !beating;
                self.failure = None;
                self.events.push((now, WatchEvent::SignalEnded { why }));
            }
        }
        if beating && self.outage_confirmed {
            self.outage_confirmed = false;
        }
        if beating {
            if let Some(f) = self.failure.as_mut() {
                // Said once per failure: the station is back, the signal runs out its time.
                if !f.back_said {
                    f.back_said = true;
                    self.events.push((now, WatchEvent::Back));
                }
            }
        }
    }

    /// The failure signal should sound now.
    pub fn sounding(&self) -> bool {
        self.failure.is_some()
    }

    /// The station stopped in order and has not come back.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    pub fn drain(&mut self) -> Vec<(Ms, WatchEvent)> {
        std::mem::take(&mut self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> WatchPolicy {
        WatchPolicy {
            heartbeat_timeout_ms: 3_000,
            min_signal_ms: 120_000,
            startup_grace_ms: 30_000,
        }
    }

    /// Beats every second from `from` to `to` (ms), polling every 100 ms.
    fn run(w: &mut Watch, from: Ms, to: Ms, beats: bool) {
        let mut t = from;
        while t < to {
            t += 100;
            if beats && t % 1000 == 0 {
                w.beat(t);
            }
            w.poll(t);
        }
    }

    fn kinds(w: &mut Watch) -> Vec<String> {
        w.drain()
            .into_iter()
            .map(|(t, e)| format!("{t} {e:?}"))
            .collect()
    }

    #[test]
    fn killed_station_sounds_at_once_for_at_least_the_minimum_then_ends_when_back() {
        let mut w = Watch::new(policy(), 0);
        w.hello(0, "4 West", 42);
        run(&mut w, 0, 10_000, true);
        w.closed(10_050);
        assert!(w.sounding());
        // Back after 20 s: the signal still runs its 120 s.
        w.hello(30_000, "4 West", 43);
        run(&mut w, 30_000, 130_000, true);
        assert!(w.sounding(), "still within the minimum signal time");
        run(&mut w, 130_000, 131_000, true);
        assert!(!w.sounding());
        let k = kinds(&mut w);
        assert_eq!(k.len(), 5, "{k:?}");
        assert!(k[1].starts_with("10050 Failed"), "{k:?}");
        assert!(k[1].contains("without saying goodbye"), "{k:?}");
        assert!(k[2].starts_with("30000 Connected"), "{k:?}");
        assert_eq!(k[3], "30000 Back");
        assert_eq!(k[4], "130100 SignalEnded { why: \"the station is back\" }");
    }

    /// The driver drains the events at every poll: "back" is still said once per failure.
    #[test]
    fn back_is_said_once_when_drained_at_every_poll() {
        let mut w = Watch::new(policy(), 0);
        w.hello(0, "4 West", 42);
        w.closed(1_000);
        w.hello(2_000, "4 West", 43);
        let mut backs = 0;
        let mut t = 2_000;
        while t < 125_000 {
            t += 100;
            if t % 1000 == 0 {
                w.beat(t);
            }
            w.poll(t);
            backs += w
                .drain()
                .iter()
                .filter(|(_, e)| *e == WatchEvent::Back)
                .count();
        }
        assert_eq!(backs, 1);
        assert!(!w.sounding());
    }

    #[test]
    fn hung_station_is_caught_by_the_heartbeat_timeout() {
        let mut w = Watch::new(policy(), 0);
        w.hello(0, "4 West", 42);
        run(&mut w, 0, 5_000, true);
        run(&mut w, 5_000, 8_000, false);
        assert!(
            !w.sounding(),
            "3 s without a beat is still within the timeout"
        );
        run(&mut w, 8_000, 8_200, false);
        assert!(w.sounding());
        let k = kinds(&mut w);
        assert!(k[1].starts_with("8100 Failed"), "{k:?}");
        assert!(k[1].contains("not responding"), "{k:?}");
        // It resumes (SIGCONT): beats again; the signal ends once the minimum has passed.
        run(&mut w, 8_200, 128_000, true);
        assert!(w.sounding());
        run(&mut w, 128_000, 128_200, true);
        assert!(!w.sounding());
    }

    #[test]
    fn confirmation_ends_the_signal_after_the_minimum_and_the_outage_stays_quiet() {
        let mut w = Watch::new(policy(), 0);
        w.hello(0, "4 West", 42);
        w.closed(1_000);
        w.confirm(5_000, "charge.cho").unwrap();
        run(&mut w, 5_000, 120_900, false);
        assert!(w.sounding(), "confirmed early: the minimum still applies");
        run(&mut w, 120_900, 121_100, false);
        assert!(!w.sounding());
        // Still down: nothing sounds again for this outage.
        run(&mut w, 121_100, 300_000, false);
        assert!(!w.sounding());
        // Back, then killed again: a new failure sounds.
        w.hello(300_000, "4 West", 44);
        run(&mut w, 300_000, 302_000, true);
        w.closed(302_500);
        assert!(w.sounding());
        let k = kinds(&mut w);
        assert!(
            k.iter()
                .any(|e| e.contains("Confirmed { user: \"charge.cho\" }")),
            "{k:?}"
        );
        assert!(
            k.iter()
                .any(|e| e.contains("confirmed by charge.cho; the station is still down")),
            "{k:?}"
        );
        assert_eq!(
            k.iter().filter(|e| e.contains("Failed")).count(),
            2,
            "{k:?}"
        );
    }

    #[test]
    fn orderly_stop_is_silent_and_confirmation_without_failure_is_refused() {
        let mut w = Watch::new(policy(), 0);
        w.hello(0, "4 West", 42);
        run(&mut w, 0, 2_000, true);
        assert!(w.confirm(2_000, "charge.cho").is_err());
        w.goodbye(2_500, "stopped by signal");
        w.closed(2_600);
        run(&mut w, 2_600, 60_000, false);
        assert!(!w.sounding());
        assert!(w.stopped());
        let k = kinds(&mut w);
        assert_eq!(k[1], "2500 Stopped { reason: \"stopped by signal\" }");
        assert_eq!(k.len(), 2, "{k:?}");
    }

    #[test]
    fn a_station_that_never_starts_is_a_failure_after_the_grace() {
        let mut w = Watch::new(policy(), 0);
        run(&mut w, 0, 30_000, false);
        assert!(!w.sounding());
        run(&mut w, 30_000, 30_200, false);
        assert!(w.sounding());
        assert!(
            w.confirm(31_000, " ").is_err(),
            "a confirmation needs a name"
        );
        let k = kinds(&mut w);
        assert!(k[0].contains("has not started"), "{k:?}");
    }
}
