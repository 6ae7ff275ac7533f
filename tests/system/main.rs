// In tests an unwrap is an assertion: a failure there should fail the test loudly.
#![allow(clippy::unwrap_used)]

//! System tests, one binary. Each module starts real stations (a `wardwatch` process or an
//! in-process `ward_core::Station`) on 127.0.0.1 port 0 in a temp directory, and drives them
//! with clients nobody here wrote: mosquitto_pub/sub (Debian), paho-mqtt (PyPI), rumqttc.
//!
//! - `ingest`: vitals from mosquitto_pub (3.1.1, 5.0) and paho-mqtt at QoS 0 and 1 reach SQLite
//! - `broker`: subscriptions and wildcards through the embedded broker; last will
//! - `simulated_ward`: 16 simulated beds for 30 s; every sample stored, no gaps
//! - `bad_input`: garbage bytes, invalid UTF-8 topic, wrong JSON, NaN, 10 MB payload
//! - `docs_examples`: every command in docs/topics.md against a live station
//! - `cli`: config errors, the data-directory guard, the standalone simulator
//! - `alarms`: a desaturation sounded (captured through ALSA), notified (D-Bus) and logged
//!   with no upstream; acknowledgement and limits through the core API
//! - `audit`: a station's hash-chained audit trail, verified and exported by the CLI; an edit
//!   made with sqlite is found at its position
//! - `access`: users and roles at the core API: permissions, denials audited, lock and PIN
//! - `credentials`: the upstream password from a real keyring (Secret Service, keyutils)
//! - `review`: full disclosure and trends equal what the simulator sent; strips and reports
//!   exported from the core API and the CLI, audited
//! - `sync`: store-and-forward to Debian's Mosquitto through a 60 s outage; to a three-node
//!   RabbitMQ cluster (MQTT 3.1.1) losing the node in use
//! - `patients`: the ADT feed from PyPI's hl7 package (every answer, census, limits, trail);
//!   the console's `wardwatch patients` while the station runs
//! - `hl7_out`: PCD-01 and PCD-04 to an MLLP server from PyPI's hl7 package, through a 60 s
//!   outage and a `kill -9`; a refused message kept for IT
//! - `open_exports`: FHIR (fhir.resources) and EDF+ (edfio) exports equal to the store
//! - `burden`: a noisy simulated ward's alarm statistics from `wardwatch report alarms` in
//!   four formats, equal to sqlite3's count; the limit review's replay equals the live engine
//! - `faults`: a damaged database moved aside, replaced and alarmed at start; `store salvage`
//! - `sentinel`: the station killed (-9) and hung (SIGSTOP): its sentinel sounds the
//!   alarm-system-failure signal (captured through ALSA), notifies and logs why; restarts
//! - `drills` (ignored; `make drill`): the station killed at random moments under 64-bed load,
//!   checked after each kill; results into docs/DRILLS.md

mod support;

mod access;
mod alarms;
mod audit;
mod bad_input;
mod broker;
mod burden;
mod cli;
mod credentials;
mod docs_examples;
mod drills;
mod faults;
mod hl7_out;
mod ingest;
mod open_exports;
mod patients;
mod review;
mod sentinel;
mod simulated_ward;
mod sync;
