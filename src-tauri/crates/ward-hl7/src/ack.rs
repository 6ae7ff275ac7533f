//! Acknowledgements: the ACK the station answers every inbound message with, and reading the
//! ACK (or ORA^R41) the hospital's systems answer the station's messages with.

use crate::er7::{comps, esc, write, Message};

/// MSA-1 acknowledgement codes (original mode AA/AE/AR; enhanced CA/CE/CR read alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Applied.
    Accept,
    /// Could not be applied (unknown bed, patient not here): the reason says why.
    Error,
    /// Refused (malformed, unsupported): resending the same message will not help.
    Reject,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "AA" | "CA" => Some(AckCode::Accept),
            "AE" | "CE" => Some(AckCode::Error),
            "AR" | "CR" => Some(AckCode::Reject),
            _ => None,
        }
    }
}

/// Who the station is in MSH-3/MSH-4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub application: String,
    pub facility: String,
}

/// The ACK for `original` (a message that may not even have parsed: then `original` is None
/// and the reply names no control id). `now` is the HL7 timestamp, `control_id` the ACK's own.
pub fn ack(
    original: Option<&Message>,
    code: AckCode,
    text: &str,
    me: &Sender,
    now: &str,
    control_id: &str,
) -> String {
    let get =
        |seg: &str, n: usize, c: usize| original.map(|m| m.get(seg, n, c)).unwrap_or_default();
    let version = Some(get("MSH", 12, 1))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "2.6".into());
    let trigger = get("MSH", 9, 2);
    let mut segments = vec![
        (
            "MSH",
            vec![
                esc(&me.application),
                esc(&me.facility),
                esc(&get("MSH", 3, 1)),
                esc(&get("MSH", 4, 1)),
                esc(now),
                String::new(),
                comps(&["ACK", &trigger, "ACK"]),
                esc(control_id),
                "P".into(),
                esc(&version),
            ],
        ),
        (
            "MSA",
            vec![code.as_str().into(), esc(&get("MSH", 10, 1)), esc(text)],
        ),
    ];
    if code != AckCode::Accept {
        // ERR-3 HL7 error code (table 0357: 207 application internal error, 200 unsupported
        // message type), ERR-4 severity, ERR-8 the message for a person.
        let (n, name) = match code {
            AckCode::Reject => ("200", "Unsupported message"),
            _ => ("207", "Application internal error"),
        };
        segments.push((
            "ERR",
            vec![
                String::new(),
                String::new(),
                comps(&[n, name, "HL70357"]),
                "E".into(),
                String::new(),
                String::new(),
                String::new(),
                esc(text),
            ],
        ));
    }
    write(&segments)
}

/// An acknowledgement received: its code, the control id it acknowledges and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub code: AckCode,
    pub control_id: String,
    pub text: String,
}

/// Reads an ACK or ORA^R41 reply.
pub fn read(m: &Message) -> Option<Received> {
    let code = AckCode::parse(&m.get("MSA", 1, 1))?;
    let err = m.get("ERR", 8, 1);
    let text = if err.is_empty() {
        m.get("MSA", 3, 1)
    } else {
        err
    };
    Some(Received {
        code,
        control_id: m.get("MSA", 2, 1),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Sender {
        Sender {
            application: "WARDWATCH".into(),
            facility: "4W".into(),
        }
    }

    #[test]
    fn an_accept_names_the_message_it_answers() {
        let m = Message::parse("MSH|^~\\&|EPIC|CITY|WW|4W|20261204||ADT^A01|C-7|P|2.5\r").unwrap();
        let a = ack(Some(&m), AckCode::Accept, "", &me(), "20261204101501", "A1");
        assert_eq!(
            a,
            "MSH|^~\\&|WARDWATCH|4W|EPIC|CITY|20261204101501||ACK^A01^ACK|A1|P|2.5\rMSA|AA|C-7\r"
        );
        let back = read(&Message::parse(&a).unwrap()).unwrap();
        assert_eq!(back.code, AckCode::Accept);
        assert_eq!(back.control_id, "C-7");
    }

    #[test]
    fn errors_carry_their_reason_in_msa_and_err() {
        let a = ack(
            None,
            AckCode::Error,
            "bed 4W^9^Z | unknown",
            &me(),
            "2026",
            "A2",
        );
        let m = Message::parse(&a).unwrap();
        assert_eq!(m.get("MSA", 1, 1), "AE");
        assert_eq!(m.get("MSA", 3, 1), "bed 4W^9^Z | unknown");
        assert_eq!(m.get("ERR", 3, 1), "207");
        let back = read(&m).unwrap();
        assert_eq!(
            (back.code, back.text.as_str()),
            (AckCode::Error, "bed 4W^9^Z | unknown")
        );
        let r = Message::parse(&ack(None, AckCode::Reject, "x", &me(), "2026", "A3")).unwrap();
        assert_eq!(r.get("ERR", 3, 1), "200");
        assert_eq!(AckCode::parse("CA"), Some(AckCode::Accept));
        assert_eq!(AckCode::parse("ZZ"), None);
    }
}
