//! The HL7 decode path the ADT listener runs on whatever a sender puts on the wire: MLLP
//! framing, ER7 parsing, reading an ADT message, reading an ACK. Invariants: nothing panics,
//! and the ACK the station builds for any message it could parse parses again and names the
//! same control id (an answer must never be unreadable to its sender).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_hl7::ack::{self, AckCode, Sender};
use ward_hl7::er7::Message;
use ward_hl7::mllp::{Frame, Framer};

fuzz_target!(|data: &[u8]| {
    let mut framer = Framer::default();
    // Half the input framed as it is, the rest as one unframed message.
    let mut texts: Vec<String> = framer
        .push(data)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Message(m) => Some(m),
            Frame::Junk(_) => None,
        })
        .collect();
    texts.push(String::from_utf8_lossy(data).into_owned());
    let me = Sender {
        application: "WARDWATCH".into(),
        facility: "4W".into(),
    };
    for text in texts {
        let Ok(m) = Message::parse(&text) else {
            continue;
        };
        let _ = ward_hl7::adt::read(&m, "2026-12-04");
        let _ = ack::read(&m);
        let answer = ack::ack(Some(&m), AckCode::Error, "reason | with ^ separators", &me, "20261204", "A1");
        let back = Message::parse(&answer).expect("the station's ACK parses");
        let read = ack::read(&back).expect("the station's ACK reads as one");
        // Separators and control characters in the id are escaped in the ACK and read back.
        assert_eq!(read.control_id, m.get("MSH", 10, 1));
    }
});
