//! Fuzzes the connection machine with arbitrary sequences of client packets (PUBLISH at every
//! QoS with reused packet ids and DUP, PUBREL, the four acknowledgements, SUBSCRIBE,
//! UNSUBSCRIBE, PINGREQ, time passing). After each packet it checks that nothing panicked,
//! that no packet id is reused while in flight towards the client, and that no QoS 2 message
//! is routed twice for one packet id before its PUBREL.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ward_broker::fuzzing::run_sequence(data);
});
