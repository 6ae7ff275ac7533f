//! ward-hl7: HL7 v2 for the station's interfaces with the hospital (docs/hl7.md).
//!
//! What it is: pure code, no I/O and no clocks: the ER7 codec (`er7`: parse with the declared
//! separators, unescape, escape and write), MLLP framing (`mllp`: a framer fed any bytes),
//! reading the ADT feed (`adt`), and acknowledgements (`ack`: the ACK the station answers,
//! reading the ACK it is answered with).
//!
//! What it is not: no sockets (ward-core drives these over TCP), no census decisions
//! (ward-core's `census`).
//!
//! Why our own codec: the HL7 v2 crates read (rust-hl7 0.5, which calls itself experimental;
//! hl7-parser 0.3, structure parsing only, no writer; hl7 / hl7-2 0.2, a few months old and
//! far larger than the four segments the station reads) either cannot write messages, which
//! most of this interface is, or bring much more than it needs. The ER7 grammar is small; this
//! one is fuzzed (fuzz/fuzz_targets/hl7.rs).

pub mod ack;
pub mod adt;
pub mod er7;
pub mod mllp;
pub mod pcd;

/// What can be wrong with an HL7 message the station received.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Hl7Error {
    #[error("malformed HL7: {0}")]
    Malformed(String),
    #[error("message of {0} bytes is over the 1 MiB limit")]
    TooLarge(usize),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("missing {0}")]
    Missing(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("{0} bytes outside MLLP frames")]
    Framing(usize),
}

impl Hl7Error {
    /// A short stable name for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Hl7Error::Malformed(_) | Hl7Error::TooLarge(_) | Hl7Error::Framing(_) => "malformed",
            Hl7Error::Unsupported(_) => "unsupported",
            Hl7Error::Missing(_) | Hl7Error::Invalid(_) => "invalid",
        }
    }
}
