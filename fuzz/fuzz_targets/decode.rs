//! Fuzzes the broker's packet decoder (both protocol versions, before and after CONNECT).
//! `make test` runs it for a short while; longer runs: docs/ARCHITECTURE.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ward_broker::fuzzing::decode_all(data);
});
