//! One view of MQTT 3.1.1 and 5.0 packets for the connection logic, over rumqttc's codecs
//! (`rumqttc::mqttbytes::v4` and `rumqttc::v5::mqttbytes::v5`), which read and write every
//! packet type. The connection code speaks `Inbound` / `Outbound`; only this file knows which
//! protocol is on the wire.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

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

#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: Qos,
}

/// Credentials are not decoded yet: authentication arrives with issue 3, and until then a
/// station only listens on the address its config names.
#[derive(Debug)]
pub struct ConnectInfo {
    pub proto: Proto,
    pub client_id: String,
    pub keep_alive: u16,
    pub clean: bool,
    pub will: Option<Will>,
}

#[derive(Debug)]
pub enum Inbound {
    Connect(ConnectInfo),
    Publish {
        topic: String,
        payload: Bytes,
        qos: Qos,
        pkid: u16,
        /// MQTT 5 topic alias: we advertise a maximum of 0, so any alias is a protocol error.
        topic_alias: bool,
    },
    /// PUBACK, PUBREC or PUBCOMP for a delivery of ours; outbound state arrives with issue 3.
    Ack,
    PubRel(u16),
    Subscribe {
        pkid: u16,
        filters: Vec<(String, Qos)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    /// `with_will`: MQTT 5 reason 0x04, "disconnect but publish my will".
    Disconnect {
        with_will: bool,
    },
    /// A packet only a server sends (CONNACK, SUBACK, ...) or AUTH, which we do not support.
    Unexpected(&'static str),
}

#[derive(Debug)]
pub enum SubResult {
    Granted(Qos),
    Refused,
}

#[derive(Debug)]
pub enum ConnAckCode {
    Accepted,
    BadProtocol,
    BadClientId,
    NotAuthorized,
}

#[derive(Debug)]
pub enum Outbound {
    ConnAck {
        code: ConnAckCode,
        assigned_client_id: Option<String>,
        max_packet_size: u32,
    },
    Publish {
        topic: String,
        payload: Bytes,
        qos: Qos,
        pkid: u16,
    },
    PubAck(u16),
    PubRec(u16),
    PubComp(u16),
    SubAck {
        pkid: u16,
        results: Vec<SubResult>,
    },
    UnsubAck {
        pkid: u16,
        count: usize,
    },
    PingResp,
    /// MQTT 5 only; a 3.1.1 server just closes.
    Disconnect(DisconnectReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    MalformedPacket,
    ProtocolError,
    KeepAliveTimeout,
    SessionTakenOver,
    TopicNameInvalid,
    TopicAliasInvalid,
    PacketTooLarge,
    ServerShuttingDown,
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

fn qos4(q: rumqttc::mqttbytes::QoS) -> Qos {
    q as u8
}
fn qos5(q: rumqttc::v5::mqttbytes::QoS) -> Qos {
    q as u8
}
fn to_qos4(q: Qos) -> rumqttc::mqttbytes::QoS {
    match q {
        0 => rumqttc::mqttbytes::QoS::AtMostOnce,
        1 => rumqttc::mqttbytes::QoS::AtLeastOnce,
        _ => rumqttc::mqttbytes::QoS::ExactlyOnce,
    }
}
fn to_qos5(q: Qos) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        1 => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        _ => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
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
    match proto {
        Proto::V4 => decode_v4(&mut frame, max_packet_size),
        Proto::V5 => {
            // rumqttc's v5 reader refuses a DISCONNECT with no body, which MQTT 5 allows
            // (reason 0x00 implied); mosquitto_pub -V 5 sends exactly that.
            if frame.len() == 2 && frame[0] == 0xE0 {
                return Ok(Some(Inbound::Disconnect { with_will: false }));
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
        v4::Packet::Connect(c) => Inbound::Connect(ConnectInfo {
            proto: Proto::V4,
            client_id: c.client_id,
            keep_alive: c.keep_alive,
            clean: c.clean_session,
            will: c.last_will.map(|w| Will {
                topic: w.topic,
                payload: w.message,
                qos: qos4(w.qos),
            }),
        }),
        v4::Packet::Publish(p) => Inbound::Publish {
            topic: p.topic,
            payload: p.payload,
            qos: qos4(p.qos),
            pkid: p.pkid,
            topic_alias: false,
        },
        v4::Packet::PubAck(_) | v4::Packet::PubRec(_) | v4::Packet::PubComp(_) => Inbound::Ack,
        v4::Packet::PubRel(a) => Inbound::PubRel(a.pkid),
        v4::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, qos4(f.qos)))
                .collect(),
        },
        v4::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
        },
        v4::Packet::PingReq => Inbound::PingReq,
        v4::Packet::Disconnect => Inbound::Disconnect { with_will: false },
        v4::Packet::ConnAck(_) => Inbound::Unexpected("CONNACK"),
        v4::Packet::SubAck(_) => Inbound::Unexpected("SUBACK"),
        v4::Packet::UnsubAck(_) => Inbound::Unexpected("UNSUBACK"),
        v4::Packet::PingResp => Inbound::Unexpected("PINGRESP"),
    })
}

fn decode_v5(frame: &mut BytesMut, max: usize) -> Result<Inbound, DecodeError> {
    let limit = u32::try_from(max).unwrap_or(u32::MAX);
    let p = v5::Packet::read(frame, Some(limit)).map_err(|e| match e {
        rumqttc::v5::mqttbytes::Error::TopicNotUtf8 => DecodeError::TopicNotUtf8,
        e => malformed(e),
    })?;
    Ok(match p {
        v5::Packet::Connect(c, will, _login) => {
            let will = match will {
                Some(w) => Some(Will {
                    topic: String::from_utf8(w.topic.to_vec())
                        .map_err(|_| DecodeError::TopicNotUtf8)?,
                    payload: w.message,
                    qos: qos5(w.qos),
                }),
                None => None,
            };
            Inbound::Connect(ConnectInfo {
                proto: Proto::V5,
                client_id: c.client_id,
                keep_alive: c.keep_alive,
                clean: c.clean_start,
                will,
            })
        }
        v5::Packet::Publish(p) => Inbound::Publish {
            topic: String::from_utf8(p.topic.to_vec()).map_err(|_| DecodeError::TopicNotUtf8)?,
            payload: p.payload,
            qos: qos5(p.qos),
            pkid: p.pkid,
            topic_alias: p.properties.is_some_and(|pr| pr.topic_alias.is_some()),
        },
        v5::Packet::PubAck(_) | v5::Packet::PubRec(_) | v5::Packet::PubComp(_) => Inbound::Ack,
        v5::Packet::PubRel(a) => Inbound::PubRel(a.pkid),
        v5::Packet::Subscribe(s) => Inbound::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, qos5(f.qos)))
                .collect(),
        },
        v5::Packet::Unsubscribe(u) => Inbound::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters,
        },
        v5::Packet::PingReq(_) => Inbound::PingReq,
        v5::Packet::Disconnect(d) => Inbound::Disconnect {
            with_will: d.reason_code == v5::DisconnectReasonCode::DisconnectWithWillMessage,
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

/// Appends the encoded packet to `out`. A v4 connection silently gets nothing for packets that
/// only exist in v5 (DISCONNECT from the server).
pub fn encode(proto: Proto, pkt: Outbound, out: &mut BytesMut) -> Result<(), EncodeError> {
    match proto {
        Proto::V4 => encode_v4(pkt, out),
        Proto::V5 => encode_v5(pkt, out),
    }
}

fn enc_err(what: &'static str) -> impl Fn(rumqttc::mqttbytes::Error) -> EncodeError {
    move |e| EncodeError {
        what,
        detail: e.to_string(),
    }
}

fn encode_v4(pkt: Outbound, out: &mut BytesMut) -> Result<(), EncodeError> {
    let packet = match pkt {
        Outbound::ConnAck { code, .. } => v4::Packet::ConnAck(v4::ConnAck::new(
            match code {
                ConnAckCode::Accepted => v4::ConnectReturnCode::Success,
                ConnAckCode::BadProtocol => v4::ConnectReturnCode::RefusedProtocolVersion,
                ConnAckCode::BadClientId => v4::ConnectReturnCode::BadClientId,
                ConnAckCode::NotAuthorized => v4::ConnectReturnCode::NotAuthorized,
            },
            false,
        )),
        Outbound::Publish {
            topic,
            payload,
            qos,
            pkid,
        } => v4::Packet::Publish(v4::Publish {
            dup: false,
            qos: to_qos4(qos),
            retain: false,
            topic,
            pkid,
            payload,
        }),
        Outbound::PubAck(id) => v4::Packet::PubAck(v4::PubAck::new(id)),
        Outbound::PubRec(id) => v4::Packet::PubRec(v4::PubRec::new(id)),
        Outbound::PubComp(id) => v4::Packet::PubComp(v4::PubComp::new(id)),
        Outbound::SubAck { pkid, results } => v4::Packet::SubAck(v4::SubAck::new(
            pkid,
            results
                .into_iter()
                .map(|r| match r {
                    SubResult::Granted(q) => v4::SubscribeReasonCode::Success(to_qos4(q)),
                    SubResult::Refused => v4::SubscribeReasonCode::Failure,
                })
                .collect(),
        )),
        Outbound::UnsubAck { pkid, .. } => v4::Packet::UnsubAck(v4::UnsubAck::new(pkid)),
        Outbound::PingResp => v4::Packet::PingResp,
        Outbound::Disconnect(_) => return Ok(()),
    };
    packet
        .write(out, usize::MAX)
        .map(|_| ())
        .map_err(enc_err("v4 packet"))
}

fn enc_err5(what: &'static str) -> impl Fn(rumqttc::v5::mqttbytes::Error) -> EncodeError {
    move |e| EncodeError {
        what,
        detail: e.to_string(),
    }
}

fn encode_v5(pkt: Outbound, out: &mut BytesMut) -> Result<(), EncodeError> {
    let packet = match pkt {
        Outbound::ConnAck {
            code,
            assigned_client_id,
            max_packet_size,
        } => v5::Packet::ConnAck(v5::ConnAck {
            session_present: false,
            code: match code {
                ConnAckCode::Accepted => v5::ConnectReturnCode::Success,
                ConnAckCode::BadProtocol => v5::ConnectReturnCode::UnsupportedProtocolVersion,
                ConnAckCode::BadClientId => v5::ConnectReturnCode::ClientIdentifierNotValid,
                ConnAckCode::NotAuthorized => v5::ConnectReturnCode::NotAuthorized,
            },
            properties: Some(v5::ConnAckProperties {
                session_expiry_interval: None,
                receive_max: None,
                // QoS 2 delivery to subscribers arrives with the complete broker (issue 3);
                // inbound QoS 2 is already handled exactly once.
                max_qos: None,
                retain_available: Some(0),
                max_packet_size: Some(max_packet_size),
                assigned_client_identifier: assigned_client_id,
                topic_alias_max: Some(0),
                reason_string: None,
                user_properties: Vec::new(),
                wildcard_subscription_available: Some(1),
                subscription_identifiers_available: Some(0),
                shared_subscription_available: Some(0),
                server_keep_alive: None,
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            }),
        }),
        Outbound::Publish {
            topic,
            payload,
            qos,
            pkid,
        } => {
            let mut p = v5::Publish::new(topic, to_qos5(qos), payload, None);
            p.pkid = pkid;
            v5::Packet::Publish(p)
        }
        Outbound::PubAck(id) => v5::Packet::PubAck(v5::PubAck::new(id, None)),
        Outbound::PubRec(id) => v5::Packet::PubRec(v5::PubRec::new(id, None)),
        Outbound::PubComp(id) => v5::Packet::PubComp(v5::PubComp::new(id, None)),
        Outbound::SubAck { pkid, results } => v5::Packet::SubAck(v5::SubAck {
            pkid,
            return_codes: results
                .into_iter()
                .map(|r| match r {
                    SubResult::Granted(q) => v5::SubscribeReasonCode::Success(to_qos5(q)),
                    SubResult::Refused => v5::SubscribeReasonCode::TopicFilterInvalid,
                })
                .collect(),
            properties: None,
        }),
        Outbound::UnsubAck { pkid, count } => v5::Packet::UnsubAck(v5::UnsubAck {
            pkid,
            reasons: vec![v5::UnsubAckReason::Success; count],
            properties: None,
        }),
        Outbound::PingResp => v5::Packet::PingResp(v5::PingResp),
        Outbound::Disconnect(reason) => {
            // Written by hand: rumqttc 0.25's v5 DISCONNECT encoder declares a remaining length
            // of 1 and then writes 2 bytes (reason + property length), leaving a stray byte on
            // the wire. Remaining length 2 with an explicit empty property list is valid MQTT 5
            // and, unlike the 1-byte form, readable by rumqttc-based clients too.
            let code = match reason {
                DisconnectReason::MalformedPacket => 0x81,
                DisconnectReason::ProtocolError => 0x82,
                DisconnectReason::KeepAliveTimeout => 0x8D,
                DisconnectReason::SessionTakenOver => 0x8E,
                DisconnectReason::TopicNameInvalid => 0x90,
                DisconnectReason::TopicAliasInvalid => 0x94,
                DisconnectReason::PacketTooLarge => 0x95,
                DisconnectReason::ServerShuttingDown => 0x8B,
            };
            out.extend_from_slice(&[0xE0, 0x02, code, 0x00]);
            return Ok(());
        }
    };
    packet
        .write(out, None)
        .map(|_| ())
        .map_err(enc_err5("v5 packet"))
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
        let Some(Inbound::Publish { topic, qos, .. }) =
            decode(Some(Proto::V4), &mut buf, 1024).unwrap()
        else {
            panic!("expected PUBLISH")
        };
        assert_eq!((topic.as_str(), qos), ("ward/v1/dev/dev-1/vitals", 1));
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
            Outbound::Disconnect(DisconnectReason::KeepAliveTimeout),
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
            Outbound::Disconnect(DisconnectReason::KeepAliveTimeout),
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
            Some(Inbound::Disconnect { with_will: false })
        ));
    }
}
