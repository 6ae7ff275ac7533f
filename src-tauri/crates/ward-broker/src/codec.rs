//! One view of MQTT 3.1.1 and 5.0 packets for the connection logic.
//!
//! Reading uses rumqttc's codecs (`rumqttc::mqttbytes::v4` and `rumqttc::v5::mqttbytes::v5`),
//! which parse and validate every packet type. Writing the packets a broker sends most (PUBLISH
//! and the four acknowledgements) is done here by hand: they are a few bytes each, and building
//! rumqttc's structs for them would cost an allocation or two per delivered message, which is
//! most of the broker's CPU budget. Everything else is written by rumqttc.
//!
//! The connection code speaks `Inbound` / `Outbound`; only this file knows the wire.

use bytes::{BufMut, Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    V4,
    V5,
}

impl Proto {
    pub fn label(self) -> &'static str {
        match self {
            Proto::V4 => "3.1.1",
            Proto::V5 => "5.0",
        }
    }
}

/// QoS as a plain number 0..=2 so the router does not depend on either codec's enum.
pub type Qos = u8;

/// The MQTT 5 PUBLISH properties a broker forwards unchanged (topic alias and subscription
/// identifiers are per hop and live elsewhere). Message expiry is kept as an absolute time.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PubProps {
    pub payload_format: Option<u8>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Vec<u8>>,
    pub user_properties: Vec<(String, String)>,
}

impl PubProps {
    pub fn is_empty(&self) -> bool {
        self.payload_format.is_none()
            && self.content_type.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user_properties.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: Qos,
    pub retain: bool,
    pub props: Option<Arc<PubProps>>,
    pub expiry_interval: Option<u32>,
    /// MQTT 5 will delay interval in seconds (0 for 3.1.1).
    pub delay: u32,
}

#[derive(Debug)]
pub struct ConnectInfo {
    pub proto: Proto,
    pub client_id: String,
    pub keep_alive: u16,
    pub clean: bool,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// MQTT 5 session expiry interval (seconds); `None` in 3.1.1.
    pub session_expiry: Option<u32>,
    /// The client's receive maximum: how many QoS 1/2 deliveries it takes unacknowledged.
    pub receive_max: u16,
    /// The client's maximum packet size; larger deliveries are skipped (MQTT 5 3.1.2.11.4).
    pub max_packet_size: Option<u32>,
    /// How many topic aliases the client accepts from us.
    pub topic_alias_max: u16,
    /// MQTT 5 AUTH method: enhanced authentication, which we do not offer.
    pub auth_method: Option<String>,
}

#[derive(Debug)]
pub struct PublishIn {
    pub topic: String,
    pub payload: Bytes,
    pub qos: Qos,
    pub retain: bool,
    pub pkid: u16,
    pub alias: Option<u16>,
    pub props: Option<PubProps>,
    pub expiry_interval: Option<u32>,
    pub sub_ids_present: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubOpts {
    pub qos: Qos,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0: send retained on subscribe, 1: only for a new subscription, 2: never.
    pub retain_handling: u8,
    pub sub_id: Option<u32>,
}

#[derive(Debug)]
pub struct SubReq {
    pub filter: String,
    pub opts: SubOpts,
}

#[derive(Debug)]
pub enum Inbound {
    Connect(Box<ConnectInfo>),
    Publish(PublishIn),
    PubAck(u16),
    PubRec(u16),
    PubComp(u16),
    PubRel(u16),
    Subscribe {
        pkid: u16,
        filters: Vec<SubReq>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    /// `with_will`: MQTT 5 reason 0x04, "disconnect but publish my will".
    Disconnect {
        with_will: bool,
        session_expiry: Option<u32>,
    },
    /// A packet only a server sends (CONNACK, SUBACK, ...) or AUTH, which we do not support.
    Unexpected(&'static str),
}

/// SUBACK per filter: granted QoS or an MQTT 5 reason code (3.1.1 sends 0x80 for any refusal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubResult {
    Granted(Qos),
    Refused(u8),
}

pub mod reason {
    //! MQTT 5 reason codes used by the broker (MQTT 5 section 2.4).
    pub const SUCCESS: u8 = 0x00;
    pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    pub const UNSPECIFIED: u8 = 0x80;
    pub const MALFORMED_PACKET: u8 = 0x81;
    pub const PROTOCOL_ERROR: u8 = 0x82;
    pub const IMPLEMENTATION_SPECIFIC: u8 = 0x83;
    pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
    pub const CLIENT_ID_NOT_VALID: u8 = 0x85;
    pub const BAD_USERNAME_OR_PASSWORD: u8 = 0x86;
    pub const NOT_AUTHORIZED: u8 = 0x87;
    pub const SERVER_UNAVAILABLE: u8 = 0x88;
    pub const SERVER_BUSY: u8 = 0x89;
    pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    pub const BAD_AUTH_METHOD: u8 = 0x8C;
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    pub const PACKET_ID_IN_USE: u8 = 0x91;
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;
    pub const SUBSCRIPTION_IDS_NOT_SUPPORTED: u8 = 0xA1;
}

/// What CONNACK says about the session and the server's limits.
#[derive(Debug, Default)]
pub struct ConnAckInfo {
    pub session_present: bool,
    /// MQTT 5 reason code (0 = accepted); mapped to a 3.1.1 return code for v4.
    pub code: u8,
    pub assigned_client_id: Option<String>,
    pub max_packet_size: u32,
    pub receive_max: u16,
    pub topic_alias_max: u16,
    pub server_keep_alive: Option<u16>,
    pub session_expiry: Option<u32>,
    pub reason_string: Option<String>,
}

/// A PUBLISH as sent to one subscriber.
#[derive(Debug)]
pub struct PublishOut<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub qos: Qos,
    pub retain: bool,
    pub dup: bool,
    pub pkid: u16,
    /// MQTT 5: an alias for the topic; with `send_topic` false only the alias is sent.
    pub alias: Option<u16>,
    pub send_topic: bool,
    pub props: Option<&'a PubProps>,
    pub expiry_remaining: Option<u32>,
    pub sub_ids: &'a [u32],
}

#[derive(Debug)]
pub enum Outbound {
    ConnAck(ConnAckInfo),
    PubAck {
        pkid: u16,
        reason: u8,
    },
    PubRec {
        pkid: u16,
        reason: u8,
    },
    PubRel(u16),
    PubComp(u16),
    SubAck {
        pkid: u16,
        results: Vec<SubResult>,
    },
    UnsubAck {
        pkid: u16,
        results: Vec<u8>,
    },
    PingResp,
    /// MQTT 5 only; a 3.1.1 server just closes.
    Disconnect(u8),
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("packet of {size} bytes exceeds the maximum packet size {max}")]
    TooLarge { size: usize, max: usize },
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("first packet must be CONNECT, got packet type {0}")]
    NotConnect(u8),
    #[error("unsupported protocol level {0} (only 3.1.1 and 5.0)")]
    UnsupportedProtocol(u8),
    #[error("topic is not valid UTF-8")]
    TopicNotUtf8,
}

impl DecodeError {
    /// The MQTT 5 DISCONNECT reason for this error.
    pub fn reason(&self) -> u8 {
        match self {
            DecodeError::TooLarge { .. } => reason::PACKET_TOO_LARGE,
            DecodeError::TopicNotUtf8 => reason::TOPIC_NAME_INVALID,
            DecodeError::UnsupportedProtocol(_) => reason::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::Malformed(_) | DecodeError::NotConnect(_) => reason::MALFORMED_PACKET,
        }
    }
}

fn qos4(q: rumqttc::mqttbytes::QoS) -> Qos {
    q as u8
}
fn qos5(q: rumqttc::v5::mqttbytes::QoS) -> Qos {
    q as u8
}

/// Where the protocol level byte of a CONNECT sits: fixed header, then "\0\x04MQTT".
fn connect_level(frame: &[u8]) -> Option<u8> {
    // Skip the fixed header: byte 1 and 1..4 remaining-length bytes.
    let mut i = 1;
    while i < frame.len() && i <= 4 && frame[i] & 0x80 != 0 {
        i += 1;
    }
    let vh = i + 1;
    let name_len = u16::from_be_bytes([*frame.get(vh)?, *frame.get(vh + 1)?]) as usize;
    frame.get(vh + 2 + name_len).copied()
}

/// Frames and decodes the next packet from `buf`. `Ok(None)` means more bytes are needed.
/// `proto` is `None` until CONNECT has been read, and then fixes the codec for the connection.
pub fn decode(
    proto: Option<Proto>,
    buf: &mut BytesMut,
    max_packet_size: usize,
) -> Result<Option<Inbound>, DecodeError> {
    // Before CONNECT, the first byte alone tells garbage apart: refuse it now rather than
    // wait for a "remaining length" that garbage may claim to be megabytes.
    if proto.is_none() {
        if let Some(&first) = buf.first() {
            if first != 0x10 {
                return Err(DecodeError::NotConnect(first >> 4));
            }
        }
    }
    // Framing is the same in both versions; v4's `check` validates the fixed header and the
    // size limit before any of the body is read, so a 10 MB payload is refused from its header.
    let header = match rumqttc::mqttbytes::check(buf.iter(), max_packet_size) {
        Ok(h) => h,
        Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
        Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size)) => {
            return Err(DecodeError::TooLarge {
                size,
                max: max_packet_size,
            })
        }
        Err(e) => return Err(DecodeError::Malformed(e.to_string())),
    };
    let frame_len = header.frame_length();
    let packet_type = buf[0] >> 4;
    let proto = match proto {
        Some(p) => p,
        None => {
            if packet_type != 1 {
                return Err(DecodeError::NotConnect(packet_type));
            }
            match connect_level(&buf[..frame_len]) {
                Some(4) => Proto::V4,
                Some(5) => Proto::V5,
                Some(other) => return Err(DecodeError::UnsupportedProtocol(other)),
                None => return Err(DecodeError::Malformed("truncated CONNECT".into())),
            }
        }
    };
    let mut frame = buf.split_to(frame_len);
    // Fast paths for the acknowledgements, which are most of what subscribers send: a fixed
    // two-byte body (3.1.1, and MQTT 5 with success implied).
    if frame.len() == 4 && frame[1] == 2 {
        let id = u16::from_be_bytes([frame[2], frame[3]]);
        match frame[0] {
            0x40 => return Ok(Some(Inbound::PubAck(id))),
            0x50 => return Ok(Some(Inbound::PubRec(id))),
            0x62 => return Ok(Some(Inbound::PubRel(id))),
            0x70 => return Ok(Some(Inbound::PubComp(id))),
            _ => {}
        }
    }
    match proto {
        Proto::V4 => decode_v4(&mut frame, max_packet_size),
        Proto::V5 => {
            // rumqttc's v5 reader refuses a DISCONNECT with no body, which MQTT 5 allows
            // (reason 0x00 implied); mosquitto_pub -V 5 sends exactly that.
            if frame.len() == 2 && frame[0] == 0xE0 {
                return Ok(Some(Inbound::Disconnect {
                    with_will: false,
                    session_expiry: None,
                }));
            }
            decode_v5(&mut frame, max_packet_size)
        }
    }
    .map(Some)
}

fn malformed(e: impl std::fmt::Display) -> DecodeError {
    DecodeError::Malformed(e.to_string())
}

fn decode_v4(frame: &mut BytesMut, max: usize) -> Result<Inbound, DecodeError> {
    let p = v4::Packet::read(frame, max).map_err(|e| match e {
        rumqttc::mqttbytes::Error::TopicNotUtf8 => DecodeError::TopicNotUtf8,
        e => malformed(e),
    })?;
    Ok(match p {
        v4::Packet::Connect(c) => Inbound::Connect(Box::new(ConnectInfo {
            proto: Proto::V4,
            client_id: c.client_id,
            keep_alive: c.keep_alive,
            clean: c.clean_session,
            will: c.last_will.map(|w| Will {
                topic: w.topic,
                payload: w.message,
                qos: qos4(w.qos),
                retain: w.retain,
                props: None,
                expiry_interval: None,
                delay: 0,
            }),
            username: c.login.as_ref().map(|l| l.username.clone()),
            password: c.login.map(|l| l.password),
            session_expiry: None,
            receive_max: u16::MAX,
            max_packet_size: None,
            topic_alias_max: 0,
            auth_method: None,
        })),
        v4::Packet::Publish(p) => Inbound::Publish(PublishIn {
            topic: p.topic,
            payload: p.payload,
            qos: qos4(p.qos),
            retain: p.retain,
            pkid: p.pkid,
            alias: None,
            props: None,
            expiry_interval: None,
            sub_ids_present: false,
        }),
        v4::Packet::PubAck(a) => Inbound::PubAck(a.pkid),
        v4::Packet::PubRec(a) => Inbound::PubRec(a.pkid),
        v4::Packet::PubComp(a) => Inbound::PubComp(a.pkid),
        v4::Packet::PubRel(a) => Inbound::PubRel(a.pkid),
        v4::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| SubReq {
                    filter: f.path,
                    opts: SubOpts {
                        qos: qos4(f.qos),
                        no_local: false,
                        retain_as_published: false,
                        retain_handling: 0,
                        sub_id: None,
                    },
                })
                .collect(),
        },
        v4::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
        },
        v4::Packet::PingReq => Inbound::PingReq,
        v4::Packet::Disconnect => Inbound::Disconnect {
            with_will: false,
            session_expiry: None,
        },
        v4::Packet::ConnAck(_) => Inbound::Unexpected("CONNACK"),
        v4::Packet::SubAck(_) => Inbound::Unexpected("SUBACK"),
        v4::Packet::UnsubAck(_) => Inbound::Unexpected("UNSUBACK"),
        v4::Packet::PingResp => Inbound::Unexpected("PINGRESP"),
    })
}

/// The forwarded properties, from a PUBLISH's or a will's property block (same fields).
fn pub_props(
    payload_format: Option<u8>,
    content_type: Option<String>,
    response_topic: Option<String>,
    correlation_data: Option<Bytes>,
    user_properties: Vec<(String, String)>,
) -> PubProps {
    PubProps {
        payload_format,
        content_type,
        response_topic,
        correlation_data: correlation_data.map(|b| b.to_vec()),
        user_properties,
    }
}

fn utf8(b: Bytes) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::TopicNotUtf8)
}

fn decode_v5(frame: &mut BytesMut, max: usize) -> Result<Inbound, DecodeError> {
    let limit = u32::try_from(max).unwrap_or(u32::MAX);
    let p = v5::Packet::read(frame, Some(limit)).map_err(|e| match e {
        rumqttc::v5::mqttbytes::Error::TopicNotUtf8 => DecodeError::TopicNotUtf8,
        e => malformed(e),
    })?;
    Ok(match p {
        v5::Packet::Connect(c, will, login) => {
            let will = match will {
                Some(w) => {
                    let (props, expiry, delay) = match w.properties {
                        Some(wp) => (
                            pub_props(
                                wp.payload_format_indicator,
                                wp.content_type,
                                wp.response_topic,
                                wp.correlation_data,
                                wp.user_properties,
                            ),
                            wp.message_expiry_interval,
                            wp.delay_interval.unwrap_or(0),
                        ),
                        None => (PubProps::default(), None, 0),
                    };
                    Some(Will {
                        topic: utf8(w.topic)?,
                        payload: w.message,
                        qos: qos5(w.qos),
                        retain: w.retain,
                        props: (!props.is_empty()).then(|| Arc::new(props)),
                        expiry_interval: expiry,
                        delay,
                    })
                }
                None => None,
            };
            let props = c.properties.unwrap_or_default();
            if props.receive_maximum == Some(0) || props.max_packet_size == Some(0) {
                return Err(DecodeError::Malformed(
                    "receive maximum or maximum packet size of 0".into(),
                ));
            }
            Inbound::Connect(Box::new(ConnectInfo {
                proto: Proto::V5,
                client_id: c.client_id,
                keep_alive: c.keep_alive,
                clean: c.clean_start,
                will,
                username: login.as_ref().map(|l| l.username.clone()),
                password: login.map(|l| l.password),
                session_expiry: Some(props.session_expiry_interval.unwrap_or(0)),
                receive_max: props.receive_maximum.unwrap_or(u16::MAX),
                max_packet_size: props.max_packet_size,
                topic_alias_max: props.topic_alias_max.unwrap_or(0),
                auth_method: props.authentication_method,
            }))
        }
        v5::Packet::Publish(p) => {
            let qos = qos5(p.qos);
            let (props, alias, expiry, sub_ids_present) = match p.properties {
                Some(pp) => {
                    let props = pub_props(
                        pp.payload_format_indicator,
                        pp.content_type,
                        pp.response_topic,
                        pp.correlation_data,
                        pp.user_properties,
                    );
                    (
                        (!props.is_empty()).then_some(props),
                        pp.topic_alias,
                        pp.message_expiry_interval,
                        !pp.subscription_identifiers.is_empty(),
                    )
                }
                None => (None, None, None, false),
            };
            Inbound::Publish(PublishIn {
                topic: utf8(p.topic)?,
                payload: p.payload,
                qos,
                retain: p.retain,
                pkid: p.pkid,
                alias,
                props,
                expiry_interval: expiry,
                sub_ids_present,
            })
        }
        v5::Packet::PubAck(a) => Inbound::PubAck(a.pkid),
        v5::Packet::PubRec(a) => Inbound::PubRec(a.pkid),
        v5::Packet::PubComp(a) => Inbound::PubComp(a.pkid),
        v5::Packet::PubRel(a) => Inbound::PubRel(a.pkid),
        v5::Packet::Subscribe(s) => {
            let sub_id = match s.properties.as_ref().and_then(|p| p.id) {
                Some(0) => return Err(DecodeError::Malformed("subscription identifier 0".into())),
                Some(id) => Some(u32::try_from(id).map_err(malformed)?),
                None => None,
            };
            Inbound::Subscribe {
                pkid: s.pkid,
                filters: s
                    .filters
                    .into_iter()
                    .map(|f| SubReq {
                        filter: f.path,
                        opts: SubOpts {
                            qos: qos5(f.qos),
                            no_local: f.nolocal,
                            retain_as_published: f.preserve_retain,
                            retain_handling: match f.retain_forward_rule {
                                v5::RetainForwardRule::OnEverySubscribe => 0,
                                v5::RetainForwardRule::OnNewSubscribe => 1,
                                v5::RetainForwardRule::Never => 2,
                            },
                            sub_id,
                        },
                    })
                    .collect(),
            }
        }
        v5::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters,
        },
        v5::Packet::PingReq(_) => Inbound::PingReq,
        v5::Packet::Disconnect(d) => Inbound::Disconnect {
            with_will: d.reason_code == v5::DisconnectReasonCode::DisconnectWithWillMessage,
            session_expiry: d.properties.and_then(|p| p.session_expiry_interval),
        },
        v5::Packet::Auth(_) => Inbound::Unexpected("AUTH"),
        v5::Packet::ConnAck(_) => Inbound::Unexpected("CONNACK"),
        v5::Packet::SubAck(_) => Inbound::Unexpected("SUBACK"),
        v5::Packet::UnsubAck(_) => Inbound::Unexpected("UNSUBACK"),
        v5::Packet::PingResp(_) => Inbound::Unexpected("PINGRESP"),
    })
}

#[derive(Debug, thiserror::Error)]
#[error("cannot encode {what}: {detail}")]
pub struct EncodeError {
    what: &'static str,
    detail: String,
}

fn put_varint(out: &mut BytesMut, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if n == 0 {
            break;
        }
    }
}

fn varint_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    // Lengths were checked by the decoder (every string came in as an MQTT string) or are
    // ours; a longer one is cut rather than written with a wrong length.
    let n = s.len().min(u16::MAX as usize);
    out.put_u16(n as u16);
    out.put_slice(&s[..n]);
}

/// MQTT 5 PUBLISH property block, without its length prefix.
fn publish_props(p: &PublishOut<'_>, out: &mut Vec<u8>) {
    let mut b = BytesMut::new();
    if let Some(props) = p.props {
        if let Some(f) = props.payload_format {
            b.put_u8(0x01);
            b.put_u8(f);
        }
        if let Some(ct) = &props.content_type {
            b.put_u8(0x03);
            put_str(&mut b, ct.as_bytes());
        }
        if let Some(rt) = &props.response_topic {
            b.put_u8(0x08);
            put_str(&mut b, rt.as_bytes());
        }
        if let Some(cd) = &props.correlation_data {
            b.put_u8(0x09);
            put_str(&mut b, cd);
        }
        for (k, v) in &props.user_properties {
            b.put_u8(0x26);
            put_str(&mut b, k.as_bytes());
            put_str(&mut b, v.as_bytes());
        }
    }
    if let Some(e) = p.expiry_remaining {
        b.put_u8(0x02);
        b.put_u32(e);
    }
    if let Some(a) = p.alias {
        b.put_u8(0x23);
        b.put_u16(a);
    }
    for id in p.sub_ids {
        b.put_u8(0x0B);
        put_varint(&mut b, *id as usize);
    }
    out.extend_from_slice(&b);
}

/// Size in bytes a PUBLISH will take on the wire (for the client's maximum packet size).
pub fn publish_len(proto: Proto, p: &PublishOut<'_>) -> usize {
    let mut props = Vec::new();
    let props_len = if proto == Proto::V5 {
        publish_props(p, &mut props);
        varint_len(props.len()) + props.len()
    } else {
        0
    };
    let topic = if p.send_topic { p.topic.len() } else { 0 };
    let rem = 2 + topic + if p.qos > 0 { 2 } else { 0 } + props_len + p.payload.len();
    1 + varint_len(rem) + rem
}

/// Writes a PUBLISH (either version) straight into `out`.
pub fn encode_publish(proto: Proto, p: &PublishOut<'_>, out: &mut BytesMut) {
    let mut props = Vec::new();
    if proto == Proto::V5 {
        publish_props(p, &mut props);
    }
    let props_len = if proto == Proto::V5 {
        varint_len(props.len()) + props.len()
    } else {
        0
    };
    let topic: &[u8] = if p.send_topic || proto == Proto::V4 {
        p.topic.as_bytes()
    } else {
        b""
    };
    let rem = 2 + topic.len() + if p.qos > 0 { 2 } else { 0 } + props_len + p.payload.len();
    out.reserve(1 + varint_len(rem) + rem);
    let mut first = 0x30 | (p.qos << 1);
    if p.dup && p.qos > 0 {
        first |= 0x08;
    }
    if p.retain {
        first |= 0x01;
    }
    out.put_u8(first);
    put_varint(out, rem);
    put_str(out, topic);
    if p.qos > 0 {
        out.put_u16(p.pkid);
    }
    if proto == Proto::V5 {
        put_varint(out, props.len());
        out.put_slice(&props);
    }
    out.put_slice(p.payload);
}

/// Appends the encoded packet to `out`. A v4 connection gets nothing for packets that only
/// exist in v5 (DISCONNECT from the server).
pub fn encode(proto: Proto, pkt: Outbound, out: &mut BytesMut) -> Result<(), EncodeError> {
    let ack = |out: &mut BytesMut, first: u8, pkid: u16, reason: u8| {
        if proto == Proto::V5 && reason != 0 {
            // Reason code without properties: remaining length 3 (MQTT 5 3.4.2.2.1).
            out.put_slice(&[first, 3]);
            out.put_u16(pkid);
            out.put_u8(reason);
        } else {
            out.put_slice(&[first, 2]);
            out.put_u16(pkid);
        }
    };
    match pkt {
        Outbound::PubAck { pkid, reason } => ack(out, 0x40, pkid, reason),
        Outbound::PubRec { pkid, reason } => ack(out, 0x50, pkid, reason),
        Outbound::PubRel(pkid) => ack(out, 0x62, pkid, 0),
        Outbound::PubComp(pkid) => ack(out, 0x70, pkid, 0),
        Outbound::PingResp => out.put_slice(&[0xD0, 0]),
        Outbound::Disconnect(code) => {
            // Written by hand: rumqttc 0.25's v5 DISCONNECT encoder declares a remaining length
            // of 1 and then writes 2 bytes (reason + property length), leaving a stray byte on
            // the wire. Remaining length 2 with an explicit empty property list is valid MQTT 5
            // and, unlike the 1-byte form, readable by rumqttc-based clients too.
            if proto == Proto::V5 {
                out.extend_from_slice(&[0xE0, 0x02, code, 0x00]);
            }
        }
        other => match proto {
            Proto::V4 => encode_v4(other, out)?,
            Proto::V5 => encode_v5(other, out)?,
        },
    }
    Ok(())
}

fn v4_return_code(code: u8) -> v4::ConnectReturnCode {
    match code {
        0 => v4::ConnectReturnCode::Success,
        reason::UNSUPPORTED_PROTOCOL_VERSION => v4::ConnectReturnCode::RefusedProtocolVersion,
        reason::CLIENT_ID_NOT_VALID => v4::ConnectReturnCode::BadClientId,
        reason::BAD_USERNAME_OR_PASSWORD | reason::BAD_AUTH_METHOD => {
            v4::ConnectReturnCode::BadUserNamePassword
        }
        reason::NOT_AUTHORIZED => v4::ConnectReturnCode::NotAuthorized,
        _ => v4::ConnectReturnCode::ServiceUnavailable,
    }
}

fn encode_v4(pkt: Outbound, out: &mut BytesMut) -> Result<(), EncodeError> {
    let packet = match pkt {
        Outbound::ConnAck(info) => v4::Packet::ConnAck(v4::ConnAck::new(
            v4_return_code(info.code),
            info.session_present && info.code == 0,
        )),
        Outbound::SubAck { pkid, results } => v4::Packet::SubAck(v4::SubAck::new(
            pkid,
            results
                .into_iter()
                .map(|r| match r {
                    SubResult::Granted(q) => v4::SubscribeReasonCode::Success(match q {
                        0 => rumqttc::mqttbytes::QoS::AtMostOnce,
                        1 => rumqttc::mqttbytes::QoS::AtLeastOnce,
                        _ => rumqttc::mqttbytes::QoS::ExactlyOnce,
                    }),
                    SubResult::Refused(_) => v4::SubscribeReasonCode::Failure,
                })
                .collect(),
        )),
        Outbound::UnsubAck { pkid, .. } => v4::Packet::UnsubAck(v4::UnsubAck::new(pkid)),
        _ => return Ok(()),
    };
    packet
        .write(out, usize::MAX)
        .map(|_| ())
        .map_err(|e| EncodeError {
            what: "v4 packet",
            detail: e.to_string(),
        })
}

fn v5_connect_code(code: u8) -> v5::ConnectReturnCode {
    use v5::ConnectReturnCode as C;
    match code {
        0 => C::Success,
        reason::UNSUPPORTED_PROTOCOL_VERSION => C::UnsupportedProtocolVersion,
        reason::CLIENT_ID_NOT_VALID => C::ClientIdentifierNotValid,
        reason::BAD_USERNAME_OR_PASSWORD => C::BadUserNamePassword,
        reason::NOT_AUTHORIZED => C::NotAuthorized,
        reason::SERVER_BUSY => C::ServerBusy,
        reason::BAD_AUTH_METHOD => C::BadAuthenticationMethod,
        reason::MALFORMED_PACKET => C::MalformedPacket,
        reason::PROTOCOL_ERROR => C::ProtocolError,
        reason::QUOTA_EXCEEDED => C::QuotaExceeded,
        _ => C::ServerUnavailable,
    }
}

fn v5_sub_code(q: SubResult) -> v5::SubscribeReasonCode {
    use v5::SubscribeReasonCode as S;
    match q {
        SubResult::Granted(0) => S::Success(rumqttc::v5::mqttbytes::QoS::AtMostOnce),
        SubResult::Granted(1) => S::Success(rumqttc::v5::mqttbytes::QoS::AtLeastOnce),
        SubResult::Granted(_) => S::Success(rumqttc::v5::mqttbytes::QoS::ExactlyOnce),
        SubResult::Refused(reason::NOT_AUTHORIZED) => S::NotAuthorized,
        SubResult::Refused(reason::TOPIC_FILTER_INVALID) => S::TopicFilterInvalid,
        SubResult::Refused(reason::PROTOCOL_ERROR) => S::Unspecified,
        SubResult::Refused(reason::QUOTA_EXCEEDED) => S::QuotaExceeded,
        SubResult::Refused(reason::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED) => {
            S::SharedSubscriptionsNotSupported
        }
        SubResult::Refused(reason::SUBSCRIPTION_IDS_NOT_SUPPORTED) => S::SubscriptionIdNotSupported,
        SubResult::Refused(_) => S::Unspecified,
    }
}

fn encode_v5(pkt: Outbound, out: &mut BytesMut) -> Result<(), EncodeError> {
    let packet = match pkt {
        Outbound::ConnAck(info) => {
            let accepted = info.code == 0;
            v5::Packet::ConnAck(v5::ConnAck {
                session_present: info.session_present && accepted,
                code: v5_connect_code(info.code),
                properties: Some(v5::ConnAckProperties {
                    session_expiry_interval: info.session_expiry,
                    receive_max: accepted.then_some(info.receive_max),
                    max_qos: None,
                    retain_available: None,
                    max_packet_size: accepted.then_some(info.max_packet_size),
                    assigned_client_identifier: info.assigned_client_id,
                    topic_alias_max: accepted.then_some(info.topic_alias_max),
                    reason_string: info.reason_string,
                    user_properties: Vec::new(),
                    wildcard_subscription_available: None,
                    subscription_identifiers_available: None,
                    shared_subscription_available: None,
                    server_keep_alive: info.server_keep_alive,
                    response_information: None,
                    server_reference: None,
                    authentication_method: None,
                    authentication_data: None,
                }),
            })
        }
        Outbound::SubAck { pkid, results } => v5::Packet::SubAck(v5::SubAck {
            pkid,
            return_codes: results.into_iter().map(v5_sub_code).collect(),
            properties: None,
        }),
        Outbound::UnsubAck { pkid, results } => v5::Packet::UnsubAck(v5::UnsubAck {
            pkid,
            reasons: results
                .into_iter()
                .map(|r| match r {
                    reason::SUCCESS => v5::UnsubAckReason::Success,
                    reason::NO_SUBSCRIPTION_EXISTED => v5::UnsubAckReason::NoSubscriptionExisted,
                    reason::NOT_AUTHORIZED => v5::UnsubAckReason::NotAuthorized,
                    reason::TOPIC_FILTER_INVALID => v5::UnsubAckReason::TopicFilterInvalid,
                    _ => v5::UnsubAckReason::UnspecifiedError,
                })
                .collect(),
            properties: None,
        }),
        _ => return Ok(()),
    };
    packet
        .write(out, None)
        .map(|_| ())
        .map_err(|e| EncodeError {
            what: "v5 packet",
            detail: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(p: v4::Packet) -> BytesMut {
        let mut b = BytesMut::new();
        p.write(&mut b, usize::MAX).unwrap();
        b
    }

    #[test]
    fn reads_a_v4_connect_and_publish_in_one_buffer() {
        let mut buf = frame_of(v4::Packet::Connect(v4::Connect::new("dev-1")));
        let mut publish = v4::Publish::new(
            "ward/v1/dev/dev-1/vitals",
            rumqttc::mqttbytes::QoS::AtLeastOnce,
            b"{}".to_vec(),
        );
        publish.pkid = 1;
        buf.extend_from_slice(&frame_of(v4::Packet::Publish(publish)));
        let Some(Inbound::Connect(c)) = decode(None, &mut buf, 1024).unwrap() else {
            panic!("expected CONNECT")
        };
        assert_eq!((c.proto, c.client_id.as_str()), (Proto::V4, "dev-1"));
        let Some(Inbound::Publish(p)) = decode(Some(Proto::V4), &mut buf, 1024).unwrap() else {
            panic!("expected PUBLISH")
        };
        assert_eq!((p.topic.as_str(), p.qos), ("ward/v1/dev/dev-1/vitals", 1));
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let full = frame_of(v4::Packet::Connect(v4::Connect::new("dev-1")));
        let mut buf = BytesMut::from(&full[..5]);
        assert!(decode(None, &mut buf, 1024).unwrap().is_none());
        assert_eq!(buf.len(), 5, "nothing consumed");
    }

    #[test]
    fn refuses_garbage_oversize_and_wrong_first_packet() {
        // Refused from the first byte, before any length is believed.
        let mut garbage = BytesMut::from(&[0x00u8, 0xff][..]);
        assert!(matches!(
            decode(None, &mut garbage, 1024),
            Err(DecodeError::NotConnect(0))
        ));
        let mut ping = BytesMut::from(&[0xC0u8, 0x00][..]);
        assert!(matches!(
            decode(None, &mut ping, 1024),
            Err(DecodeError::NotConnect(12))
        ));
        let big = frame_of(v4::Packet::Publish(v4::Publish::new(
            "t",
            rumqttc::mqttbytes::QoS::AtMostOnce,
            vec![0u8; 5000],
        )));
        let mut big = BytesMut::from(&big[..10]);
        assert!(matches!(
            decode(Some(Proto::V4), &mut big, 1024),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn invalid_utf8_topic_is_named() {
        // PUBLISH QoS 0, topic length 2, bytes 0xC3 0x28 (invalid UTF-8), payload "x".
        let mut buf = BytesMut::from(&[0x30u8, 0x05, 0x00, 0x02, 0xC3, 0x28, b'x'][..]);
        assert!(matches!(
            decode(Some(Proto::V4), &mut buf, 1024),
            Err(DecodeError::TopicNotUtf8)
        ));
    }

    #[test]
    fn server_disconnect_has_no_stray_bytes_and_is_readable() {
        let mut out = BytesMut::new();
        encode(
            Proto::V5,
            Outbound::Disconnect(reason::KEEP_ALIVE_TIMEOUT),
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[..], &[0xE0, 0x02, 0x8D, 0x00]);
        let back = v5::Packet::read(&mut out, None).unwrap();
        assert!(
            matches!(back, v5::Packet::Disconnect(d) if d.reason_code == v5::DisconnectReasonCode::KeepAliveTimeout)
        );
        assert!(out.is_empty(), "no stray bytes");
        let mut v4 = BytesMut::new();
        encode(
            Proto::V4,
            Outbound::Disconnect(reason::KEEP_ALIVE_TIMEOUT),
            &mut v4,
        )
        .unwrap();
        assert!(v4.is_empty(), "3.1.1 has no server DISCONNECT");
    }

    #[test]
    fn empty_v5_disconnect_is_accepted() {
        let mut buf = BytesMut::from(&[0xE0u8, 0x00][..]);
        assert!(matches!(
            decode(Some(Proto::V5), &mut buf, 1024).unwrap(),
            Some(Inbound::Disconnect {
                with_will: false,
                ..
            })
        ));
    }

    /// The hand-written PUBLISH encoder, read back by rumqttc's decoders: every field and
    /// property survives, and `publish_len` is the exact size.
    #[test]
    fn hand_written_publish_reads_back_in_both_versions() {
        let props = PubProps {
            payload_format: Some(1),
            content_type: Some("application/json".into()),
            response_topic: Some("reply/here".into()),
            correlation_data: Some(vec![1, 2, 3]),
            user_properties: vec![("k".into(), "v".into())],
        };
        let p = PublishOut {
            topic: "ward/v1/dev/m1/vitals",
            payload: b"{\"hr\":72}",
            qos: 2,
            retain: true,
            dup: true,
            pkid: 513,
            alias: Some(3),
            send_topic: true,
            props: Some(&props),
            expiry_remaining: Some(42),
            sub_ids: &[7, 300],
        };
        let mut out = BytesMut::new();
        encode_publish(Proto::V5, &p, &mut out);
        assert_eq!(out.len(), publish_len(Proto::V5, &p));
        let v5::Packet::Publish(back) = v5::Packet::read(&mut out, None).unwrap() else {
            panic!("expected PUBLISH")
        };
        assert!(out.is_empty());
        assert_eq!(
            (
                &back.topic[..],
                &back.payload[..],
                back.pkid,
                back.dup,
                back.retain
            ),
            (
                &b"ward/v1/dev/m1/vitals"[..],
                &b"{\"hr\":72}"[..],
                513,
                true,
                true
            )
        );
        let bp = back.properties.unwrap();
        assert_eq!(bp.topic_alias, Some(3));
        assert_eq!(bp.message_expiry_interval, Some(42));
        assert_eq!(bp.subscription_identifiers, vec![7, 300]);
        assert_eq!(bp.content_type.as_deref(), Some("application/json"));
        assert_eq!(bp.response_topic.as_deref(), Some("reply/here"));
        assert_eq!(bp.correlation_data.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(bp.user_properties, vec![("k".into(), "v".into())]);
        assert_eq!(bp.payload_format_indicator, Some(1));

        let mut out = BytesMut::new();
        encode_publish(Proto::V4, &PublishOut { qos: 1, ..p }, &mut out);
        assert_eq!(
            out.len(),
            publish_len(Proto::V4, &PublishOut { qos: 1, ..p })
        );
        let v4::Packet::Publish(back) = v4::Packet::read(&mut out, usize::MAX).unwrap() else {
            panic!("expected PUBLISH")
        };
        assert_eq!(
            (back.topic.as_str(), back.pkid, back.dup),
            ("ward/v1/dev/m1/vitals", 513, true)
        );
    }

    #[test]
    fn acks_with_and_without_reason_read_back() {
        let mut out = BytesMut::new();
        encode(
            Proto::V5,
            Outbound::PubAck {
                pkid: 9,
                reason: reason::NOT_AUTHORIZED,
            },
            &mut out,
        )
        .unwrap();
        let v5::Packet::PubAck(a) = v5::Packet::read(&mut out, None).unwrap() else {
            panic!("expected PUBACK")
        };
        assert_eq!((a.pkid, a.reason), (9, v5::PubAckReason::NotAuthorized));
        for p in [
            Outbound::PubRel(4),
            Outbound::PubComp(5),
            Outbound::PubRec { pkid: 6, reason: 0 },
        ] {
            encode(Proto::V4, p, &mut out).unwrap();
        }
        assert!(matches!(
            v4::Packet::read(&mut out, 100).unwrap(),
            v4::Packet::PubRel(r) if r.pkid == 4
        ));
        assert!(matches!(
            v4::Packet::read(&mut out, 100).unwrap(),
            v4::Packet::PubComp(r) if r.pkid == 5
        ));
        assert!(matches!(
            v4::Packet::read(&mut out, 100).unwrap(),
            v4::Packet::PubRec(r) if r.pkid == 6
        ));
    }
}
