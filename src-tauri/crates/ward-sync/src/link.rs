//! One connection to the hospital core, whichever MQTT version it speaks and however many
//! nodes it has. The three clients (outbox, peers, liveness) see one small event type; this
//! module maps rumqttc's MQTT 5 and 3.1.1 clients onto it and, when a connection fails or
//! drops, points the next attempt at the next endpoint of `upstream` (round the list), so a
//! clustered core losing the node in use costs one reconnect, not an outage.
//!
//! What differs between the versions stays here: 3.1.1 has no user properties (the event id
//! is in every event's payload anyway), and no session expiry (a persistent session lasts
//! until the core drops it).

use crate::client::Prepared;
use rumqttc::v5::mqttbytes::v5 as p5;
use ward_config::{MqttVersion, UpstreamConfig};

/// What the connection did, in the terms the sync's clients need.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A connection was made (CONNACK received).
    Connected,
    /// One of our QoS 1 messages left with this packet id.
    Sent(u16),
    /// The core confirmed the message with this packet id (PUBACK).
    Confirmed(u16),
    /// A message from the core.
    Message {
        topic: String,
        payload: Vec<u8>,
    },
    Other,
}

/// How a client's session is set up.
pub(crate) struct Setup {
    pub client_id: String,
    /// `Some(expiry)`: a persistent session (clean start off), kept by the core for `expiry`
    /// seconds where the version allows saying so. `None`: a clean session.
    pub persistent: Option<u32>,
    /// A retained QoS 1 last will: topic and payload.
    pub will: Option<(String, Vec<u8>)>,
    /// Requests the client may queue before `try_*` calls fail.
    pub cap: usize,
}

#[derive(Clone)]
enum Client {
    V5(rumqttc::v5::AsyncClient),
    V311(rumqttc::AsyncClient),
}

enum Loop {
    V5(Box<rumqttc::v5::EventLoop>),
    V311(Box<rumqttc::EventLoop>),
}

pub(crate) struct Link {
    client: Client,
    eventloop: Loop,
    endpoints: Vec<(String, u16)>,
    at: usize,
    prepared: Prepared,
    setup: Setup,
}

fn v5_options(
    prepared: &Prepared,
    s: &Setup,
    (host, port): &(String, u16),
) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(&s.client_id, host, *port);
    o.set_keep_alive(prepared.keep_alive);
    o.set_clean_start(s.persistent.is_none());
    if let Some(expiry) = s.persistent {
        o.set_session_expiry_interval(Some(expiry));
    }
    if let Some((user, pw)) = &prepared.credentials {
        o.set_credentials(user, pw);
    }
    if let Some(t) = &prepared.tls {
        o.set_transport(rumqttc::Transport::Tls(t.clone()));
    }
    if let Some((topic, payload)) = &s.will {
        o.set_last_will(p5::LastWill::new(
            topic,
            payload.clone(),
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            true,
            None,
        ));
    }
    o
}

fn v311_options(
    prepared: &Prepared,
    s: &Setup,
    (host, port): &(String, u16),
) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(&s.client_id, host, *port);
    o.set_keep_alive(prepared.keep_alive);
    o.set_clean_session(s.persistent.is_none());
    if let Some((user, pw)) = &prepared.credentials {
        o.set_credentials(user, pw);
    }
    if let Some(t) = &prepared.tls {
        o.set_transport(rumqttc::Transport::Tls(t.clone()));
    }
    if let Some((topic, payload)) = &s.will {
        o.set_last_will(rumqttc::LastWill::new(
            topic,
            payload.clone(),
            rumqttc::QoS::AtLeastOnce,
            true,
        ));
    }
    o
}

impl Link {
    pub(crate) fn new(cfg: &UpstreamConfig, prepared: Prepared, setup: Setup) -> Self {
        let mut endpoints = cfg.endpoints.clone();
        if endpoints.is_empty() {
            // The config never gives none; a hand-made `UpstreamConfig` without endpoints
            // then fails to connect, with the error in the sync status, rather than panic.
            endpoints.push((String::new(), 0));
        }
        let first = &endpoints[0];
        let (client, eventloop) = match cfg.mqtt_version {
            MqttVersion::V5 => {
                let (c, l) =
                    rumqttc::v5::AsyncClient::new(v5_options(&prepared, &setup, first), setup.cap);
                (Client::V5(c), Loop::V5(Box::new(l)))
            }
            MqttVersion::V311 => {
                let (c, l) =
                    rumqttc::AsyncClient::new(v311_options(&prepared, &setup, first), setup.cap);
                (Client::V311(c), Loop::V311(Box::new(l)))
            }
        };
        Link {
            client,
            eventloop,
            endpoints,
            at: 0,
            prepared,
            setup,
        }
    }

    /// The endpoint in use (or tried next), `host:port`.
    pub(crate) fn endpoint(&self) -> String {
        let (h, p) = &self.endpoints[self.at];
        format!("{h}:{p}")
    }

    /// The next event. An error is the connection failing or dropping: the next call
    /// connects again, to the next endpoint.
    pub(crate) async fn poll(&mut self) -> Result<Incoming, String> {
        let got = match &mut self.eventloop {
            Loop::V5(l) => l
                .poll()
                .await
                .map(|ev| match ev {
                    rumqttc::v5::Event::Incoming(p5::Packet::ConnAck(_)) => Incoming::Connected,
                    rumqttc::v5::Event::Incoming(p5::Packet::PubAck(a)) => {
                        Incoming::Confirmed(a.pkid)
                    }
                    rumqttc::v5::Event::Incoming(p5::Packet::Publish(p)) => Incoming::Message {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.to_vec(),
                    },
                    rumqttc::v5::Event::Outgoing(rumqttc::Outgoing::Publish(pkid)) => {
                        Incoming::Sent(pkid)
                    }
                    _ => Incoming::Other,
                })
                .map_err(|e| e.to_string()),
            Loop::V311(l) => l
                .poll()
                .await
                .map(|ev| match ev {
                    rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)) => Incoming::Connected,
                    rumqttc::Event::Incoming(rumqttc::Packet::PubAck(a)) => {
                        Incoming::Confirmed(a.pkid)
                    }
                    rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) => Incoming::Message {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                    },
                    rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(pkid)) => {
                        Incoming::Sent(pkid)
                    }
                    _ => Incoming::Other,
                })
                .map_err(|e| e.to_string()),
        };
        if got.is_err() {
            self.next_endpoint();
        }
        got
    }

    /// The event loop keeps no connection after an error; its next poll connects with the
    /// options it holds, so pointing those at the next node is the failover.
    fn next_endpoint(&mut self) {
        if self.endpoints.len() < 2 {
            return;
        }
        self.at = (self.at + 1) % self.endpoints.len();
        let next = &self.endpoints[self.at];
        match &mut self.eventloop {
            Loop::V5(l) => l.options = v5_options(&self.prepared, &self.setup, next),
            Loop::V311(l) => l.mqtt_options = v311_options(&self.prepared, &self.setup, next),
        }
    }

    /// Leaves a connection that is open but answers nothing (a node that hangs, a network
    /// that drops packets without closing anything): rumqttc's `clean` drops the socket, and
    /// the next poll connects to the next endpoint. What was in flight is sent again by the
    /// caller from its own watermark (the outbox's session is clean: nothing resumes).
    pub(crate) fn abandon(&mut self) {
        match &mut self.eventloop {
            Loop::V5(l) => l.clean(),
            Loop::V311(l) => l.clean(),
        }
        self.next_endpoint();
    }

    /// A QoS 1 event of the trail; with MQTT 5 its id also goes in a user property.
    pub(crate) fn try_publish_event(
        &self,
        topic: &str,
        payload: Vec<u8>,
        event_id: &str,
    ) -> Result<(), String> {
        match &self.client {
            Client::V5(c) => {
                let props = p5::PublishProperties {
                    user_properties: vec![("event_id".into(), event_id.to_string())],
                    content_type: Some("application/json".into()),
                    ..Default::default()
                };
                c.try_publish_with_properties(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    payload,
                    props,
                )
                .map_err(|e| e.to_string())
            }
            Client::V311(c) => c
                .try_publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                .map_err(|e| e.to_string()),
        }
    }

    /// A QoS 1 message, without waiting for room.
    pub(crate) fn try_publish(
        &self,
        topic: &str,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        match &self.client {
            Client::V5(c) => c
                .try_publish(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    retain,
                    payload,
                )
                .map_err(|e| e.to_string()),
            Client::V311(c) => c
                .try_publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
                .map_err(|e| e.to_string()),
        }
    }

    /// A QoS 1 message, waiting for room in the request queue. The future holds a handle of
    /// the client only, not the link (whose event loop is not `Sync`), so it can be awaited
    /// in a spawned task.
    pub(crate) fn publish(
        &self,
        topic: &str,
        retain: bool,
        payload: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let client = self.client.clone();
        let topic = topic.to_string();
        async move {
            match client {
                Client::V5(c) => c
                    .publish(
                        topic,
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        retain,
                        payload,
                    )
                    .await
                    .map_err(|e| e.to_string()),
                Client::V311(c) => c
                    .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
                    .await
                    .map_err(|e| e.to_string()),
            }
        }
    }

    /// A QoS 1 subscription.
    pub(crate) fn try_subscribe(&self, filter: &str) -> Result<(), String> {
        match &self.client {
            Client::V5(c) => c
                .try_subscribe(filter, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
            Client::V311(c) => c
                .try_subscribe(filter, rumqttc::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
        }
    }

    /// An orderly DISCONNECT (a handle of the client only, as [`Link::publish`]).
    pub(crate) fn disconnect(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let client = self.client.clone();
        async move {
            let _ = match client {
                Client::V5(c) => c.disconnect().await.map_err(|e| e.to_string()),
                Client::V311(c) => c.disconnect().await.map_err(|e| e.to_string()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(endpoints: Vec<(String, u16)>, mqtt_version: MqttVersion) -> UpstreamConfig {
        UpstreamConfig {
            name: "test".into(),
            endpoints,
            mqtt_version,
            ca_file: None,
            client_cert: None,
            username: None,
            password: ward_config::PasswordSource::None,
            topic_prefix: "wardwatch/v1".into(),
            client_id: "wardwatch-st-test".into(),
            peers: Vec::new(),
            peer_timeout: Duration::from_secs(10),
            station_name: "Test".into(),
        }
    }

    /// A loopback port the OS picked and nobody listens on any more: connecting is refused.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    fn setup() -> Setup {
        Setup {
            client_id: "wardwatch-st-test".into(),
            persistent: None,
            will: None,
            cap: 4,
        }
    }

    fn prepared() -> Prepared {
        Prepared {
            credentials: None,
            tls: None,
            keep_alive: Duration::from_secs(15),
        }
    }

    /// Each failed connection points the next attempt at the next node, round the list, in
    /// both MQTT versions.
    #[tokio::test]
    async fn a_failed_connection_moves_to_the_next_endpoint_round_the_list() {
        for version in [MqttVersion::V5, MqttVersion::V311] {
            let nodes: Vec<(String, u16)> = (0..3)
                .map(|_| ("127.0.0.1".to_string(), closed_port()))
                .collect();
            let names: Vec<String> = nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
            let mut link = Link::new(&cfg(nodes, version), prepared(), setup());
            let mut seen = vec![link.endpoint()];
            for _ in 0..3 {
                assert!(link.poll().await.is_err(), "nobody listens there");
                seen.push(link.endpoint());
            }
            assert_eq!(
                seen,
                vec![
                    names[0].clone(),
                    names[1].clone(),
                    names[2].clone(),
                    names[0].clone()
                ],
                "{version:?}"
            );
        }
    }

    /// A hand-made configuration without endpoints fails to connect, with an error, and never
    /// panics.
    #[tokio::test]
    async fn no_endpoints_is_an_error_not_a_panic() {
        let mut link = Link::new(&cfg(Vec::new(), MqttVersion::V5), prepared(), setup());
        assert_eq!(link.endpoint(), ":0");
        assert!(link.poll().await.is_err());
    }
}
