//! Stations watch each other through the core. Each station keeps a retained liveness
//! message on `{prefix}/station/{id}/alive`, set "up" and refreshed by a heartbeat while its
//! alarm loop runs, and "down" by its last will (the core publishes it when the station's
//! connection dies: a crash, a kill, a cut cable, a keep-alive missed by a hung process) or
//! by the station itself at an orderly stop.
//!
//! [`PeerWatch`] is the watching side, a pure machine (time passed in, monotonic ms): a peer
//! that says "down", or whose heartbeats stop for the timeout, is not monitoring; it is back
//! at its next "up". While this station's own connection to the core is down it flags no
//! one (every peer would look silent; the core-down state is shown instead), and after a
//! reconnect every peer gets a fresh timeout, so a network outage pages no station.

use crate::link::{Incoming, Link, Setup};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use ward_config::UpstreamConfig;

pub fn alive_topic(prefix: &str, station: &str) -> String {
    format!("{}/station/{station}/alive", prefix.trim_end_matches('/'))
}

/// Where a station keeps its current bed alarms (retained) for the stations that follow it.
pub fn alarms_topic(prefix: &str, station: &str) -> String {
    format!("{}/station/{station}/alarms", prefix.trim_end_matches('/'))
}

/// A followed station's alarm list, checked against its topic.
pub fn parse_alarms(
    followed: &[String],
    topic: &str,
    payload: &[u8],
) -> Result<ward_alarm::care::SharedAlarms, String> {
    let l: ward_alarm::care::SharedAlarms =
        serde_json::from_slice(payload).map_err(|e| format!("alarms on {topic}: {e}"))?;
    if !followed.contains(&l.station) || !topic.ends_with(&format!("/station/{}/alarms", l.station))
    {
        return Err(format!(
            "alarms of {:?} on {topic}: not a followed station's topic",
            l.station
        ));
    }
    Ok(l)
}

/// The retained liveness message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alive {
    pub station: String,
    /// The station's name as people know it ("4 West").
    pub name: String,
    /// "up" or "down".
    pub state: String,
    pub t_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Alive {
    pub fn parse(topic: &str, payload: &[u8]) -> Result<Alive, String> {
        let a: Alive =
            serde_json::from_slice(payload).map_err(|e| format!("liveness on {topic}: {e}"))?;
        if !topic.ends_with(&format!("/station/{}/alive", a.station)) {
            return Err(format!(
                "liveness of {:?} on {topic}: not that station's topic",
                a.station
            ));
        }
        if a.state != "up" && a.state != "down" {
            return Err(format!(
                "liveness on {topic}: state {:?} is not up or down",
                a.state
            ));
        }
        Ok(a)
    }
}

/// A peer's change, for the alarm engine.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerChange {
    Down {
        peer: String,
        label: String,
        reason: String,
    },
    Up {
        peer: String,
        label: String,
    },
}

fn label(name: &str) -> String {
    format!("Station {name} not monitoring — its beds are unwatched")
}

#[derive(Debug, Clone)]
struct Peer {
    name: String,
    last: i64,
    said_down: Option<String>,
    flagged: bool,
}

pub struct PeerWatch {
    timeout_ms: i64,
    connected: bool,
    peers: BTreeMap<String, Peer>,
}

impl PeerWatch {
    pub fn new(peers: &[String], timeout_ms: i64, now: i64) -> Self {
        Self {
            timeout_ms,
            connected: false,
            peers: peers
                .iter()
                .map(|p| {
                    (
                        p.clone(),
                        Peer {
                            name: p.clone(),
                            last: now,
                            said_down: None,
                            flagged: false,
                        },
                    )
                })
                .collect(),
        }
    }

    /// This station's own connection to the core came up or went down.
    pub fn connected(&mut self, now: i64, up: bool) {
        if up && !self.connected {
            for p in self.peers.values_mut() {
                p.last = now;
            }
        }
        self.connected = up;
    }

    /// A liveness message of a watched peer (others are ignored).
    pub fn message(&mut self, now: i64, a: &Alive) {
        if let Some(p) = self.peers.get_mut(&a.station) {
            p.name = a.name.clone();
            p.last = now;
            p.said_down = (a.state == "down").then(|| {
                a.reason
                    .clone()
                    .unwrap_or_else(|| "it said it is down".into())
            });
        }
    }

    pub fn poll(&mut self, now: i64) -> Vec<PeerChange> {
        let mut out = Vec::new();
        if !self.connected {
            return out;
        }
        for (id, p) in &mut self.peers {
            let down = p.said_down.clone().or_else(|| {
                (now - p.last > self.timeout_ms).then(|| {
                    format!(
                        "no heartbeat through the core for {} s",
                        (now - p.last) / 1000
                    )
                })
            });
            match (down, p.flagged) {
                (Some(reason), false) => {
                    p.flagged = true;
                    out.push(PeerChange::Down {
                        peer: id.clone(),
                        label: label(&p.name),
                        reason,
                    });
                }
                (None, true) => {
                    p.flagged = false;
                    out.push(PeerChange::Up {
                        peer: id.clone(),
                        label: label(&p.name),
                    });
                }
                _ => {}
            }
        }
        out
    }
}

/// This station's liveness: a client of its own (its will must be this connection's),
/// publishing "up" at each connection and every `timeout / 3` while `alive()` (the alarm
/// loop ticks), and "down" at an orderly stop.
pub struct Liveness {
    pub cfg: UpstreamConfig,
    pub origin: String,
    pub alive: Arc<dyn Fn() -> bool + Send + Sync>,
    /// This station's current bed alarms, published (retained, when they change) for the
    /// stations that follow it.
    pub alarms: Arc<dyn Fn() -> Vec<ward_alarm::care::SharedAlarm> + Send + Sync>,
}

impl Liveness {
    fn message(&self, state: &str, reason: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(&Alive {
            station: self.origin.clone(),
            name: self.cfg.station_name.clone(),
            state: state.into(),
            t_ms: ward_store::wall_clock_ms(),
            reason: reason.map(String::from),
        })
        .unwrap_or_default()
    }

    pub async fn run(self, stop: CancellationToken) {
        let cfg = UpstreamConfig {
            client_id: format!("{}-alive", self.cfg.client_id),
            ..self.cfg.clone()
        };
        let topic = alive_topic(&cfg.topic_prefix, &self.origin);
        let Some(prepared) = crate::client::prepared_when_ready(&cfg, &stop, |_| {}).await else {
            return;
        };
        let will = self.message(
            "down",
            Some("its connection to the core was lost (process ended, hung or cut off)"),
        );
        let setup = Setup {
            client_id: cfg.client_id.clone(),
            persistent: None,
            will: Some((topic.clone(), will)),
            cap: 16,
        };
        let mut link = Link::new(&cfg, prepared, setup);
        let every = (cfg.peer_timeout / 3).max(Duration::from_secs(1));
        let mut beat = tokio::time::interval(every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut connected = false;
        let mut backoff = Duration::from_millis(500);
        let alarms_topic = alarms_topic(&cfg.topic_prefix, &self.origin);
        let mut published: Option<Vec<ward_alarm::care::SharedAlarm>> = None;
        let mut check = tokio::time::interval(Duration::from_millis(500));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = check.tick(), if connected => {
                    let now = (self.alarms)();
                    if published.as_ref() != Some(&now) {
                        let list = ward_alarm::care::SharedAlarms {
                            station: self.origin.clone(),
                            name: cfg.station_name.clone(),
                            t_ms: ward_store::wall_clock_ms(),
                            alarms: now.clone(),
                        };
                        let body = serde_json::to_vec(&list).unwrap_or_default();
                        if link.try_publish(&alarms_topic, true, body).is_ok() {
                            published = Some(now);
                        }
                    }
                }
                ev = link.poll() => match ev {
                    Ok(Incoming::Connected) => {
                        connected = true;
                        backoff = Duration::from_millis(500);
                        // The core may have lost the retained list: publish it anew.
                        published = None;
                        if (self.alive)() {
                            let _ = link.try_publish(&topic, true, self.message("up", None));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        connected = false;
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                },
                _ = beat.tick() => {
                    // No beat while the alarm loop is stalled: the peers' timeout sees it.
                    if connected && (self.alive)() {
                        let _ = link.try_publish(&topic, true, self.message("up", None));
                    }
                }
            }
        }
        if connected {
            let down = self.message("down", Some("stopped in order"));
            let _ = link.publish(&topic, true, down).await;
            // Let the event loop carry the message and its PUBACK before disconnecting.
            let until = tokio::time::Instant::now() + Duration::from_secs(2);
            while tokio::time::Instant::now() < until {
                match tokio::time::timeout_at(until, link.poll()).await {
                    Ok(Ok(Incoming::Confirmed(_))) => break,
                    Ok(Ok(_)) => {}
                    _ => break,
                }
            }
            link.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_secs(1), link.poll()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(station: &str, state: &str) -> Alive {
        Alive {
            station: station.into(),
            name: "4 West".into(),
            state: state.into(),
            t_ms: 0,
            reason: (state == "down").then(|| "its last will".into()),
        }
    }

    #[test]
    fn silence_and_will_flag_a_peer_and_up_clears_it() {
        let mut w = PeerWatch::new(&["st-4w".into()], 10_000, 0);
        w.connected(0, true);
        w.message(1_000, &alive("st-4w", "up"));
        assert!(w.poll(11_000).is_empty(), "within the timeout");
        let c = w.poll(11_001);
        assert_eq!(
            c,
            vec![PeerChange::Down {
                peer: "st-4w".into(),
                label: "Station 4 West not monitoring — its beds are unwatched".into(),
                reason: "no heartbeat through the core for 10 s".into()
            }]
        );
        assert!(w.poll(12_000).is_empty(), "said once");
        w.message(13_000, &alive("st-4w", "up"));
        assert!(matches!(&w.poll(13_000)[..], [PeerChange::Up { peer, .. }] if peer == "st-4w"));
        w.message(14_000, &alive("st-4w", "down"));
        assert!(
            matches!(&w.poll(14_000)[..], [PeerChange::Down { reason, .. }] if reason == "its last will")
        );
    }

    #[test]
    fn an_outage_of_the_core_flags_no_one() {
        let mut w = PeerWatch::new(&["st-4w".into(), "st-5e".into()], 10_000, 0);
        w.connected(0, true);
        w.message(1_000, &alive("st-4w", "up"));
        w.message(1_000, &alive("st-5e", "up"));
        w.connected(2_000, false);
        assert!(w.poll(60_000).is_empty(), "core down: no one flagged");
        // Back: every peer gets a fresh timeout; their retained messages arrive at once.
        w.connected(60_000, true);
        assert!(w.poll(65_000).is_empty());
        w.message(60_100, &alive("st-4w", "up"));
        let c = w.poll(70_001);
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(matches!(&c[0], PeerChange::Down { peer, .. } if peer == "st-5e"));
    }

    #[test]
    fn liveness_messages_are_checked() {
        let ok = serde_json::to_vec(&alive("st-4w", "up")).unwrap();
        assert!(Alive::parse("wardwatch/v1/station/st-4w/alive", &ok).is_ok());
        let e = Alive::parse("wardwatch/v1/station/st-x/alive", &ok).unwrap_err();
        assert!(e.contains("not that station's topic"), "{e}");
        let bad = serde_json::to_vec(&alive("st-4w", "maybe")).unwrap();
        assert!(Alive::parse("wardwatch/v1/station/st-4w/alive", &bad).is_err());
        for junk in [&b"\xff"[..], b"{}", b"null"] {
            assert!(Alive::parse("wardwatch/v1/station/st-4w/alive", junk).is_err());
        }
    }
}
